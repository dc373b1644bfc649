"""The training engine: one loop for every GAN family (devices, precision, EMA, checkpoints,
DDP, logging, progress, NaN guard)."""

from medisynth.training.engine import Trainer, TrainingDivergedError, TrainResult, train

__all__ = ["TrainResult", "Trainer", "TrainingDivergedError", "train"]
