"""The family registry: names, lookups and what its entries declare.

What every registered family must honour is checked in ``test_contract.py``, from each family's
own declaration, so adding a family needs no edit here.
"""

from __future__ import annotations

import pytest

from medisynth.errors import ConfigError
from medisynth.gans import FAMILIES, families_for, family_names, get_family, tiled_families
from medisynth.gans.base import GANFamily


def test_unknown_family_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown GAN family 'dcgam' \(did you mean 'dcgan'\?\)"):
        get_family("dcgam")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_entry_is_a_family_registered_under_its_config_name(name: str) -> None:
    family_class = get_family(name)
    assert issubclass(family_class, GANFamily)
    assert family_class.name() == name == family_class.config_class().family


def test_the_registry_answers_from_the_declarations() -> None:
    for task in ("sample", "translate", "super_resolve"):
        assert families_for(task=task) == [n for n in family_names() if get_family(n).task == task]
    for fmt in ("medmnist", "paired", "unpaired", "image_mask"):
        assert families_for(data_format=fmt) == [
            n for n in family_names() if fmt in get_family(n).data_formats
        ]
    assert tiled_families() == [n for n in family_names() if get_family(n).tiled_volumes]
    assert set(families_for()) == set(FAMILIES)
