"""medisynth: train, apply and validate GANs on medical images."""

from medisynth.data.image import Image, LabeledArrays
from medisynth.data.intensity import IntensityMap, fit_intensity_map
from medisynth.errors import MedisynthError

__version__ = "0.1.0"

__all__ = ["Image", "IntensityMap", "LabeledArrays", "MedisynthError", "fit_intensity_map"]
