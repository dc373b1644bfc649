"""The engine's side of the training data: a resumable, shardable batch order and
class-balanced sampling weights.

The data themselves are read by the loaders of :mod:`medisynth.data.formats`
(:func:`~medisynth.data.formats.load_training_data`).

>>> sampler = EpochBatchSampler(10, batch_size=4, seed=0)
>>> first = [b for _, b in zip(range(3), sampler)]
>>> resumed = EpochBatchSampler(10, batch_size=4, seed=0, start_batch=2)
>>> next(iter(resumed)) == first[2]
True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from medisynth.errors import ConfigError


def class_balanced_weights(labels: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Sampling weights that draw every class equally often (1 / the size of its class).

    >>> class_balanced_weights([0, 0, 0, 1]).tolist()
    [0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 1.0]
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    counts = torch.bincount(labels).to(torch.float64)
    return 1.0 / counts[labels]


class EpochBatchSampler(Sampler[list[int]]):
    """Endless batches of indices: a fresh permutation each epoch, seeded by ``(seed, epoch)``.

    The order depends only on ``seed`` and the batch number, so a run resumed at batch ``k``
    (``start_batch=k``) sees exactly the batches an uninterrupted run would. With several
    processes each takes every ``world_size``-th batch of the same global order. Incomplete
    batches at the end of an epoch are dropped.

    With ``weights`` (one per item) an epoch is ``num_items`` draws with replacement in
    proportion to them instead of a permutation (see :func:`class_balanced_weights`).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        weights: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        global_batch = batch_size * world_size
        if num_items < global_batch:
            raise ConfigError(
                f"the dataset has {num_items} images, fewer than one batch of {global_batch} "
                f"(train.batch_size={batch_size} x {world_size} processes); lower train.batch_size"
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch
        self.batches_per_epoch = num_items // global_batch
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights is not None and self.weights.shape != (num_items,):
            raise ConfigError(f"need one sampling weight per item ({num_items})")

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_batch
        while True:
            epoch, position = divmod(step, self.batches_per_epoch)
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            if self.weights is None:
                order = torch.randperm(self.num_items, generator=generator)
            else:
                order = torch.multinomial(
                    self.weights, self.num_items, replacement=True, generator=generator
                )
            start = (position * self.world_size + self.rank) * self.batch_size
            yield order[start : start + self.batch_size].tolist()
            step += 1

    def __len__(self) -> int:  # batches per epoch (the iterator itself never ends)
        return self.batches_per_epoch
