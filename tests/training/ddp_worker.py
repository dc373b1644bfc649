"""Launched by torchrun from test_distributed.py: a tiny DDP run; each rank saves its weights.

Arguments: OUT_DIR NPZ [MODEL_JSON [BATCH_SIZE]] (model settings, batch per process)."""

from __future__ import annotations

import json
import os
import sys

import torch

from medisynth.config import RunConfig
from medisynth.training.engine import Trainer


def main(out_dir: str, npz: str, model: str = "{}", batch_size: str = "8") -> None:
    settings = json.loads(model)
    # a tiny DCGAN unless the settings name another family (then they say it all)
    tiny = {} if "family" in settings else {"g_channels": 8, "d_channels": 8, "latent_dim": 8}
    config = RunConfig.from_dict(
        {
            "seed": 3,
            "data": {"path": npz},
            "model": {**tiny, **settings},
            "train": {
                "steps": 4,
                "batch_size": int(batch_size),
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
    main(*sys.argv[1:])
