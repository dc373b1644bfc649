"""The training engine: one loop for every GAN family.

The engine owns the device, precision (bf16 autocast + channels_last on CPUs with native bf16,
AMP on CUDA), the EMA networks, atomic checkpoints (every N steps and on SIGINT/SIGTERM), exact
resumption, DDP wrapping under ``torchrun``, logging (progress bar, JSONL, TensorBoard, sample
grids) and the NaN/divergence guard. The family (see :mod:`medisynth.gans.base`) only builds its
networks and performs one step.

Run folder layout (``train.out_dir``)::

    config.yaml              the validated config of the run (paths only with train.record_paths)
    metrics.jsonl            one line per ``train.log_every`` steps, each step once
    samples/step_000500.png  monitoring grids (fixed noise; one row per class)
    checkpoints/last.pt      the latest good checkpoint (``--resume`` continues from it)
    model/                   the model package (see :mod:`medisynth.package`)
    train_summary.json       steps, status, wall time, throughput

A folder that already holds a run is refused unless the run is resumed or overwritten (see
:mod:`medisynth.training.run_folder`); checkpoints and packages record no user path.

>>> from medisynth.config import RunConfig
>>> cfg = RunConfig.from_dict({"data": {"path": "breastmnist.npz"}, "train": {"steps": 100}})
>>> Trainer(cfg).config.train.steps
100
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from medisynth.config import RunConfig, TrainConfig, save_config
from medisynth.data.formats import load_training_data
from medisynth.data.info import DataInfo
from medisynth.errors import ConfigError, MedisynthError
from medisynth.files import atomic_write_text
from medisynth.gans import get_family
from medisynth.gans.base import GANFamily, StepContext, unwrap
from medisynth.precision import cpu_has_native_bf16
from medisynth.training.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from medisynth.training.data import EpochBatchSampler, class_balanced_weights
from medisynth.training.distributed import (
    DistInfo,
    any_rank,
    barrier,
    broadcast_object,
    gather_objects,
    init_distributed,
    shutdown,
    wrap_ddp,
)
from medisynth.training.ema import EMA
from medisynth.training.logging import MetricsLogger, save_image_grid
from medisynth.training.run_folder import (
    CHECKPOINT_NAME,
    CHECKPOINTS,
    check_run_folder,
    clear_run_folder,
)

log = logging.getLogger(__name__)

#: the parts of a config that must match between a checkpoint and a resumed run
RESUME_MUST_MATCH = ("seed", "data", "model")

StepCallback = Callable[["Trainer", int, dict[str, float]], None]


class TrainingDivergedError(MedisynthError):
    """A loss became NaN/inf or exceeded ``train.divergence_threshold``."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did.

    ``status`` is ``"completed"``, ``"time_limit"`` (stopped by ``train.max_minutes``) or
    ``"interrupted"`` (SIGINT/SIGTERM; resume with ``--resume``).
    """

    status: str
    steps: int
    start_step: int
    wall_seconds: float
    images_per_second: float
    out_dir: str
    checkpoint: str
    package: str | None
    precision: str
    device: str
    world_size: int
    last_losses: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(name: str, dist_info: DistInfo | None = None) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; under DDP, the process's own GPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA GPU is available; use auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", dist_info.local_rank if dist_info else 0)
    return torch.device("cpu")


def resolve_precision(
    train: TrainConfig, device: torch.device, cpu_autocast: bool = True
) -> tuple[torch.dtype | None, bool]:
    """The autocast dtype (``None`` = fp32) and whether to use channels_last.

    ``cpu_autocast=False`` (a family's :attr:`~medisynth.gans.base.GANFamily.cpu_autocast`)
    makes ``auto`` mean fp32 on a CPU.
    """
    wanted = train.precision
    dtype: torch.dtype | None
    if wanted == "auto":
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.bfloat16 if cpu_autocast and cpu_has_native_bf16() else None
    elif wanted == "fp32":
        dtype = None
    elif wanted == "bf16":
        dtype = torch.bfloat16
    else:
        if device.type != "cuda":
            raise ConfigError("train.precision=fp16 needs a CUDA GPU; on CPU use bf16 or fp32")
        dtype = torch.float16
    channels_last = train.channels_last if train.channels_last is not None else dtype is not None
    return dtype, channels_last


def cpu_threads(wanted: int | None, dist_info: DistInfo) -> int | None:
    """Torch threads for this process: ``wanted``, else under torchrun the machine's cores shared
    among its processes, else ``None`` (leave torch's default).

    >>> cpu_threads(3, DistInfo())
    3
    >>> cpu_threads(None, DistInfo()) is None
    True
    """
    if wanted is not None:
        return wanted
    local = local_processes()
    if dist_info.world_size > 1 and local > 1:
        return max(1, (os.cpu_count() or 1) // local)
    return None


def local_processes() -> int:
    """Training processes on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 without it)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def busy_cores_warning(threads: int, cores: int, load: float) -> str | None:
    """A warning when ``threads`` torch threads meet fewer free cores (``cores`` less the
    1-minute ``load`` average of other work): OpenMP threads that wait for a busy core make CPU
    training several times slower (measured: a 2-thread run beside one busy core fell from 3 to
    0.4-1 steps/s, while two 1-thread runs kept full speed).

    >>> busy_cores_warning(2, cores=2, load=0.1) is None
    True
    >>> print(busy_cores_warning(2, cores=2, load=1.0))  # doctest: +ELLIPSIS
    2 torch threads but ~1 of 2 cores free (load average 1.0): ... train.threads=1
    """
    free = max(1, int(cores - load + 0.5))
    if threads <= free:
        return None
    return (
        f"{threads} torch threads but ~{free} of {cores} cores free (load average {load:.1f}): "
        f"threads that wait for busy cores slow CPU training several-fold; set train.threads={free}"
    )


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


# ----------------------------------------------------------------------------- the engine
class Trainer:
    """Trains the family a :class:`~medisynth.config.RunConfig` names on its data.

    Args:
        config: the run.
        dataset: a dataset of dict items to use instead of reading ``config.data`` (tests,
            benchmarks); ``data_info`` must then describe it.
        data_info: see ``dataset``.
        callbacks: called as ``callback(trainer, step, losses)`` after every step.
    """

    def __init__(
        self,
        config: RunConfig,
        dataset: Dataset[dict[str, torch.Tensor]] | None = None,
        data_info: DataInfo | None = None,
        callbacks: Sequence[StepCallback] = (),
    ) -> None:
        if (dataset is None) != (data_info is None):
            raise ConfigError("give both dataset and data_info, or neither")
        self.config = config
        self.out_dir = Path(config.train.out_dir)
        self.checkpoint_path = self.out_dir / CHECKPOINTS / CHECKPOINT_NAME
        self._dataset = dataset
        self._data_info = data_info
        self.callbacks = list(callbacks)
        self.family: GANFamily | None = None
        self.ema: dict[str, EMA] = {}
        self.step = 0
        self._stop_signal: str | None = None
        self._last_good_step: int | None = None

    # ------------------------------------------------------------------ setup
    def _build(self, dist_info: DistInfo) -> None:
        cfg = self.config
        self.device = resolve_device(cfg.train.device, dist_info)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        family_class = get_family(cfg.model.family)
        self.amp_dtype, self.channels_last = resolve_precision(
            cfg.train, self.device, family_class.cpu_autocast
        )
        threads = cpu_threads(cfg.train.threads, dist_info)
        if threads is not None:
            torch.set_num_threads(threads)
        if self.device.type == "cpu" and hasattr(os, "getloadavg"):
            warning = busy_cores_warning(
                torch.get_num_threads() * local_processes(), os.cpu_count() or 1, os.getloadavg()[0]
            )
            if warning:
                log.warning(warning)
        scaler = (
            torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        )  # fp16 only
        self.context = StepContext(self.device, self.amp_dtype, self.channels_last, scaler)
        seed_everything(cfg.seed)  # identical initial weights in every process
        if self._dataset is None or self._data_info is None:
            self._dataset, self._data_info = load_training_data(cfg.data)
        self.data_info = self._data_info
        if self.device.type == "cpu" and self.data_info.spatial_dims == 3:
            # bf16 3D convolutions gave sporadic NaN on CPU (torch 2.13, oneDNN; more often in
            # channels_last_3d): 3D models train in fp32 there unless the user asks for bf16
            if cfg.train.precision == "auto":
                self.amp_dtype = self.context.amp_dtype = None
            if cfg.train.channels_last is None:
                self.channels_last = self.context.channels_last = False
        family = family_class.build(cfg.model, self.data_info, self.context, training=True)
        if self.channels_last:
            memory_format = _memory_format(self.data_info.spatial_dims)
            for _, net in family.modules():
                net.to(memory_format=memory_format)  # type: ignore[call-overload]
        if cfg.train.ema_decay > 0:
            self.ema = {
                name: EMA(unwrap(family.nets[name]), cfg.train.ema_decay)
                for name in family_class.ema_names
            }
            family.ema_nets = {name: ema.module for name, ema in self.ema.items()}
        if dist_info.enabled:
            for name in list(family.nets):
                family.nets[name] = wrap_ddp(family.nets[name], dist_info, self.device)
        self.family = family
        # each process draws its own noise from here on
        seed_everything(cfg.seed + 1_000_003 * (dist_info.rank + 1))

    def _sampling_weights(self) -> torch.Tensor | None:
        """Class-balanced weights when ``data.balance_classes`` is set, else ``None``."""
        if not self.config.data.balance_classes:
            return None
        labels = getattr(self._dataset, "labels", None)
        if labels is None:
            raise ConfigError(
                f"data.balance_classes needs labelled data; data.format "
                f"{self.config.data.format!r} has no class labels"
            )
        return class_balanced_weights(labels)

    def _batches(self, start_batch: int, dist_info: DistInfo) -> Iterator[dict[str, torch.Tensor]]:
        assert self._dataset is not None
        sampler = EpochBatchSampler(
            len(self._dataset),  # type: ignore[arg-type]
            self.config.train.batch_size,
            self.config.seed,
            dist_info.rank,
            dist_info.world_size,
            start_batch=start_batch,
            weights=self._sampling_weights(),
        )
        loader = DataLoader(
            self._dataset,
            batch_sampler=sampler,
            num_workers=self.config.train.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.config.train.num_workers > 0,
            # its own generator: making the iterator must not draw from the global RNG, or a
            # resumed run would be one draw off
            generator=torch.Generator().manual_seed(self.config.seed + start_batch),
        )
        return iter(loader)

    @property
    def dataset(self) -> Dataset[dict[str, torch.Tensor]]:
        """The training dataset (read from ``config.data`` by :meth:`setup` / :meth:`fit`)."""
        if self._dataset is None:
            raise RuntimeError("call setup() or fit() first")
        return self._dataset

    def setup(self, dist_info: DistInfo | None = None) -> GANFamily:
        """Build data, networks, EMA and precision without training (benchmarks, inspection)."""
        self._build(dist_info or DistInfo())
        assert self.family is not None
        return self.family

    def train_one_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One family step plus the EMA update: what the loop does per batch."""
        assert self.family is not None
        losses = self.family.train_step(batch)
        if self.context.scaler is not None:
            self.context.scaler.update()  # once per iteration, after every optimiser stepped
        for name, ema in self.ema.items():
            ema.update(unwrap(self.family.nets[name]))
        self.step += 1
        return losses

    # ------------------------------------------------------------------ checkpoints
    def _state(self, dist_info: DistInfo) -> dict[str, Any]:
        assert self.family is not None
        rng = gather_objects(capture_rng_state(), dist_info)
        return {
            "format": "medisynth-checkpoint-1",
            "step": self.step,
            "config": self.config.without_paths().to_dict(),  # no user path in a checkpoint
            "data_info": self.data_info.to_dict(),
            "family": self.family.state_dict(),
            "ema": {name: ema.state_dict() for name, ema in self.ema.items()},
            "scaler": self.context.scaler.state_dict() if self.context.scaler else {},
            "rng": rng,
            "world_size": dist_info.world_size,
        }

    def save_checkpoint(self, dist_info: DistInfo | None = None) -> Path:
        """Write ``checkpoints/last.pt`` atomically (the main process writes; all gather RNG)."""
        dist_info = dist_info or DistInfo()
        assert self.family is not None
        state = self._state(dist_info)
        if dist_info.is_main:
            bad = _non_finite_parameters(self.family)
            if bad:
                raise TrainingDivergedError(
                    f"not saving a checkpoint at step {self.step}: non-finite weights in {bad}"
                )
            save_checkpoint(self.checkpoint_path, state)
        self._last_good_step = self.step
        barrier(dist_info)
        return self.checkpoint_path

    def _resume(self, dist_info: DistInfo) -> int:
        assert self.family is not None
        if not self.checkpoint_path.is_file():
            log.warning("--resume: no checkpoint at %s; starting from step 0", self.checkpoint_path)
            return 0
        state = load_checkpoint(self.checkpoint_path)
        # through the current schema, so settings added since (with defaults) compare equal;
        # without paths (a checkpoint keeps none): the data may move, its fingerprint may not
        saved = RunConfig.from_dict(state["config"]).without_paths().to_dict()
        current = self.config.without_paths().to_dict()
        changed = [k for k in RESUME_MUST_MATCH if saved.get(k) != current.get(k)]
        if state["data_info"]["fingerprint"] != self.data_info.fingerprint:
            changed.append("the training data (its fingerprint)")
        if saved["train"]["batch_size"] != current["train"]["batch_size"]:
            changed.append("train.batch_size")
        if state["world_size"] != dist_info.world_size:
            changed.append(f"process count ({state['world_size']} -> {dist_info.world_size})")
        if changed:
            raise ConfigError(
                f"cannot resume from {self.checkpoint_path}: {', '.join(changed)} changed since it "
                "was written; use the same settings, or a new train.out_dir for a new run"
            )
        self.family.load_state_dict(state["family"])
        for name, ema in self.ema.items():
            ema.load_state_dict(state["ema"][name])
        if self.context.scaler is not None and state["scaler"]:
            self.context.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"][dist_info.rank])
        self.step = int(state["step"])
        self._last_good_step = self.step
        log.info("resumed from %s at step %d", self.checkpoint_path, self.step)
        return self.step

    # ------------------------------------------------------------------ monitoring
    def write_sample_grid(self, name: str) -> Path:
        """Save the family's monitoring grid as ``samples/<name>.png``."""
        assert self.family is not None
        self.family.prepare_for_sampling()
        images, per_row = self.family.sample_grid()
        path = self.out_dir / "samples" / f"{name}.png"
        save_image_grid(images, path, per_row=per_row)
        return path

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}

        def request_stop(signum: int, frame: FrameType | None) -> None:
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops at once
            self._stop_signal = signal.Signals(signum).name
            log.warning(
                "%s received: finishing this step and writing a checkpoint", self._stop_signal
            )

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, request_stop)
            except ValueError:  # not the main thread: no handlers, Ctrl-C behaves as usual
                break
        return previous

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        """Train until ``train.steps`` (or the time limit, or a signal); returns what happened.

        Args:
            resume: continue the run in ``train.out_dir`` from its checkpoint.
            overwrite: replace the run in ``train.out_dir`` (only the files medisynth wrote
                there go). Without either, a folder that holds a run is refused.
        """
        dist_info = init_distributed(
            "cuda" if self.config.train.device != "cpu" and torch.cuda.is_available() else "cpu"
        )
        previous_handlers = self._install_signal_handlers()
        try:
            self._check_folder(resume, overwrite, dist_info)
            return self._fit(resume, overwrite, dist_info)
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            shutdown(dist_info)

    def _check_folder(self, resume: bool, overwrite: bool, dist_info: DistInfo) -> None:
        """Check the run folder before any process reads data or writes: the main process
        decides and every process follows its verdict, so that no process trains on while
        another stopped."""
        problem: str | None = None
        error: BaseException | None = None
        if dist_info.is_main:
            try:
                check_run_folder(self.out_dir, resume=resume, overwrite=overwrite)
            except Exception as err:  # noqa: BLE001 - every process must hear of any failure
                error, problem = err, str(err)
        device = resolve_device(self.config.train.device, dist_info)
        problem = broadcast_object(problem, dist_info, device if device.type == "cuda" else None)
        if error is not None:
            raise error
        if problem is not None:
            raise ConfigError(f"{problem} (found by the main process)")

    def _fit(self, resume: bool, overwrite: bool, dist_info: DistInfo) -> TrainResult:
        self._build(dist_info)
        assert self.family is not None
        start_step = self._resume(dist_info) if resume else 0
        batches = self._batches(start_step, dist_info)  # may refuse the data: before any write
        metrics = self._start_run_folder(resume, overwrite, start_step, dist_info)
        self._log_start(start_step, dist_info)
        started = time.perf_counter()
        try:
            status, losses = self._loop(batches, start_step, started, metrics, dist_info)
        finally:
            if metrics is not None:
                metrics.close()
        return self._finish(status, losses, start_step, time.perf_counter() - started, dist_info)

    def _start_run_folder(
        self, resume: bool, overwrite: bool, start_step: int, dist_info: DistInfo
    ) -> MetricsLogger | None:
        """The run's first writes (main process only, once the data and the checkpoint were
        accepted): clear an overwritten run, save the config, open the metrics log."""
        if not dist_info.is_main:
            return None
        train_cfg = self.config.train
        clear_run_folder(self.out_dir, overwrite=overwrite)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_config(
            self.config if train_cfg.record_paths else self.config.without_paths(),
            self.out_dir / "config.yaml",
        )
        return MetricsLogger(
            self.out_dir,
            tensorboard=train_cfg.tensorboard,
            resume_step=start_step if resume else None,
        )

    def _log_start(self, start_step: int, dist_info: DistInfo) -> None:
        cfg, train_cfg = self.config, self.config.train
        log.info(
            "training %s on %s (%s%s, %d process%s), steps %d..%d, batch %d",
            cfg.model.family,
            self.device,
            precision_name(self.amp_dtype),
            ", channels_last" if self.channels_last else "",
            dist_info.world_size,
            "es" if dist_info.world_size > 1 else "",
            start_step,
            train_cfg.steps,
            train_cfg.batch_size,
        )

    def _loop(
        self,
        batches: Iterator[dict[str, torch.Tensor]],
        start_step: int,
        started: float,
        metrics: MetricsLogger | None,
        dist_info: DistInfo,
    ) -> tuple[str, dict[str, float]]:
        """Train until the step count, the time limit or a signal; the status and last losses."""
        train_cfg = self.config.train
        progress = tqdm(
            total=train_cfg.steps,
            initial=start_step,
            disable=not (train_cfg.progress and dist_info.is_main),
            desc=f"training {self.config.model.family}",
            unit="step",
            dynamic_ncols=True,
            mininterval=1.0,
        )
        status = "completed"
        losses: dict[str, float] = {}
        window_start, window_steps = time.perf_counter(), 0
        images_per_step = train_cfg.batch_size * dist_info.world_size
        try:
            while self.step < train_cfg.steps:
                losses = self.train_one_step(next(batches))
                window_steps += 1
                problem = _divergence(losses, train_cfg.divergence_threshold)
                if any_rank(problem is not None, dist_info, self._flag_device):
                    raise TrainingDivergedError(self._divergence_message(problem))
                for callback in self.callbacks:
                    callback(self, self.step, losses)
                progress.update(1)
                if self.step % train_cfg.log_every == 0 or self.step == train_cfg.steps:
                    elapsed = time.perf_counter() - window_start
                    rate = window_steps * images_per_step / max(elapsed, 1e-9)
                    window_start, window_steps = time.perf_counter(), 0
                    progress.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
                    if metrics is not None:
                        wall = time.perf_counter() - started
                        metrics.log(
                            self.step, {**losses, "images_per_second": rate, "wall_seconds": wall}
                        )
                if train_cfg.checkpoint_every and self.step % train_cfg.checkpoint_every == 0:
                    self.save_checkpoint(dist_info)
                if (
                    dist_info.is_main
                    and train_cfg.sample_every
                    and self.step % train_cfg.sample_every == 0
                ):
                    self.write_sample_grid(f"step_{self.step:07d}")
                stop = self._stop_signal is not None
                over_time = (
                    train_cfg.max_minutes is not None
                    and time.perf_counter() - started > 60 * train_cfg.max_minutes
                )
                if any_rank(stop or over_time, dist_info, self._flag_device):
                    status = "interrupted" if stop else "time_limit"
                    break
        finally:
            progress.close()
        return status, losses

    def _finish(
        self,
        status: str,
        losses: dict[str, float],
        start_step: int,
        wall: float,
        dist_info: DistInfo,
    ) -> TrainResult:
        """Checkpoint, package (unless interrupted) and summary; the result of the run."""
        images = (self.step - start_step) * self.config.train.batch_size * dist_info.world_size
        checkpoint = self.save_checkpoint(dist_info)
        package_path: Path | None = None
        if dist_info.is_main and status != "interrupted":
            self.write_sample_grid(f"step_{self.step:07d}")
            package_path = self.write_package(wall_seconds=wall, status=status)
        result = TrainResult(
            status=status,
            steps=self.step,
            start_step=start_step,
            wall_seconds=round(wall, 3),
            images_per_second=round(images / max(wall, 1e-9), 2),
            out_dir=str(self.out_dir),
            checkpoint=str(checkpoint),
            package=str(package_path) if package_path else None,
            precision=precision_name(self.amp_dtype),
            device=str(self.device),
            world_size=dist_info.world_size,
            last_losses=losses,
        )
        if dist_info.is_main:
            summary = {  # paths relative to the run folder: no user path in the summary
                **result.to_dict(),
                "out_dir": ".",
                "checkpoint": str(checkpoint.relative_to(self.out_dir)),
                "package": str(package_path.relative_to(self.out_dir)) if package_path else None,
            }
            atomic_write_text(self.out_dir / "train_summary.json", json.dumps(summary, indent=2))
            if status == "interrupted":
                log.warning(
                    "stopped at step %d by %s; checkpoint %s (continue with --resume)",
                    self.step,
                    self._stop_signal,
                    checkpoint,
                )
        barrier(dist_info)
        return result

    @property
    def _flag_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def _divergence_message(self, problem: str | None) -> str:
        where = f"training diverged at step {self.step}"
        what = f": {problem}" if problem else " in another process"
        if self._last_good_step is not None:
            keep = (
                f"The last good checkpoint is {self.checkpoint_path} (step {self._last_good_step})"
                "; it was kept. Continue from it with --resume after lowering the learning rates "
                "(model.lr_g, model.lr_d) or with train.precision=fp32."
            )
        else:
            keep = (
                "No checkpoint had been written yet. Lower the learning rates (model.lr_g, "
                "model.lr_d), try train.precision=fp32, and set train.checkpoint_every lower."
            )
        return f"{where}{what}. {keep}"

    def write_package(self, wall_seconds: float = 0.0, status: str = "completed") -> Path:
        """Write the model package into ``<out_dir>/model`` (EMA networks, BN refreshed)."""
        from medisynth.package import save_package

        assert self.family is not None
        self.family.prepare_for_sampling()
        return save_package(
            self.out_dir / "model",
            family=self.family,
            config=self.config,
            training={
                "steps": self.step,
                "status": status,
                "wall_seconds": round(wall_seconds, 2),
                "precision": precision_name(self.amp_dtype),
                "channels_last": self.channels_last,
                "device": str(self.device),
                "ema": bool(self.ema),
            },
        )


def _memory_format(spatial_dims: int) -> torch.memory_format:
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


def _divergence(losses: dict[str, float], threshold: float) -> str | None:
    for name, value in losses.items():
        if not math.isfinite(value):
            return f"{name} is {value}"
        if abs(value) > threshold:
            return f"|{name}| = {abs(value):.3g} exceeds train.divergence_threshold={threshold:g}"
    return None


def _non_finite_parameters(family: GANFamily) -> list[str]:
    bad = []
    for name, net in family.modules():
        for pname, param in net.named_parameters():
            if not torch.isfinite(param).all():
                bad.append(f"{name}.{pname}")
    return bad


def train(config: RunConfig, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train ``config``'s run (the API behind ``medisynth train``); see :meth:`Trainer.fit`.

    >>> from medisynth.config import RunConfig
    >>> cfg = RunConfig.from_dict({"data": {"format": "mni152_views", "image_size": 32},
    ...                            "train": {"steps": 2, "batch_size": 8, "progress": False,
    ...                                      "out_dir": __import__("tempfile").mkdtemp()},
    ...                            "model": {"g_channels": 8, "d_channels": 8}})
    >>> train(cfg).status
    'completed'
    """
    return Trainer(config).fit(resume=resume, overwrite=overwrite)
