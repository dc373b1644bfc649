"""Writers for synthetic images: PNG (8/16-bit), NIfTI, MedMNIST-layout npz. Every write is atomic.

>>> import numpy as np, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> write_png(folder / "a.png", np.full((1, 4, 4), 1000.0), "uint16")
>>> from PIL import Image
>>> np.asarray(Image.open(folder / "a.png")).max()
np.uint16(1000)
"""

from medisynth.export.nifti import write_nifti
from medisynth.export.npz import write_medmnist_npz
from medisynth.export.png import png_storage, write_png

__all__ = ["png_storage", "write_medmnist_npz", "write_nifti", "write_png"]
