"""Size guards applied before any array is allocated, so a corrupt header cannot exhaust memory.

>>> check_elements("scan.nii", (512, 512, 300))
78643200
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from medisynth.errors import ReadError

#: Largest array a read accepts (elements), a guard against corrupt headers claiming huge sizes.
MAX_ELEMENTS = 2**31


def check_elements(path: str | os.PathLike[str], shape: Sequence[int]) -> int:
    """Refuse empty arrays and arrays over :data:`MAX_ELEMENTS`; return the element count."""
    elements = math.prod(int(s) for s in shape)
    if elements <= 0:
        raise ReadError(path, f"the header declares an empty array of shape {tuple(shape)}")
    limit = MAX_ELEMENTS  # read at call time, so it can be changed at run time
    if elements > limit:
        raise ReadError(
            path,
            f"the header declares {elements:,} voxels (shape {tuple(shape)}), over the limit "
            f"of {limit:,}",
            "the header is corrupt, or the image needs patch-wise reading",
        )
    return elements
