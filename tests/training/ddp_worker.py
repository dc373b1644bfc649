"""Launched by torchrun from test_distributed.py: a tiny DDP run; each rank saves its weights."""

from __future__ import annotations

import os
import sys

import torch

from medisynth.config import RunConfig
from medisynth.training.engine import Trainer


def main(out_dir: str, npz: str) -> None:
    config = RunConfig.from_dict(
        {
            "seed": 3,
            "data": {"path": npz},
            "model": {"g_channels": 8, "d_channels": 8, "latent_dim": 8},
            "train": {
                "steps": 4,
                "batch_size": 8,
                "precision": "fp32",
                "device": "cpu",
                "progress": False,
                "tensorboard": False,
                "sample_every": 0,
                "checkpoint_every": 2,
                "out_dir": out_dir,
            },
        }
    )
    trainer = Trainer(config)
    result = trainer.fit()
    assert trainer.family is not None
    state = {
        f"{name}.{key}": value.clone()
        for name, net in trainer.family.modules()
        for key, value in net.state_dict().items()
    }
    rank = int(os.environ["RANK"])
    torch.save({"state": state, "result": result.to_dict()}, f"{out_dir}/rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
