"""Exponential moving average of a network's weights (the "EMA generator").

>>> import torch
>>> net = torch.nn.Linear(2, 1)
>>> ema = EMA(net, decay=0.9)
>>> with torch.no_grad():
...     _ = net.weight.add_(1.0)
>>> ema.update(net)
>>> bool((ema.module.weight < net.weight).all())
True
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """Keeps ``module`` (a frozen copy, in eval mode) as the running average of a network.

    Parameters are averaged with ``decay``, warmed up as ``min(decay, (1 + n) / (10 + n))`` over
    the first updates; buffers (BatchNorm statistics) are copied from the live network.
    """

    def __init__(self, net: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.num_updates = 0
        self.module = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Move the average one step towards ``net``'s current weights."""
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        mine: list[torch.Tensor] = list(self.module.parameters())
        theirs = [p.detach() for p in net.parameters()]
        if mine:
            torch._foreach_lerp_(mine, theirs, 1.0 - decay)
        for own, other in zip(self.module.buffers(), net.buffers(), strict=True):
            own.copy_(other)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])
