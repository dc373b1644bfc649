"""The contract every GAN family implements, and what the engine hands to it.

A family is a class with

* ``config_class``: its pydantic settings (a :class:`~medisynth.settings.FamilyConfig`);
* ``build(config, data, context)``: make networks (``self.nets``) and optimisers; ``data`` is
  the :class:`~medisynth.data.info.DataInfo` of the training data;
* ``train_step(batch) -> dict[str, float]``: one optimisation step, already back-propagated and
  stepped; ``batch`` is a dict of tensors already on the device;
* ``sample(n, labels=None)``: images in [-1, 1], from the averaged (EMA) networks when present;
* ``sample_grid()``: a small fixed-noise batch for monitoring;
* ``state_dict()`` / ``load_state_dict()``: everything needed to resume;
* ``inference_nets()``: the networks a model package needs.

and it **declares what it can do**, so that the configuration, the apply layer and the command
line ask the declaration instead of the family's name or class:

* ``task``: ``"sample"`` (images from noise: :meth:`~GANFamily.sample`), ``"translate"`` (images
  of one domain to another: :meth:`~GANFamily.translate`) or ``"super_resolve"`` (images to a
  ``scale`` times finer grid: :meth:`~GANFamily.translate`);
* ``data_formats``: the ``data.format`` values it trains on (a config that names another is
  refused before any data is read: :meth:`~GANFamily.check_data_format`);
* ``num_classes`` (0: unconditional) and ``conditional``: whether ``sample`` takes class labels;
* ``tiled_volumes``: it samples images of any size in tiles, in bounded memory
  (:meth:`~GANFamily.sample_tiled`, ``medisynth generate --size``);
* ``truncation``: it samples with the truncation trick (:meth:`~GANFamily.sample_truncated`,
  ``medisynth generate --truncation``);
* ``tiny_settings``: the settings of a tiny working model (the contract test in
  ``tests/gans/test_contract.py`` builds and trains one of every registered family).

The engine owns devices, precision, EMA, checkpoints, DDP wrapping, logging and the NaN guard; it
reaches the networks through ``self.nets`` (a name -> module dict it may wrap in place) and the
averaged copies through ``self.ema_nets``.

>>> from medisynth.gans import get_family
>>> DCGAN = get_family("dcgan")
>>> DCGAN.task, sorted(DCGAN.data_formats)[:2], DCGAN.tiled_volumes
('sample', ['folder', 'medmnist'], False)
>>> try:
...     DCGAN.check_data_format("paired")
... except Exception as err:
...     print(err)  # doctest: +ELLIPSIS
data.format 'paired' does not fit the dcgan family: it trains on folder, medmnist, ... data; ...
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from medisynth.data.info import DataInfo
from medisynth.errors import ConfigError
from medisynth.settings import IMAGE_FORMATS, FamilyConfig

if TYPE_CHECKING:
    from medisynth.gans.multiscale_tiling import Scratch, TileSettings
    from medisynth.precision import Precision

#: what a trained model of a family does (:attr:`GANFamily.task`)
Task = Literal["sample", "translate", "super_resolve"]
#: how a trained model of each task is applied (for messages)
APPLY_COMMANDS: dict[str, str] = {
    "sample": "medisynth generate MODEL -n N -o OUT",
    "translate": "medisynth translate MODEL INPUT -o OUTPUT",
    "super_resolve": "medisynth enhance MODEL INPUT -o OUTPUT",
}
#: what a model of each task does, in words (for messages)
TASK_WORDS: dict[str, str] = {
    "sample": "generates images from noise",
    "translate": "translates images",
    "super_resolve": "super-resolves images",
}
#: what a model of each task is called (for messages)
TASK_NOUNS: dict[str, str] = {
    "sample": "a generative model",
    "translate": "an image-to-image model",
    "super_resolve": "a super-resolution model",
}

__all__ = ["DataInfo", "GANFamily", "StepContext", "frozen", "unwrap"]


class StepContext:
    """Device and precision services the engine gives a family.

    Families wrap forward passes in :meth:`autocast` and use :meth:`backward` and :meth:`step`
    so loss scaling (fp16 on CUDA) stays the engine's business.

    >>> ctx = StepContext()
    >>> with ctx.autocast():
    ...     pass
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        amp_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.scaler = scaler

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed-precision context for forward passes (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Step ``optimizer`` (unscaling first in fp16) and clear its gradients."""
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """Put an image batch on the device in the networks' memory format."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim in (4, 5):
            fmt = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
            x = x.contiguous(memory_format=fmt)
        return x


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[nn.Module]:
    """Stop gradients into ``modules``' weights for the block (e.g. the discriminator during a
    generator step); yields the first module.

    >>> net = nn.Linear(2, 1)
    >>> with frozen(net) as critic:
    ...     critic.weight.requires_grad
    False
    >>> net.weight.requires_grad
    True
    """
    for module in modules:
        module.requires_grad_(False)
    try:
        yield modules[0]
    finally:
        for module in modules:
            module.requires_grad_(True)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel wrapper (or the module itself)."""
    inner = getattr(module, "module", None)
    return inner if isinstance(inner, nn.Module) else module


class GANFamily(ABC):
    """Base class of a GAN family (see the module docstring for the contract)."""

    config_class: ClassVar[type[FamilyConfig]] = FamilyConfig
    #: names in ``nets`` whose exponential moving average the engine keeps
    ema_names: ClassVar[tuple[str, ...]] = ()
    #: whether ``train.precision: auto`` may pick bf16 autocast on a CPU for this family
    cpu_autocast: ClassVar[bool] = True

    # ------------------------------------------------------------------ the declaration
    #: what a trained model does: sample from noise, translate, or super-resolve images
    task: ClassVar[Task] = "sample"
    #: the ``data.format`` values the family trains on
    data_formats: ClassVar[frozenset[str]] = IMAGE_FORMATS
    #: samples images of any size in tiles (:meth:`sample_tiled`; ``generate --size``)
    tiled_volumes: ClassVar[bool] = False
    #: samples with the truncation trick (:meth:`sample_truncated`; ``generate --truncation``)
    truncation: ClassVar[bool] = False
    #: settings of a tiny working model of the family (model key -> value, ``family`` aside):
    #: what the contract test builds and trains on 16 x 16 images
    tiny_settings: ClassVar[dict[str, Any]] = {}
    #: classes :meth:`sample` takes labels of (0: unconditional); families set it in ``setup``
    num_classes: int = 0

    def __init__(self, config: FamilyConfig, data: DataInfo, context: StepContext) -> None:
        self.config = config
        self.data = data
        self.context = context
        self.nets: dict[str, nn.Module] = {}
        self.ema_nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    @classmethod
    def build(
        cls,
        config: FamilyConfig,
        data: DataInfo,
        context: StepContext | None = None,
        training: bool = True,
    ) -> GANFamily:
        """Make the family's networks (and, when ``training``, its optimisers)."""
        family = cls(config, data, context or StepContext())
        family.setup(training)
        return family

    @classmethod
    def name(cls) -> str:
        """The family's name in the registry (``model.family``)."""
        return str(cls.config_class.model_fields["family"].default)

    @classmethod
    def check_data_format(cls, fmt: str) -> None:
        """ConfigError unless the family trains on ``data.format`` ``fmt`` (checked when a run
        config is validated, before any data is read)."""
        if fmt not in cls.data_formats:
            accepted = sorted(cls.data_formats)
            listed = ", ".join(accepted[:-1]) + f" or {accepted[-1]}" if accepted else "no"
            raise ConfigError(
                f"data.format {fmt!r} does not fit the {cls.name()} family: it trains on "
                f"{listed} data; set data.format to one of them, or choose a family that "
                f"trains on {fmt} data (model.family)"
            )

    @property
    def conditional(self) -> bool:
        """Whether :meth:`sample` draws images of given classes (``num_classes > 0``)."""
        return self.num_classes > 0

    @property
    def scale(self) -> int:
        """How many times finer :meth:`translate` makes the grid (super-resolving families)."""
        return 1

    @property
    def input_multiple(self) -> int:
        """Translating families: the image sides their networks take are multiples of this
        (the apply layer pads inputs of other sizes); 1: any size."""
        return 1

    def unable(self, what: str) -> ConfigError:
        """The error for a call the family's declaration does not cover: what it does instead,
        and the command that applies it."""
        return ConfigError(
            f"a {self.name()} model {TASK_WORDS[self.task]} and cannot {what}; use "
            f"`{APPLY_COMMANDS[self.task]}`"
        )

    @abstractmethod
    def setup(self, training: bool) -> None:
        """Create ``self.nets`` (and ``self.optimizers`` when training)."""

    @abstractmethod
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimisation step on ``batch``; returns the losses as floats."""

    @abstractmethod
    def sample(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` synthetic images in [-1, 1], on the CPU, ``(n, C, *spatial)`` float32.

        ``generator`` (a seeded CPU ``torch.Generator``) makes the noise reproducible without
        touching the global random state.
        """

    def sample_truncated(
        self,
        n: int,
        labels: torch.Tensor | None,
        generator: torch.Generator | None,
        psi: float,
    ) -> torch.Tensor:
        """Families with ``truncation``: :meth:`sample` with every style pulled towards its
        class's mean style by ``psi`` (1: no truncation, 0: the class's mean image)."""
        raise self.unable("sample with truncation (generate --truncation)")

    @abstractmethod
    def sample_grid(self) -> tuple[torch.Tensor, int]:
        """A monitoring batch in [-1, 1] (fixed noise) and the number of images per grid row."""

    def translate(
        self,
        images: torch.Tensor,
        batch_size: int = 16,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Translating and super-resolving families: map images in [-1, 1] ``(N, C, *spatial)``
        to the output domain (CPU, float32; ``scale`` times finer for super-resolution)."""
        raise self.unable("translate images")

    # ------------------------------------------------------------------ tiled images
    def tiled_grid(self, size: Sequence[int]) -> tuple[int, ...]:
        """Families with ``tiled_volumes``: the grid :meth:`sample_tiled` fills for an image of
        ``size`` (rounded up to the family's unit; crop the result back to ``size``)."""
        raise self.unable("generate images of any size in tiles (generate --size)")

    def tile_settings(self) -> TileSettings:
        """Families with ``tiled_volumes``: the tiling the model's settings ask for."""
        raise self.unable("generate images of any size in tiles (generate --size)")

    def refine_factors(self) -> tuple[int, ...]:
        """The factors by which :meth:`sample_tiled` refines a given image (``start``);
        empty when it does not."""
        return ()

    def sample_tiled(
        self,
        out: np.ndarray,
        *,
        generator: torch.Generator | None = None,
        label: int | None = None,
        condition: np.ndarray | None = None,
        start: np.ndarray | None = None,
        settings: TileSettings | None = None,
        scratch: Scratch | None = None,
        precision: Precision = "fp32",
        progress: bool = False,
    ) -> None:
        """Families with ``tiled_volumes``: fill ``out`` (``(C, *grid)`` float32 zeros, e.g. a
        memmap; ``grid`` from :meth:`tiled_grid`) with one image in [-1, 1], tile by tile.

        Args:
            generator: seeded CPU random generator of the noise (same seed, same image).
            label: the class (class-conditional models; default 0).
            condition: ``(Cc, *grid)`` condition of a model conditioned on images.
            start: a ``(C, *grid / f)`` image in [-1, 1] to refine by a factor ``f`` of
                :meth:`refine_factors` instead of generating from noise.
            settings: the tiling (default: :meth:`tile_settings`).
            scratch: where intermediate arrays live (memmaps beside the output, or RAM).
            precision: ``"fp32"``, ``"bf16"`` or ``"auto"`` for the forward passes.
            progress: show progress bars.
        """
        raise self.unable("generate images of any size in tiles (generate --size)")

    def default_labels(self, n: int) -> torch.Tensor | None:
        """Labels cycling through the classes (``None`` for an unconditional model)."""
        return torch.arange(n) % self.num_classes if self.num_classes else None

    def _inference_generator(self) -> nn.Module:
        """The network named ``generator`` that sampling uses: its EMA copy when training kept
        one, else the live network."""
        return self.ema_nets.get("generator", unwrap(self.nets["generator"]))

    def batch_labels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """A conditional family's class labels of ``batch`` on its device (``None`` when the
        family is unconditional)."""
        if not self.num_classes:
            return None
        return batch["label"].to(self.context.device, non_blocking=True).long()

    def inference_nets(self) -> dict[str, nn.Module]:
        """The networks generation needs (the EMA copies when the engine keeps them)."""
        return {name: self.ema_nets.get(name, unwrap(net)) for name, net in self.nets.items()}

    def modules(self) -> Iterator[tuple[str, nn.Module]]:
        for name, net in self.nets.items():
            yield name, unwrap(net)

    def state_dict(self) -> dict[str, Any]:
        """Networks and optimisers (the engine adds EMA, RNG and its own counters)."""
        return {
            "nets": {name: net.state_dict() for name, net in self.modules()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, net in self.modules():
            net.load_state_dict(state["nets"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])

    def prepare_for_sampling(self) -> None:  # noqa: B027 - optional hook
        """Called by the engine before grids and packaging (e.g. refresh BatchNorm statistics)."""
