"""DDP through torchrun: two CPU processes on gloo train one model in lock-step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medisynth.training.checkpoint import load_checkpoint

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "batch_size"),
    # per-class networks with 2 images per process: some batches miss a class, so a class's
    # networks sit out a step on one process and not on the other
    # style: several discriminator passes per step and a lazy R1 penalty every step, whose
    # backward pass leaves D's output bias without a gradient unless the family includes it
    [
        ({}, 8),
        ({"class_networks": "separate"}, 2),
        (
            {
                "family": "style",
                **{"latent_dim": 8, "w_dim": 8, "channel_base": 64, "channel_max": 8},
                **{"r1_interval": 1, "loss": "relativistic", "ada_interval": 1},
            },
            4,
        ),
    ],
    ids=["shared", "per-class", "style"],
)
def test_two_process_ddp_on_gloo(
    tmp_path: Path, tiny_npz: Path, model: dict, batch_size: int
) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which(
        "torchrun"
    )
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this Python")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            *(torchrun, "--standalone", "--nproc_per_node=2", str(WORKER)),
            *(str(out), str(tiny_npz), json.dumps(model), str(batch_size)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for saved in ranks:
        assert saved["result"]["world_size"] == 2
        assert saved["result"]["status"] == "completed" and saved["result"]["steps"] == 4
    # different data and noise in each process, yet DDP kept the trained weights identical
    state0, state1 = ranks[0]["state"], ranks[1]["state"]
    # buffers each process updates from its own batch (BatchNorm statistics, the mean styles)
    local = ("running", "num_batches", "w_avg")
    weights = [k for k in state0 if not any(word in k for word in local)]
    assert weights and all(torch.equal(state0[k], state1[k]) for k in weights)
    checkpoint = load_checkpoint(out / "checkpoints" / "last.pt")
    assert checkpoint["world_size"] == 2 and checkpoint["step"] == 4
    assert len(checkpoint["rng"]) == 2  # one random state per process, for exact resumption
    assert (out / "model" / "weights.safetensors").is_file()


@pytest.mark.slow
def test_ddp_ranks_agree_to_refuse_an_existing_run(tmp_path: Path, tiny_npz: Path) -> None:
    """Only rank 0 looks at the run folder, before any rank writes, and every rank stops with
    its verdict: no rank trains on (or waits forever for) a run the others refused."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which(
        "torchrun"
    )
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this Python")
    out = tmp_path / "ddp"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"an earlier run's checkpoint")
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*(torchrun, "--standalone", "--nproc_per_node=2", str(WORKER)), str(out), str(tiny_npz)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert done.returncode != 0
    assert done.stderr.count("already holds a training run") >= 2, done.stderr[-4000:]
    assert (out / "checkpoints" / "last.pt").read_bytes() == b"an earlier run's checkpoint"
    assert (out / "metrics.jsonl").read_text() == '{"step": 1}\n'
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "metrics.jsonl"]
