"""Cost of the ADA pipeline (forward + backward) against computing every transform for the
whole batch, in the same run.

``medisynth.gans.ada.augment`` computes each transform only for the images chosen for it (at a
small ``p``, few or none). The reference computes each transform for every image and keeps the
chosen ones (what the pipeline did before); both give the same images and gradients
(``tests/gans/test_ada.py``). Prints milliseconds per call and the ratio for each ``p``.

    OMP_NUM_THREADS=1 python benchmarks/ada_pipeline.py [--size 32] [--batch-size 64]
        [--p 0.05 0.2 0.6] [--calls 30]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

import medisynth.gans.ada as ada

Chooser = Callable[[torch.Tensor, torch.Tensor, Callable], torch.Tensor]


def whole_batch(x: torch.Tensor, on: torch.Tensor, transform: Callable) -> torch.Tensor:
    """The reference: the transform computed for every image, the chosen ones kept."""
    return torch.where(on.view(-1, 1, 1, 1), transform(x, torch.arange(len(x))), x)


def milliseconds(chooser: Chooser, x: torch.Tensor, p: float, calls: int) -> float:
    """Mean time of one augment forward + backward with ``chooser`` in place."""
    original = ada._on_chosen
    ada._on_chosen = chooser
    try:
        torch.manual_seed(0)
        start = time.perf_counter()
        for _ in range(calls):
            leaf = x.clone().requires_grad_(True)
            ada.augment(leaf, p).sum().backward()
        return (time.perf_counter() - start) / calls * 1000
    finally:
        ada._on_chosen = original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--p", type=float, nargs="+", default=[0.05, 0.2, 0.6])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.rand(args.batch_size, 1, args.size, args.size) * 2 - 1
    milliseconds(ada._on_chosen, x, 0.5, 2)  # warm-up
    print(f"ADA pipeline, batch {args.batch_size} x {args.size} px, {args.threads} thread(s)")
    for p in args.p:
        ours = milliseconds(ada._on_chosen, x, p, args.calls)
        reference = milliseconds(whole_batch, x, p, args.calls)
        print(
            f"p = {p:g}: chosen images only {ours:.1f} ms, whole batch {reference:.1f} ms, "
            f"x{reference / ours:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
