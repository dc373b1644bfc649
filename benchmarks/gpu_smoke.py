"""GPU readiness: every GAN family trains mixed-precision steps on CUDA, then applies its package.

Each family of the registry (``medisynth.gans.FAMILIES``) trains ``--steps`` steps (default 50)
on small synthetic data through the public API: a :class:`~medisynth.training.engine.Trainer`
with an in-memory dataset and the engine's precision choice (``auto``: bf16 autocast on GPUs
with bf16, else fp16 with a gradient scaler; ``--precision fp16`` forces the scaler path). Its
model package is then loaded onto the same device and applied as a user would: ``generate``
(dcgan, style; multiscale also tiles a volume twice the training size), ``translate`` (pix2pix,
cyclegan) or ``enhance`` (srgan). Checks: every step's losses finite, every output finite and
of the expected shape. Prints training and application images/s per family (including the
first steps' warm-up: a readiness check, not a benchmark). A registered family without an entry
here fails, so a new family cannot skip the check.

    python benchmarks/gpu_smoke.py                    # CUDA; "skipped: no CUDA" (exit 0) without
    python benchmarks/gpu_smoke.py --precision fp16 --json gpu_smoke.json
    python benchmarks/gpu_smoke.py --device cpu --steps 3 --tiny     # the same path on a CPU

Exit status: 0 when every family passed (or no CUDA), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medisynth.config import RunConfig
from medisynth.data.intensity import IntensityMap
from medisynth.gans import FAMILIES
from medisynth.gans.base import DataInfo
from medisynth.training.engine import Trainer

Item = dict[str, torch.Tensor]


class TensorItems(Dataset[Item]):
    """Items ``{key: tensors[key][i]}`` of equally long tensors."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        self.tensors = tensors
        self.length = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Item:
        return {key: value[index] for key, value in self.tensors.items()}


def blobs(n: int, side: int, dims: int, seed: int = 0) -> torch.Tensor:
    """Smooth random blobs in [-1, 1], ``(n, 1, side, ...)``."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, side)] * dims, indexing="ij"))
    centres = (torch.rand(n, dims, generator=g) - 0.5).view(n, dims, *(1,) * dims)
    widths = (0.05 + 0.1 * torch.rand(n, generator=g)).view(n, 1, *(1,) * dims)
    return torch.exp(-((grid[None] - centres) ** 2).sum(1, keepdim=True) / widths) * 2 - 1


@dataclass
class Spec:
    """How one family is trained and applied."""

    kind: str  # "generate", "volume", "translate" or "enhance"
    data_format: str
    dims: int
    side: int
    tiny_side: int
    batch_size: int
    #: model settings: family defaults plus these; ``tiny`` replaces them with ``--tiny``
    model: dict[str, Any] = field(default_factory=dict)
    tiny: dict[str, Any] = field(default_factory=dict)


SPECS: dict[str, Spec] = {
    "dcgan": Spec(
        "generate", "medmnist", 2, 64, 16, 32,
        tiny={"g_channels": 4, "d_channels": 4, "latent_dim": 8},
    ),
    "multiscale": Spec(
        "volume", "medmnist", 3, 64, 16, 4,
        tiny={"levels": 1, "latent_dim": 3, "g0_channels": 4, "g_channels": 4,
              "d_channels": 4, "res_blocks": 1, "patch_size": 8, "tile": 16, "overlap": 4},
    ),
    "pix2pix": Spec(
        "translate", "paired", 2, 64, 16, 16,
        tiny={"g_channels": 4, "g_depth": 2, "d_channels": 4, "d_layers": 2},
    ),
    "cyclegan": Spec(
        "translate", "unpaired", 2, 64, 16, 8,
        tiny={"g_channels": 4, "n_blocks": 1, "d_channels": 4, "d_layers": 2},
    ),
    "srgan": Spec(
        "enhance", "medmnist", 2, 64, 16, 16,
        model={"scale": 2},
        tiny={"scale": 2, "g_channels": 4, "n_blocks": 1, "d_channels": 4, "d_layers": 2},
    ),
    # the lazy R1 penalty (float32 inside the mixed-precision step) every 4 or every step
    "style": Spec(
        "generate", "medmnist", 2, 64, 16, 32,
        model={"r1_interval": 4},
        tiny={"latent_dim": 8, "w_dim": 8, "channel_base": 64, "channel_max": 8,
              "r1_interval": 1},
    ),
}  # fmt: skip


def training_data(spec: Spec, side: int, n: int) -> tuple[TensorItems, DataInfo]:
    """Synthetic training items for a family's kind, and what the engine needs to know."""
    shape = (side,) * spec.dims
    images = blobs(n, side, spec.dims)
    if spec.kind == "translate":
        identity = IntensityMap(-1.0, 1.0)
        info = DataInfo(1, shape, source_intensity_map=identity, source_channels=1)
        return TensorItems(source=images, target=-images), info  # contrast inversion
    labels = torch.arange(n) % 2 if spec.kind == "generate" else torch.zeros(n, dtype=torch.long)
    names = ["a", "b"] if spec.kind == "generate" else ["0"]
    counts = {c: int((labels == c).sum()) for c in range(len(names))}
    info = DataInfo(1, shape, class_names=names, class_counts=counts)
    if spec.dims == 3:
        info.spacing = (1.0, 1.0, 1.0)
    return TensorItems(image=images, label=labels), info


def apply_package(
    spec: Spec, package_dir: str, device: str, side: int, work: Path, n: int = 16
) -> int:
    """Use the trained package as a user would; checks its outputs; returns the images made."""
    from medisynth.package import load_package

    package = load_package(package_dir, device=device)
    outputs: list[np.ndarray]
    if spec.kind == "generate":
        from medisynth.apply.generate import generate_arrays

        images, labels = generate_arrays(package, n, seed=0)
        expected: tuple[int, ...] = (n, 1, side, side)
        assert sorted(set(labels.tolist())) == [0, 1], labels
        outputs = [images]
    elif spec.kind == "volume":
        import nibabel as nib

        from medisynth.apply.volumes import generate_volume

        n = 1
        out = work / "volume.nii.gz"
        precision = "auto" if device == "cuda" else "fp32"
        tile = int(package.config.model.tile)
        generate_volume(package, 2 * side, out, seed=0, tile=tile, precision=precision)
        volume: Any = nib.load(out)
        outputs = [np.asarray(volume.get_fdata(), dtype=np.float32)[None, None]]
        expected = (1, 1, *(2 * side,) * 3)
        outputs.append(package.to_source_units(package.sample(2, seed=1)))
        n += 2
    elif spec.kind == "translate":
        from medisynth.apply.translate import translate_array

        sources = blobs(n, side, 2, seed=1).numpy()
        outputs = [np.stack([translate_array(package, image) for image in sources])]
        expected = (n, 1, side, side)
    else:
        from medisynth.apply.enhance import enhance_array

        low = blobs(n, side // 2, 2, seed=1).numpy()
        outputs = [np.stack([enhance_array(package, image) for image in low])]
        expected = (n, 1, side, side)
    if outputs[0].shape != expected:
        raise AssertionError(f"output shape {outputs[0].shape}, expected {expected}")
    for array in outputs:
        if not np.isfinite(array).all():
            raise AssertionError(f"non-finite values in an output {array.shape}")
    return n


def smoke(name: str, spec: Spec, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Train one family, apply its package; the figures, or the error."""
    began = time.perf_counter()
    side = spec.tiny_side if args.tiny else spec.side
    batch = min(spec.batch_size, 4) if args.tiny else spec.batch_size
    data, info = training_data(spec, side, n=max(2 * batch, 8))
    config = RunConfig.from_dict(
        {
            "seed": 0,
            "data": {"format": spec.data_format},
            "model": {"family": name, **(spec.tiny if args.tiny else spec.model)},
            "train": {
                "steps": args.steps,
                "batch_size": batch,
                "device": args.device,
                "precision": args.precision,
                "progress": False,
                "tensorboard": False,
                "sample_every": 0,
                "checkpoint_every": 0,
                "log_every": args.steps,
                "out_dir": str(work / "run"),
            },
        }
    )
    bad: list[str] = []

    def check_losses(trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        bad.extend(f"step {step} {k}={v}" for k, v in losses.items() if not math.isfinite(v))

    result = Trainer(config, dataset=data, data_info=info, callbacks=[check_losses]).fit()
    if bad or result.status != "completed" or not result.package:
        raise AssertionError(f"training: status {result.status}, non-finite losses {bad[:4]}")
    start = time.perf_counter()
    made = apply_package(spec, result.package, args.device, side, work, 4 if args.tiny else 16)
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "ok": True,
        "kind": spec.kind,
        "shape": [side] * spec.dims,
        "batch_size": batch,
        "steps": result.steps,
        "precision": result.precision,
        "device": result.device,
        "train_images_per_second": result.images_per_second,
        "apply_images_per_second": made / seconds,
        "last_losses": result.last_losses,
        "seconds": time.perf_counter() - began,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default="auto")
    parser.add_argument(
        "--families", default=",".join(sorted(FAMILIES)), help="comma-separated (default: all)"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny networks and images (CPU tests)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_smoke: skipped: no CUDA (torch.cuda.is_available() is False)")
        if args.json:
            args.json.write_text(json.dumps({"skipped": "no CUDA"}, indent=2) + "\n")
        return 0
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"gpu_smoke: torch {torch.__version__} on {device_name}, {args.steps} steps per family")
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"gpu_smoke_{name}_") as tmp:
            try:
                if name not in FAMILIES:
                    raise KeyError(f"{name!r} is not a registered family")
                if name not in SPECS:
                    raise KeyError(f"no smoke settings for the registered family {name!r}")
                results[name] = smoke(name, SPECS[name], args, Path(tmp))
            except Exception as err:  # noqa: BLE001 - report every family, then fail
                traceback.print_exc()
                results[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
    print(
        f"{'family':<11} {'kind':<9} {'precision':<9} {'train img/s':>12} {'apply img/s':>12}"
        f" {'seconds':>8}"
    )
    for name, r in results.items():
        if r["ok"]:
            print(
                f"{name:<11} {r['kind']:<9} {r['precision']:<9} "
                f"{r['train_images_per_second']:>12.1f} {r['apply_images_per_second']:>12.1f}"
                f" {r['seconds']:>8.1f}  ok"
            )
        else:
            print(f"{name:<11} FAILED: {r['error']}")
    failed = [name for name, r in results.items() if not r["ok"]]
    print(f"gpu_smoke: {len(results) - len(failed)} passed, {len(failed)} failed")
    if args.json:
        summary = {
            "device": device_name,
            "torch": torch.__version__,
            "steps": args.steps,
            "precision": args.precision,
            "families": results,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
