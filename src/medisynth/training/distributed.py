"""Multi-process training with DistributedDataParallel, launched by ``torchrun``.

``torchrun --standalone --nproc_per_node=2 -m medisynth train run.yaml`` starts two processes;
each finds its rank in the environment variables torchrun sets. Without them everything here is a
no-op and training runs in one process. CPU uses the gloo backend, CUDA uses NCCL (SyncBatchNorm
is not used: it does not work on CPU/gloo, and each process keeps its own BatchNorm statistics).

>>> info = DistInfo()
>>> info.world_size, info.is_main
(1, True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (if any)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def wrap_ddp(net: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """Wrap a network in DistributedDataParallel (gradients averaged across processes)."""
    if not info.enabled or not any(p.requires_grad for p in net.parameters()):
        return net
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=device_ids, broadcast_buffers=True)


def any_rank(flag: bool, info: DistInfo, device: torch.device | None = None) -> bool:
    """True on every process when ``flag`` is true on at least one."""
    if not info.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Collect one picklable object from every process (in rank order)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo, device: torch.device | None = None) -> Any:
    """Rank 0's ``obj`` on every process (``device``: where NCCL stages it; ``None`` on gloo)."""
    if not info.enabled:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0, device=device)
    return holder[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group (safe to call twice)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
