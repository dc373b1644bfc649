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

The engine owns devices, precision, EMA, checkpoints, DDP wrapping, logging and the NaN guard; it
reaches the networks through ``self.nets`` (a name -> module dict it may wrap in place) and the
averaged copies through ``self.ema_nets``.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from medisynth.data.info import DataInfo
from medisynth.settings import FamilyConfig

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

    @abstractmethod
    def sample_grid(self) -> tuple[torch.Tensor, int]:
        """A monitoring batch in [-1, 1] (fixed noise) and the number of images per grid row."""

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
