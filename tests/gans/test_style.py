"""The style family: its settings, ADA on every image D sees, lazy penalties, exact resumption
with ADA state, truncation through ``medisynth generate --truncation``, 16-bit and colour
folders end to end."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

import medisynth.gans.discriminator_augment as discriminator_augment
import medisynth.gans.style as style_module
from medisynth.cli import main
from medisynth.config import RunConfig, save_config
from medisynth.errors import ConfigError
from medisynth.gans import get_family
from medisynth.gans.base import DataInfo, StepContext
from medisynth.gans.dcgan import DCGANConfig
from medisynth.gans.style import StyleConfig, StyleGAN
from medisynth.training.checkpoint import load_checkpoint
from medisynth.training.engine import Trainer

TINY: dict[str, Any] = {"latent_dim": 8, "w_dim": 8, "channel_base": 64, "channel_max": 8}


def tiny_family(
    size: int = 16, channels: int = 1, context: StepContext | None = None, **settings: Any
) -> StyleGAN:
    torch.manual_seed(0)
    data = DataInfo(channels=channels, spatial_shape=(size, size), class_names=["a", "b"])
    family = StyleGAN.build(StyleConfig(**{**TINY, **settings}), data, context)
    assert isinstance(family, StyleGAN)
    return family


def batch(n: int = 4, size: int = 16, channels: int = 1) -> dict[str, torch.Tensor]:
    return {
        "image": torch.rand(n, channels, size, size) * 2 - 1,
        "label": torch.arange(n) % 2,
    }


# ------------------------------------------------------------------------------- settings
def test_settings_share_the_dcgan_key_names_and_are_strict() -> None:
    shared = {"conditional", "latent_dim", "loss", "lr_g", "lr_d", "betas", "diffaugment"}
    assert shared <= set(StyleConfig.model_fields) & set(DCGANConfig.model_fields)
    cfg = RunConfig.from_dict({"model": {"family": "style"}}).model
    assert isinstance(cfg, StyleConfig)
    assert (cfg.loss, cfg.ada, cfg.ada_target, cfg.r1_interval, cfg.mix_prob) == (
        "logistic",
        "adaptive",
        0.6,
        16,
        0.9,
    )
    with pytest.raises(ConfigError, match="g_channels"):
        RunConfig.from_dict({"model": {"family": "style", "g_channels": 8}})
    with pytest.raises(ConfigError, match="ada: off"):
        RunConfig.from_dict({"model": {"family": "style", "diffaugment": ["translation"]}})
    RunConfig.from_dict({"model": {"family": "style", "ada": "off", "diffaugment": ["cutout"]}})


def test_r1_gamma_follows_the_stylegan2_ada_rule_unless_given() -> None:
    family = tiny_family(size=28)  # networks at 32 pixels
    assert family.r1_gamma(64) == pytest.approx(0.0002 * 32**2 / 64)
    assert tiny_family(r1_gamma=0.5).r1_gamma(64) == 0.5


def test_volumes_and_unsupported_sizes_are_refused() -> None:
    data = DataInfo(channels=1, spatial_shape=(8, 8, 8), class_names=["a"])
    with pytest.raises(ConfigError, match="square 2D images"):
        StyleGAN.build(StyleConfig(**TINY), data)
    data = DataInfo(channels=1, spatial_shape=(512, 512), class_names=["a"])
    with pytest.raises(ConfigError, match="image size 512"):
        StyleGAN.build(StyleConfig(**TINY), data)


# ------------------------------------------------------------------------------- training
def test_every_image_the_discriminator_sees_goes_through_ada(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    family = tiny_family(ada="fixed", ada_p=0.5, r1_interval=1, loss="relativistic")
    seen: list[int] = []
    pipe = family.augment.pipe
    original = type(pipe).__call__

    def spy(self: Any, x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(type(pipe), "__call__", spy)
    d_inputs: list[torch.Tensor] = []
    disc = family.nets["discriminator"]
    hook = disc.register_forward_pre_hook(lambda _, args: d_inputs.append(args[0]))
    losses = family.train_step(batch())
    hook.remove()
    # D step (real, fake), R1 (real) + R2 (fake), G step (fake, real anchor): 6 passes of 4
    assert seen == [4] * 6 and len(d_inputs) == 6
    assert losses["ada_p"] == 0.5 and "r_t" in losses


def test_diffaugment_replaces_ada_when_ada_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_diff_augment(x: torch.Tensor, policy: list[str]) -> torch.Tensor:
        calls.append(list(policy))
        return x

    monkeypatch.setattr(discriminator_augment, "diff_augment", fake_diff_augment)
    family = tiny_family(ada="off", diffaugment=["translation"], r1_interval=2)
    losses = family.train_step(batch())
    assert calls == [["translation"]] * 4  # D real, D fake, R1 real, G fake
    assert losses["ada_p"] == 0.0


def test_penalties_are_lazy_and_relativistic_adds_r2(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"r1": 0, "r2": 0}

    def counting(name: str, real: Any) -> Any:
        def penalty(*args: Any, **kwargs: Any) -> torch.Tensor:
            counts[name] += 1
            assert args[0].dtype == torch.float32  # computed in float32 under bf16 autocast
            return real(*args, **kwargs)

        return penalty

    monkeypatch.setattr(style_module, "r1_penalty", counting("r1", style_module.r1_penalty))
    monkeypatch.setattr(style_module, "r2_penalty", counting("r2", style_module.r2_penalty))
    context = StepContext(amp_dtype=torch.bfloat16)
    family = tiny_family(r1_interval=2, context=context)
    for _ in range(3):
        losses = family.train_step(batch())
        assert all(np.isfinite(v) for v in losses.values())
    assert counts == {"r1": 2, "r2": 0}  # steps 0 and 2
    counts.update(r1=0)
    family = tiny_family(r1_interval=2, loss="relativistic", r1_gamma=1.0)
    for _ in range(3):
        family.train_step(batch())
    assert counts == {"r1": 2, "r2": 2}


def test_ada_p_rises_when_the_discriminator_is_sure_of_every_real_image() -> None:
    family = tiny_family(ada_interval=1, ada_kimg=0.004)  # p moves 4/4 = 1 per step
    with torch.no_grad():  # a discriminator that says "real" to everything: r_t = 1
        family.nets["discriminator"].out.bias.fill_(100.0)
    losses = family.train_step(batch())
    assert losses["r_t"] == 1.0 and losses["ada_p"] == 1.0
    state = family.state_dict()["augment"]
    assert state["p"] == 1.0


# ------------------------------------------------------------------------------- resumption
def _run(tiny_npz: Path, out: Path, steps: int) -> RunConfig:
    return RunConfig.from_dict(
        {
            "seed": 3,
            "data": {"path": str(tiny_npz), "class_names": ["disc", "bar"]},
            "model": {
                "family": "style",
                **TINY,
                "ada_interval": 2,
                "ada_kimg": 0.004,
                "r1_interval": 2,
            },
            "train": {
                "steps": steps,
                "batch_size": 4,
                "precision": "fp32",
                "progress": False,
                "tensorboard": False,
                "sample_every": 0,
                "checkpoint_every": 0,
                "log_every": 1,
                "out_dir": str(out),
            },
        }
    )


def _all_state(trainer: Trainer) -> dict[str, Any]:
    assert trainer.family is not None
    out: dict[str, Any] = {}
    for name, net in trainer.family.modules():
        out.update({f"{name}.{k}": v for k, v in net.state_dict().items()})
    for name, ema in trainer.ema.items():
        out.update({f"ema.{name}.{k}": v for k, v in ema.module.state_dict().items()})
    assert isinstance(trainer.family, StyleGAN)
    out["augment"] = trainer.family.augment.state_dict()
    return out


def test_resume_with_adaptive_ada_ends_with_the_same_weights_and_p(
    tiny_npz: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    steps = 5
    straight = Trainer(_run(tiny_npz, tmp_path / "straight", steps))
    assert straight.fit().status == "completed"

    def interrupt_at_3(trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    first = Trainer(_run(tiny_npz, tmp_path / "resumed", steps), callbacks=[interrupt_at_3])
    assert first.fit().status == "interrupted"
    saved = load_checkpoint(first.checkpoint_path)
    assert saved["step"] == 3
    second = Trainer(_run(tiny_npz, tmp_path / "resumed", steps))
    assert second.fit(resume=True).status == "completed"

    expected, got = _all_state(straight), _all_state(second)
    assert expected["augment"] == got["augment"] and got["augment"]["p"] > 0  # p really moved
    assert expected.keys() == got.keys()
    different = [k for k in expected if k != "augment" and not torch.equal(expected[k], got[k])]
    assert not different, f"resumed run differs in {different[:5]}"
    logged = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").open()]
    assert all("ada_p" in row and "r_t" in row for row in logged if "g_loss" in row)


# ------------------------------------------------------------------------------- sampling
def test_samples_have_the_data_size_and_psi_0_is_the_class_mean_image() -> None:
    family = tiny_family(size=28)
    for _ in range(2):  # the mean styles move away from their start
        family.train_step(batch(size=28))
    labels = torch.tensor([0, 1])
    one = family.sample(2, labels, torch.Generator().manual_seed(1), truncation_psi=0.0)
    two = family.sample(2, labels, torch.Generator().manual_seed(2), truncation_psi=0.0)
    assert one.shape == (2, 1, 28, 28)
    assert torch.equal(one, two) and not torch.equal(one[0], one[1])
    free = family.sample(2, labels, torch.Generator().manual_seed(2))
    assert not torch.equal(free, two)
    same = family.sample_truncated(2, labels, torch.Generator().manual_seed(2), 0.0)
    assert torch.equal(same, two)
    with pytest.raises(ConfigError, match=r"within \[0, 1\]"):
        family.sample(1, truncation_psi=1.5)


def test_families_without_truncation_say_so() -> None:
    assert get_family("style").truncation and not get_family("dcgan").truncation
    data = DataInfo(channels=1, spatial_shape=(16, 16), class_names=["a", "b"])
    dcgan = get_family("dcgan").build(DCGANConfig(g_channels=4, d_channels=4, latent_dim=8), data)
    with pytest.raises(ConfigError, match="cannot sample with truncation"):
        dcgan.sample_truncated(1, None, None, 0.5)


# ------------------------------------------------------------------------------- end to end
def _png_folder(root: Path, channels: int) -> Path:
    rng = np.random.default_rng(0)
    for name, level in (("normal", 1000), ("lesion", 40000)):
        (root / name).mkdir(parents=True)
        for i in range(4):
            if channels == 1:
                values = rng.integers(level, level + 500, size=(16, 16), dtype=np.uint16)
            else:
                values = rng.integers(level // 256, level // 256 + 20, (16, 16, 3), np.uint8)
            PILImage.fromarray(values).save(root / name / f"{i}.png")
    return root


def _train_folder(tmp_path: Path, channels: int) -> Path:
    torch.set_num_threads(1)
    data = _png_folder(tmp_path / "data", channels)
    config = RunConfig.from_dict(
        {
            "data": {"format": "folder", "path": str(data)},
            "model": {"family": "style", **TINY, "r1_interval": 2},
            "train": {
                "steps": 2,
                "batch_size": 4,
                "precision": "fp32",
                "progress": False,
                "tensorboard": False,
                "sample_every": 0,
                "checkpoint_every": 0,
                "out_dir": str(tmp_path / "run"),
            },
        }
    )
    save_config(config, tmp_path / "run.yaml")
    assert main(["train", str(tmp_path / "run.yaml")]) == 0
    return tmp_path / "run" / "model"


def test_a_16_bit_folder_trains_and_generates_16_bit_pngs_with_truncation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _train_folder(tmp_path, channels=1)
    out = tmp_path / "synth"
    args = ["generate", str(model), "-n", "4", "-o", str(out), "--truncation", "0"]
    assert main([*args, "--seed", "1"]) == 0
    files = sorted(out.rglob("*.png"))
    assert len(files) == 4 and {f.parent.name for f in files} == {"normal", "lesion"}
    first = [np.asarray(PILImage.open(f)) for f in files]
    assert all(a.dtype == np.uint16 and a.shape == (16, 16) for a in first)
    assert json.loads((out / "generation.json").read_text())["truncation_psi"] == 0.0
    # psi 0: every image of a class is the class's mean image, whatever the seed
    assert main([*args, "--seed", "2", "--overwrite"]) == 0
    second = [np.asarray(PILImage.open(f)) for f in sorted(out.rglob("*.png"))]
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    capsys.readouterr()
    assert main([*args[:-1], "2", "--overwrite"]) == 2
    assert capsys.readouterr().err.startswith("error: --truncation 2.0: give a psi within")


def test_a_colour_folder_trains_and_generates(tmp_path: Path) -> None:
    model = _train_folder(tmp_path, channels=3)
    out = tmp_path / "synth"
    assert main(["generate", str(model), "-n", "2", "-o", str(out), "--truncation", "0.7"]) == 0
    images = [np.asarray(PILImage.open(f)) for f in sorted(out.rglob("*.png"))]
    assert len(images) == 2 and all(a.shape == (16, 16, 3) for a in images)


def test_truncation_is_refused_for_a_family_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medisynth.package import save_package

    data = DataInfo(channels=1, spatial_shape=(16, 16), class_names=["a", "b"])
    cfg = RunConfig.from_dict({"model": {"g_channels": 4, "d_channels": 4, "latent_dim": 8}})
    gan = get_family("dcgan").build(cfg.model, data, training=False)
    model = save_package(tmp_path / "model", gan, cfg)
    out = tmp_path / "synth"
    assert main(["generate", str(model), "-n", "2", "-o", str(out), "--truncation", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: --truncation: a dcgan model has no truncation trick")
    assert "style" in err and not out.exists()
