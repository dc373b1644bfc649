"""Training throughput of medisynth's engine vs plain fp32 eager PyTorch, for a family's networks.

Both do a full G+D step (one D update on real + generated images, one G update) at 64x64,
in the same process.

``--family dcgan`` (default; batch 64): "ours" is the engine's real step: the default recipe
(conditional BatchNorm G, spectral-norm projection D, hinge loss, DiffAugment, EMA update) with
the engine's precision choice (bf16 autocast + channels_last on CPUs with native bf16).
"reference" is Radford et al. (2015): G 100 -> 512x4x4 transposed-conv chain with BatchNorm +
ReLU and tanh; D conv chain with LeakyReLU 0.2 and BatchNorm; BCE loss; Adam(2e-4, 0.5).

``--family style`` (batch 32): "ours" is the engine's step of the style family (StyleGAN2-ADA
recipe: logistic loss, lazy R1, style mixing, adaptive augmentation, EMA) with the engine's
precision choice; "reference" is the same networks (default widths) in plain fp32 eager
PyTorch: non-saturating logistic loss, no regularisation, mixing or augmentation, Adam(0.0025,
(0, 0.99)).

    python benchmarks/train_throughput.py                 # throughput, ours vs reference
    python benchmarks/train_throughput.py --family style --threads 1
    python benchmarks/train_throughput.py --family style --threads 1 --size 32 --batch-size 64 \
        --channel-base 512 --channel-max 64                # another width
    python benchmarks/train_throughput.py --loss-curves 500 --out bench-out
        # also: 500 steps fp32 vs mixed precision on real data; CSV + ASCII summary (+ PNG
        # when matplotlib is installed)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medisynth.config import RunConfig
from medisynth.data.datasets import LabeledImageDataset
from medisynth.data.intensity import IntensityMap
from medisynth.gans.base import DataInfo
from medisynth.nets.style import StyleDiscriminator, StyleGenerator
from medisynth.precision import cpu_has_native_bf16
from medisynth.training.engine import Trainer, precision_name
from medisynth.training.logging import read_metrics


# ----------------------------------------------------------------------------- reference
class ReferenceGenerator(nn.Module):
    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 1) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class ReferenceDiscriminator(nn.Module):
    def __init__(self, ndf: int = 64, nc: int = 1) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


class ReferenceStep:
    """The PyTorch DCGAN example's step: D(real), D(fake.detach()), G(D(fake)); BCE."""

    def __init__(self, channels: int, nz: int = 100) -> None:
        self.nz = nz
        self.g, self.d = ReferenceGenerator(nz, nc=channels), ReferenceDiscriminator(nc=channels)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.loss = nn.BCEWithLogitsLoss()

    def __call__(self, real: torch.Tensor) -> None:
        n = real.shape[0]
        ones, zeros = torch.ones(n), torch.zeros(n)
        self.d.zero_grad()
        self.loss(self.d(real), ones).backward()
        fake = self.g(torch.randn(n, self.nz, 1, 1))
        self.loss(self.d(fake.detach()), zeros).backward()
        self.opt_d.step()
        self.g.zero_grad()
        self.loss(self.d(fake), ones).backward()
        self.opt_g.step()


class StyleReferenceStep:
    """The style family's networks in a plain fp32 eager step (non-saturating logistic loss)."""

    def __init__(
        self, channels: int, size: int, widths: dict[str, int], classes: int = 2, z_dim: int = 128
    ) -> None:
        self.z_dim = z_dim
        self.g = StyleGenerator(
            z_dim=z_dim, num_classes=classes, resolution=size, img_channels=channels, **widths
        )
        self.d = StyleDiscriminator(
            resolution=size, img_channels=channels, num_classes=classes, **widths
        )
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=0.0025, betas=(0.0, 0.99))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=0.0025, betas=(0.0, 0.99))

    def __call__(self, real: torch.Tensor, labels: torch.Tensor) -> None:
        softplus = nn.functional.softplus
        z = torch.randn(real.shape[0], self.z_dim)
        self.opt_d.zero_grad(set_to_none=True)
        fake = self.g(z, labels)
        d_loss = softplus(self.d(fake.detach(), labels)) + softplus(-self.d(real, labels))
        d_loss.mean().backward()
        self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        softplus(-self.d(fake, labels)).mean().backward()
        self.opt_g.step()


# ----------------------------------------------------------------------------- ours
def synthetic_data(
    n: int, channels: int, size: int, classes: int = 2
) -> tuple[LabeledImageDataset, DataInfo]:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (n, channels, size, size)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    imap = IntensityMap.integer_range("uint8")
    dataset = LabeledImageDataset(images, labels, imap)
    info = DataInfo(
        channels=channels,
        spatial_shape=(size, size),
        class_names=[str(i) for i in range(classes)],
        class_counts=dataset.class_counts(),
        intensity_map=imap,
        source_dtype="uint8",
    )
    return dataset, info


def time_steps(step, batches: list, warmup: int, steps: int) -> float:
    """Images per second over ``steps`` timed calls (after ``warmup`` untimed ones)."""
    for i in range(warmup):
        step(batches[i % len(batches)])
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    elapsed = time.perf_counter() - start
    return steps * batches[0]["image"].shape[0] / elapsed


GOALS = {
    "dcgan": ">= 1.8 on a CPU with native bf16, >= 1.0 elsewhere",
    "style": "ours does more per step (ADA, mixing, lazy R1, EMA); >= 1.0 with native bf16",
}


def style_widths(args: argparse.Namespace) -> dict[str, int]:
    """The style networks' ``channel_base`` / ``channel_max`` given on the command line."""
    names = ("channel_base", "channel_max")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def throughput(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    size, batch, channels = args.size, args.batch_size, args.channels
    dataset, info = synthetic_data(batch * 4, channels, size)
    batches = [
        {
            "image": dataset.images[i * batch : (i + 1) * batch],
            "label": dataset.labels[i * batch : (i + 1) * batch],
        }
        for i in range(4)
    ]
    config = RunConfig.from_dict(
        {
            "model": {"family": args.family, **style_widths(args)},
            "train": {"batch_size": batch, "out_dir": tempfile.mkdtemp(), "progress": False},
        }
    )
    trainer = Trainer(config, dataset=dataset, data_info=info)
    trainer.setup()
    if args.family == "style":
        style_reference = StyleReferenceStep(channels, size, style_widths(args))

        def reference_step(b: dict) -> None:
            style_reference(b["image"], b["label"].long())
    else:
        dcgan_reference = ReferenceStep(channels)

        def reference_step(b: dict) -> None:
            dcgan_reference(b["image"])

    ours_rates, ref_rates = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        ours_rates.append(time_steps(trainer.train_one_step, batches, args.warmup, args.steps))
        ref_rates.append(time_steps(reference_step, batches, args.warmup, args.steps))
    ours, ref = max(ours_rates), max(ref_rates)
    return {
        "family": args.family,
        **style_widths(args),
        "image_size": size,
        "batch_size": batch,
        "channels": channels,
        "ours_images_per_second": round(ours, 1),
        "reference_images_per_second": round(ref, 1),
        "ratio": round(ours / ref, 2),
        "ours_precision": precision_name(trainer.amp_dtype),
        "ours_channels_last": trainer.channels_last,
        "cpu_native_bf16": cpu_has_native_bf16(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "goal": GOALS[args.family],
    }


# ----------------------------------------------------------------------------- loss curves
def find_breastmnist() -> Path | None:
    root = Path(
        os.environ.get("MEDISYNTH_DATA", Path(__file__).resolve().parents[1] / "../shared/data")
    )
    path = root / "breastmnist" / "breastmnist.npz"
    return path if path.is_file() else None


def loss_curves(args: argparse.Namespace, out: Path) -> dict:
    breast = find_breastmnist()
    data = (
        {"format": "medmnist", "path": str(breast)}
        if breast
        else {"format": "mni152_views", "image_size": 32}
    )
    curves: dict[str, list[dict]] = {}
    for precision in (
        "fp32",
        "bf16" if cpu_has_native_bf16() or torch.cuda.is_available() else "fp32",
    ):
        if precision in curves:
            continue
        run_dir = tempfile.mkdtemp()
        config = RunConfig.from_dict(
            {
                "seed": 0,
                "data": data,
                "train": {
                    "steps": args.loss_curves,
                    "batch_size": args.batch_size,
                    "precision": precision,
                    "log_every": 1,
                    "checkpoint_every": 0,
                    "sample_every": 0,
                    "progress": False,
                    "tensorboard": False,
                    "out_dir": run_dir,
                },
            }
        )
        Trainer(config).fit()
        curves[precision] = read_metrics(Path(run_dir) / "metrics.jsonl")
    keys = ("d_loss", "g_loss")
    rows = []
    names = list(curves)
    for i in range(args.loss_curves):
        row = {"step": i + 1}
        for name in names:
            for key in keys:
                row[f"{name}_{key}"] = curves[name][i][key]
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "loss_curves.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    window = max(1, args.loss_curves // 5)
    summary: dict = {"data": data, "steps": args.loss_curves, "windows": []}
    print(f"\nloss curves ({data['format']}), mean per window of {window} steps:")
    print("steps        " + "  ".join(f"{n}_{k:>7}" for n in names for k in keys))
    for start in range(0, args.loss_curves, window):
        part = rows[start : start + window]
        means = {
            f"{n}_{k}": float(np.mean([r[f"{n}_{k}"] for r in part])) for n in names for k in keys
        }
        summary["windows"].append({"from": start + 1, "to": start + len(part), **means})
        print(
            f"{start + 1:>5}-{start + len(part):<6} "
            + "  ".join(f"{v:12.3f}" for v in means.values())
        )
    if len(names) == 2:
        last = summary["windows"][-1]
        for key in keys:
            a, b = last[f"{names[0]}_{key}"], last[f"{names[1]}_{key}"]
            summary[f"final_window_{key}_difference"] = round(abs(a - b), 4)
        print(
            "final-window |fp32 - bf16|: "
            + ", ".join(f"{k} {summary[f'final_window_{k}_difference']}" for k in keys)
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: wrote the CSV only)")
    else:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, key in zip(axes, keys, strict=True):
            for name in names:
                ax.plot([r[f"{name}_{key}"] for r in rows], label=name, alpha=0.7)
            ax.set_title(key)
            ax.legend()
        fig.savefig(out / "loss_curves.png", dpi=100)
    return summary


REFERENCE_NAMES = {"dcgan": "Radford 2015", "style": "same networks"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", choices=("dcgan", "style"), default="dcgan")
    parser.add_argument("--size", type=int, default=64, help="64: the DCGAN reference's only size")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default: 64 (dcgan), 32 (style)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    parser.add_argument("--channel-base", type=int, help="style family: model.channel_base")
    parser.add_argument("--channel-max", type=int, help="style family: model.channel_max")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--loss-curves", type=int, default=0, help="also compare N steps fp32 vs bf16"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = 32 if args.family == "style" else 64
    if args.family == "dcgan" and args.size != 64:
        parser.error("the reference DCGAN (Radford 2015) is defined at 64x64: use --size 64")
    if args.family != "style" and (args.channel_base or args.channel_max):
        parser.error("--channel-base / --channel-max are settings of --family style")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = throughput(args)
    print(
        f"{args.family} {args.size}x{args.size}, batch {args.batch_size}, "
        f"{args.channels} channel(s), "
        f"{result['threads']} threads, CPU native bf16: {result['cpu_native_bf16']}"
    )
    print(
        f"  ours ({result['ours_precision']}, channels_last={result['ours_channels_last']}): "
        f"{result['ours_images_per_second']:.1f} images/s"
    )
    print(
        f"  reference (fp32 eager, {REFERENCE_NAMES[args.family]}): "
        f"{result['reference_images_per_second']:.1f} images/s"
    )
    print(f"  ratio: x{result['ratio']:.2f}  (goal {result['goal']})")
    if args.loss_curves:
        result["loss_curves"] = loss_curves(args, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
