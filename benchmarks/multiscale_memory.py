"""Peak memory and time to generate 64^3 .. 512^3 volumes: the multi-scale patch GAN (tiled,
memmapped) vs a conventional whole-volume 3D generator of the same depth and widths.

Every measurement runs in its own subprocess; peak resident memory is the child's ``VmHWM``
(from ``/proc/self/status``, which counts the memmapped output pages it touched). The
conventional generator runs under an address-space cap (``--cap-gb``, ``RLIMIT_AS``): when it
needs more it fails, and the table says so. Random weights (memory and time do not depend on
training). Also prints the seam metric (mean gradient magnitude on tile borders / in tile
interiors; 1.0 = no visible seams) for the tiled pipeline vs naive non-overlapping tiles.

    python benchmarks/multiscale_memory.py                       # 64..512, cap 8 GiB
    python benchmarks/multiscale_memory.py --sizes 64 128 --baseline-sizes 64 128
    python benchmarks/multiscale_memory.py --package runs/adrenal3d_multiscale/model --seam-only \
        --figure samples.png --real $MEDISYNTH_DATA/adrenalmnist3d/adrenalmnist3d_64.npz
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve()

#: the benchmark model: the architecture of examples/adrenal3d_multiscale.yaml
MODEL = {
    "levels": 2,
    "latent_dim": 16,
    "g0_channels": 16,
    "g_channels": 16,
    "d_channels": 16,
    "res_blocks": 2,
}


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_anon_bytes() -> int:
    """This process's resident anonymous memory now (RssAnon: heap, tensors; no file pages)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


class AnonPeak:
    """Samples :func:`rss_anon_bytes` every ``interval`` s in a thread; ``peak`` is the largest.

    ``VmHWM`` also counts the file pages of memmaps that the process touched; the anonymous
    peak is the working memory proper (model, activations, buffers).
    """

    def __init__(self, interval: float = 0.01) -> None:
        import threading

        self.peak = rss_anon_bytes()
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_anon_bytes())

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_bytes())


def build_family(precision: str = "auto"):  # type: ignore[no-untyped-def]
    from medisynth.gans.base import DataInfo
    from medisynth.gans.multiscale import MultiScaleConfig, MultiScaleGAN

    torch.manual_seed(0)
    family = MultiScaleGAN.build(
        MultiScaleConfig(**MODEL), DataInfo(channels=1, spatial_shape=(64, 64, 64)), training=False
    )
    g = family.inference_generator()
    for refiner in g.refiners:  # untrained refiners are pure interpolation: give them work
        nn.init.normal_(refiner.out.weight, std=0.02)
    return family


class WholeVolumeGenerator(nn.Module):
    """The same layers as the multi-scale generator, run as one network on the whole volume:
    level 0's stages from a noise map at 1/16, then per level x2 upsampling and a refiner body
    (stem, residual blocks, output convolution) at the full width."""

    def __init__(self) -> None:
        from medisynth.nets.multiscale import BaseGenerator, PatchRefiner

        super().__init__()
        self.base = BaseGenerator(MODEL["latent_dim"], 1, MODEL["g0_channels"], 0, 3)
        self.refiners = nn.ModuleList(
            PatchRefiner(1, MODEL["g_channels"], MODEL["res_blocks"], 0, 3)
            for _ in range(MODEL["levels"])
        )
        for refiner in self.refiners:
            nn.init.normal_(refiner.out.weight, std=0.02)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        from medisynth.nets.multiscale import upsample2

        x = self.base(noise)
        for refiner in self.refiners:
            x = refiner(upsample2(x))
        return x


def child(kind: str, size: int, folder: Path, precision: str, tile: int = 64) -> dict[str, object]:
    torch.manual_seed(0)
    voxels = size**3
    start = time.perf_counter()
    if kind == "multiscale":
        from medisynth.apply.volumes import generate_volume

        family = build_family()
        base_rss = peak_rss_bytes()
        with AnonPeak() as anon:
            result = generate_volume(
                family, size, folder / "ms.nii", tile=tile, overlap=8, batch=1, precision=precision
            )
        assert result.shape == (size,) * 3
    else:
        from medisynth.export.nifti import write_nifti
        from medisynth.precision import precision_context

        autocast, channels_last = precision_context(precision)  # type: ignore[arg-type]
        net = WholeVolumeGenerator().eval()
        from medisynth.nets.multiscale import noise_map

        noise = noise_map(MODEL["latent_dim"], (size // 16,) * 3)
        if channels_last:
            net = net.to(memory_format=torch.channels_last_3d)
            noise = noise.contiguous(memory_format=torch.channels_last_3d)
        base_rss = peak_rss_bytes()
        with AnonPeak() as anon, torch.no_grad(), autocast():
            out = net(noise).float()
            write_nifti(folder / "whole.nii", out[0].numpy())
    seconds = time.perf_counter() - start
    return {
        "kind": kind,
        "size": size,
        "seconds": round(seconds, 2),
        "peak": peak_rss_bytes(),
        "peak_anon": anon.peak,
        "start_rss": base_rss,
        "output_bytes": 4 * voxels,
    }


def run_child(
    kind: str, size: int, cap_gb: float | None, precision: str, tile: int = 64
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="ms_bench_", dir=os.environ.get("BENCH_TMP")) as tmp:
        cmd = [
            sys.executable,
            str(HERE),
            "--child",
            kind,
            "--size",
            str(size),
            "--folder",
            tmp,
            "--precision",
            precision,
            "--tile",
            str(tile),
        ]

        def limit() -> None:
            if cap_gb:
                cap = int(cap_gb * 2**30)
                resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

        proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:120]
        return {"kind": kind, "size": size, "failed": f"exit {proc.returncode}: {tail}"}
    return dict(json.loads(lines[-1]))


# ----------------------------------------------------------------------------- seams
def tile_edges(size: int, tile: int, overlap: int) -> list[int]:
    """Positions ``e`` where a final-level tile starts or ends (a seam lies between e-1 and e)."""
    from medisynth.gans.multiscale_tiling import plan_axis

    starts, weights = plan_axis(size, tile, overlap, align=2)
    edges = {s for s in starts} | {s + len(w) for s, w in zip(starts, weights, strict=True)}
    return sorted(e for e in edges if 0 < e < size)


def seam_ratio(volume: np.ndarray, edges: list[list[int]]) -> float:
    """Mean |finite difference| across tile edges (``edges[axis]``) / everywhere else (all axes;
    1.0 = no seams)."""
    border, interior = [], []
    for axis in range(volume.ndim):
        diff = np.abs(np.diff(volume, axis=axis))
        position = np.zeros(diff.shape[axis], bool)
        position[[e - 1 for e in edges[axis]]] = True
        index: list[object] = [np.newaxis] * volume.ndim
        index[axis] = slice(None)
        mask = np.broadcast_to(position[tuple(index)], diff.shape)
        border.append(diff[mask].mean())
        interior.append(diff[~mask].mean())
    return float(np.mean(border) / np.mean(interior))


def seam_table(  # type: ignore[no-untyped-def]
    family,
    shape: tuple[int, ...],
    tile: int,
    seeds: int = 2,
    starts: list[np.ndarray] | None = None,
) -> list[tuple[str, float, float]]:
    """Seam ratios of each tiling, at its own tile edges and at the naive tiling's edges.

    With ``starts`` (low-resolution volumes in [-1, 1]), the pipeline super-resolves them
    (the top levels of a trained model on real data) instead of generating from noise.
    """
    from medisynth.gans.multiscale_tiling import TileSettings, synthesize

    g = family.inference_generator()
    naive_edges = [tile_edges(side, tile, 0) for side in shape]
    rows = []
    for name, settings in [
        ("tiled: margin + linear blending", TileSettings(tile=tile, overlap=8)),
        ("tiled: margin + cosine blending", TileSettings(tile=tile, overlap=8, ramp="cosine")),
        ("naive: no margin, no overlap", TileSettings(tile=tile, overlap=0, margin=0, ramp="none")),
        ("whole volume in one pass", TileSettings(tile=4096)),
    ]:
        own = (
            [tile_edges(side, tile, settings.overlap) for side in shape]
            if settings.tile < max(shape)
            else naive_edges
        )
        values, at_naive = [], []
        for seed in range(seeds if starts is None else len(starts)):
            out = synthesize(
                g,
                shape,
                noise=torch.Generator().manual_seed(seed),
                start=None if starts is None else starts[seed],
                label=seed % g.num_classes if g.num_classes and starts is None else None,
                settings=settings,
            )
            volume = np.clip(out[0], -1, 1)
            values.append(seam_ratio(volume, own))
            at_naive.append(seam_ratio(volume, naive_edges))
        rows.append((name, float(np.mean(values)), float(np.mean(at_naive))))
    return rows


def sr_eval(family, real: str, count: int = 16) -> None:  # type: ignore[no-untyped-def]
    """x2^levels super-resolution of real test volumes (downsampled by block means) with the
    trained patch levels vs plain linear interpolation: L1 (in [-1, 1]) and Dice at 0."""
    from medisynth.data.io import read_medmnist
    from medisynth.gans.multiscale_tiling import TileSettings, synthesize
    from medisynth.nets.multiscale import downsample, upsample2

    arrays = read_medmnist(real)
    truth = torch.from_numpy(
        family.data.intensity_map.forward(arrays.images["test"][:count].astype(np.float32))
    )
    levels = family.levels
    low = downsample(truth, 2**levels)
    g = family.inference_generator()
    sr = torch.stack(
        [
            torch.from_numpy(
                synthesize(g, truth.shape[2:], start=v.numpy(), settings=TileSettings(tile=32))
            )
            for v in low
        ]
    ).clamp(-1, 1)
    linear = low
    for _ in range(levels):
        linear = upsample2(linear)

    def dice(a: torch.Tensor, b: torch.Tensor) -> float:
        a, b = a > 0, b > 0
        return float(2 * (a & b).sum() / max(1, int(a.sum() + b.sum())))

    print(
        f"\nx{2**levels} super-resolution of {count} real test volumes "
        f"({tuple(low.shape[2:])} -> {tuple(truth.shape[2:])}):"
    )
    for name, x in [("trained patch levels", sr), ("linear interpolation", linear)]:
        l1 = float((x - truth).abs().mean())
        print(f"  {name:<22} L1 {l1:.4f}   Dice(>0) {dice(x, truth):.4f}")


def figure(family, path: Path, real: str | None, count: int = 8) -> None:  # type: ignore[no-untyped-def]
    """Rows of three orthogonal mid-slices: ``count`` samples, then ``count`` real volumes."""
    from medisynth.gans.multiscale import orthogonal_slices
    from medisynth.training.logging import save_image_grid

    family.prepare_for_sampling()
    volumes = [family.sample(count, generator=torch.Generator().manual_seed(0))]
    if real:
        from medisynth.data.io import read_medmnist

        arrays = read_medmnist(real)
        split = "test" if "test" in arrays.images else arrays.splits[0]
        pick = arrays.images[split][:count].astype(np.float32)
        volumes.append(torch.from_numpy(family.data.intensity_map.forward(pick)))
    views = torch.cat([orthogonal_slices(v) for v in volumes])
    # two volumes per row: sample | sample ... then real | real
    save_image_grid(views, path, per_row=6)
    print(
        f"figure: {path} (rows of 2 x [axis 0, axis 1, axis 2] mid-slices; "
        f"first {count} synthetic, then {count if real else 0} real)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--baseline-sizes", type=int, nargs="*", default=[64, 128, 256, 512])
    parser.add_argument(
        "--cap-gb",
        type=float,
        default=8.0,
        help="address-space cap of the whole-volume generator's process",
    )
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--package", help="a trained multiscale package for the seam metric")
    parser.add_argument(
        "--seam-size", type=int, nargs="+", default=[128], help="one side (a cube) or D H W"
    )
    parser.add_argument("--seam-only", action="store_true")
    parser.add_argument("--no-seam", action="store_true")
    parser.add_argument("--tile", type=int, default=64, help="tile side of the multi-scale run")
    parser.add_argument("--figure", type=Path, help="write an orthogonal-slice PNG of samples")
    parser.add_argument("--real", help="MedMNIST npz whose test volumes join the figure")
    parser.add_argument("--child", choices=["multiscale", "whole"])
    parser.add_argument("--size", type=int)
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(child(args.child, args.size, args.folder, args.precision, args.tile)),
            flush=True,
        )
        return

    if not args.seam_only:
        rows = []
        for size in sorted(set(args.sizes) | set(args.baseline_sizes)):
            if size in args.sizes:
                rows.append(run_child("multiscale", size, None, args.precision, args.tile))
                print(json.dumps(rows[-1]), flush=True)
            if size in args.baseline_sizes:
                rows.append(run_child("whole", size, args.cap_gb, args.precision))
                print(json.dumps(rows[-1]), flush=True)
        mib = 2**20
        print(
            f"\n{'generator':<12} {'size':>6} {'time s':>8} {'peak MiB':>9} {'output MiB':>10} "
            f"{'peak-output MiB':>15} {'anon peak MiB':>13}"
        )
        for r in rows:
            if "failed" in r:
                print(f"{r['kind']:<12} {r['size']:>5}³ {'failed':>8}  ({r['failed']})")
                continue
            peak, output = int(r["peak"]), int(r["output_bytes"])
            print(
                f"{r['kind']:<12} {r['size']:>5}³ {float(r['seconds']):>8.1f} {peak / mib:>9.0f} "
                f"{output / mib:>10.0f} {(peak - output) / mib:>15.0f} "
                f"{int(r.get('peak_anon', 0)) / mib:>13.0f}"
            )
        ms = {int(r["size"]): r for r in rows if r["kind"] == "multiscale" and "failed" not in r}
        whole = {int(r["size"]): r for r in rows if r["kind"] == "whole" and "failed" not in r}
        print("\nratios (whole-volume / multi-scale, peak memory):")
        for size in sorted(ms):
            if size in whole:
                ratio = int(whole[size]["peak"]) / int(ms[size]["peak"])
                print(f"  {size}³: x{ratio:.2f}")
            else:
                print(f"  {size}³: whole-volume generator failed")
        for what, key in [("peak minus output", "peak"), ("anonymous peak", "peak_anon")]:
            working = {
                s: int(r[key]) - (int(r["output_bytes"]) if key == "peak" else 0)
                for s, r in ms.items()
                if s >= 128
            }
            if len(working) > 1:
                lo, hi = min(working.values()), max(working.values())
                print(
                    f"multi-scale {what}, 128³..: {lo / mib:.0f}..{hi / mib:.0f} MiB "
                    f"(spread {100 * (hi - lo) / lo:.0f}% of the smallest)"
                )

    if args.no_seam:
        return
    if args.package:
        from medisynth.package import load_package

        family = load_package(args.package).family
        label = f"trained package {args.package}"
    else:
        family = build_family()
        label = "random weights"
    if args.figure:
        figure(family, args.figure, args.real)
    if args.package and args.real:
        sr_eval(family, args.real)
    starts = None
    if args.real and args.package:  # super-resolve real test volumes, x4, through 2 levels
        from medisynth.data.io import read_medmnist
        from medisynth.nets.multiscale import downsample

        arrays = read_medmnist(args.real)
        pick = arrays.images["test"][:2].astype(np.float32)
        factor = pick.shape[2] * 4 // args.seam_size[0]  # real side -> seam_size / 4
        low = downsample(torch.from_numpy(family.data.intensity_map.forward(pick)), factor)
        starts = [v.numpy() for v in low]
        label += f"; x4 super-resolution of {len(starts)} real test volumes at {low.shape[2]}³"
    dims = family.data.spatial_dims
    shape = tuple(args.seam_size * dims if len(args.seam_size) == 1 else args.seam_size)
    print(f"\nseam metric at {'x'.join(map(str, shape))}, tile 32 ({label}; 1.0 = no seams):")
    print(f"  {'tiling':<38} {'own tile edges':>15} {'naive tile edges':>17}")
    for name, own, naive in seam_table(family, shape, 32, starts=starts):
        print(f"  {name:<38} {own:>15.3f} {naive:>17.3f}")


if __name__ == "__main__":
    main()
