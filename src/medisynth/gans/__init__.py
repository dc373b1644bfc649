"""GAN families: one module per family, found by name through a registry.

Adding a family means one new module with a :class:`~medisynth.gans.base.GANFamily` subclass
(which declares what it can do: ``task``, ``data_formats``, ...), one line in :data:`FAMILIES` and
its test file; ``docs/families.md`` lists the steps.

>>> get_family("dcgan").__name__
'DCGAN'
>>> families_for(task="super_resolve"), families_for(data_format="image_mask")
(['srgan'], ['multiscale', 'pix2pix'])
>>> try:
...     get_family("stylegan9")
... except Exception as err:
...     print(err)
unknown GAN family 'stylegan9'...; known families: ...dcgan...
"""

from __future__ import annotations

import difflib
import importlib

from medisynth.errors import ConfigError
from medisynth.gans.base import DataInfo, GANFamily, StepContext

#: family name -> "module:Class"; the modules are imported only when the family is used
FAMILIES: dict[str, str] = {
    "dcgan": "medisynth.gans.dcgan:DCGAN",
    "multiscale": "medisynth.gans.multiscale:MultiScaleGAN",
    "pix2pix": "medisynth.gans.pix2pix:Pix2Pix",
    "cyclegan": "medisynth.gans.cyclegan:CycleGAN",
    "srgan": "medisynth.gans.srgan:SRGAN",
    "style": "medisynth.gans.style:StyleGAN",
}


def family_names() -> list[str]:
    """Names of the registered GAN families."""
    return sorted(FAMILIES)


def get_family(name: str) -> type[GANFamily]:
    """The family class registered under ``name``; ConfigError listing the known ones otherwise."""
    if name not in FAMILIES:
        close = difflib.get_close_matches(name, FAMILIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown GAN family {name!r}{hint}; known families: {', '.join(family_names())}"
        )
    module_name, _, class_name = FAMILIES[name].partition(":")
    family = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(family, type) and issubclass(family, GANFamily)):
        raise TypeError(f"{FAMILIES[name]} is not a GANFamily subclass")
    return family


def families_for(task: str | None = None, data_format: str | None = None) -> list[str]:
    """Names of the registered families that declare ``task`` and train on ``data_format``
    (either may be left out); for messages that say which model would do."""
    return [
        name
        for name in family_names()
        if (task is None or get_family(name).task == task)
        and (data_format is None or data_format in get_family(name).data_formats)
    ]


def tiled_families() -> list[str]:
    """Names of the registered families that sample images of any size in tiles."""
    return [name for name in family_names() if get_family(name).tiled_volumes]


__all__ = [
    "FAMILIES",
    "DataInfo",
    "GANFamily",
    "StepContext",
    "families_for",
    "family_names",
    "get_family",
    "tiled_families",
]
