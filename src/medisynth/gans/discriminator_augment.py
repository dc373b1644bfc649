"""What every image a discriminator sees goes through: ADA or DiffAugment, for any 2D family.

A family's config subclasses :class:`AugmentSettings` (the ``ada*`` and ``diffaugment`` keys,
one meaning in every family) and its training step calls a :class:`DiscriminatorAugment`:
``augment(x)`` on every real and generated batch before D, ``augment.update(real_logits)``
once per D step (ADA's ``r_t`` and ``p``), ``augment.stats()`` into the step's log, and
``state_dict`` / ``load_state_dict`` in the family's checkpoint state (a resumed run keeps
``p``).

>>> import torch
>>> settings = AugmentSettings(ada="fixed", ada_p=0.5)
>>> augment = DiscriminatorAugment(settings)
>>> augment(torch.zeros(2, 1, 8, 8)).shape, augment.stats()
(torch.Size([2, 1, 8, 8]), {'ada_p': 0.5, 'r_t': 0.0})
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from medisynth.gans.ada import AdaptiveAugment, AugmentMode
from medisynth.gans.augment import diff_augment
from medisynth.settings import FamilyConfig

Augmentation = Literal["flip", "color", "translation", "cutout"]


class AugmentSettings(FamilyConfig):
    """The discriminator-augmentation keys of a family's ``model:`` section.

    Attributes:
        ada: ``"adaptive"`` (ADA: ``p`` steered by ``r_t = E[sign D(real)]``), ``"fixed"``
            (``p = ada_p`` throughout) or ``"off"``.
        ada_target: the ``r_t`` ADA steers towards.
        ada_p: the initial (adaptive) or constant (fixed) augmentation probability.
        ada_kimg: thousands of images for ``p`` to go from 0 to 1.
        ada_interval: training steps between adjustments of ``p``.
        diffaugment: a DiffAugment policy instead of ADA (only with ``ada: off``; a family's
            default policy gives way to ADA when ``ada`` is on).
    """

    ada: AugmentMode = "off"
    ada_target: float = Field(default=0.6, gt=0, le=1)
    ada_p: float = Field(default=0.0, ge=0, le=1)
    ada_kimg: float = Field(default=100.0, gt=0)
    ada_interval: int = Field(default=4, ge=1)
    diffaugment: list[Augmentation] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_augmentation(self) -> AugmentSettings:
        if self.ada != "off" and "diffaugment" not in self.model_fields_set:
            self.diffaugment = []  # ADA replaces the family's default DiffAugment policy
        if self.diffaugment and self.ada != "off":
            raise ValueError(
                f"model.diffaugment and model.ada: {self.ada} both augment what the "
                "discriminator sees; set model.diffaugment: [] to use ADA, or model.ada: off"
            )
        return self


class DiscriminatorAugment:
    """ADA's pipeline (with its ``p``) or a DiffAugment policy, from :class:`AugmentSettings`."""

    def __init__(self, settings: AugmentSettings) -> None:
        self.settings = settings
        self.pipe = AdaptiveAugment(
            settings.ada,
            settings.ada_p,
            settings.ada_target,
            settings.ada_interval,
            settings.ada_kimg,
        )

    @property
    def adaptive(self) -> bool:
        """Whether ADA's pipeline is in use (adaptive or fixed ``p``)."""
        return self.settings.ada != "off"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.adaptive:
            return self.pipe(x)
        return diff_augment(x, self.settings.diffaugment) if self.settings.diffaugment else x

    def update(self, real_logits: torch.Tensor) -> None:
        """Feed D's logits on reals to ADA (gathered over processes, so all keep one ``p``)."""
        logits = real_logits.detach()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts = [torch.empty_like(logits) for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather(parts, logits)
            logits = torch.cat(parts)
        self.pipe.update(logits)

    def stats(self) -> dict[str, float]:
        """``ada_p`` and the last ``r_t``, for the training log."""
        return {"ada_p": self.pipe.p, "r_t": self.pipe.r_t}

    def state_dict(self) -> dict[str, Any]:
        return self.pipe.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pipe.load_state_dict(state)
