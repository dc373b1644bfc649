"""The engine: exact resumption after a signal, NaN guard, time limit, monitoring outputs."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from medisynth.errors import ConfigError
from medisynth.precision import cpu_has_native_bf16
from medisynth.training.checkpoint import load_checkpoint
from medisynth.training.data import EpochBatchSampler, class_balanced_weights
from medisynth.training.engine import (
    Trainer,
    TrainingDivergedError,
    resolve_precision,
)
from medisynth.training.logging import read_metrics


def _all_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Every weight, buffer and optimiser tensor of a trained run, flattened by name."""
    assert trainer.family is not None
    out: dict[str, torch.Tensor] = {}
    for name, net in trainer.family.modules():
        for key, value in net.state_dict().items():
            out[f"{name}.{key}"] = value
    for name, ema in trainer.ema.items():
        for key, value in ema.module.state_dict().items():
            out[f"ema.{name}.{key}"] = value
    for name, opt in trainer.family.optimizers.items():
        for index, state in opt.state_dict()["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    out[f"opt.{name}.{index}.{key}"] = value
    return out


@pytest.mark.parametrize(
    "model",
    [{}, {"lecam_weight": 1.0}, {"class_networks": "separate"}],
    ids=["default", "lecam", "per-class"],
)
def test_resume_after_sigint_ends_with_the_same_weights(tiny_run, model) -> None:  # type: ignore[no-untyped-def]
    # LeCam: its moving anchors are training state outside the networks and optimisers
    steps = 7
    straight = Trainer(tiny_run("straight", model=model, steps=steps, sample_every=3))
    assert straight.fit().status == "completed"

    def interrupt_at_3(trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the real signal path

    first = Trainer(
        tiny_run("resumed", model=model, steps=steps, sample_every=3), callbacks=[interrupt_at_3]
    )
    result = first.fit()
    assert result.status == "interrupted"
    assert result.package is None
    assert load_checkpoint(first.checkpoint_path)["step"] == 3

    second = Trainer(tiny_run("resumed", model=model, steps=steps, sample_every=3))
    resumed = second.fit(resume=True)
    assert resumed.status == "completed"
    assert resumed.start_step == 3 and resumed.steps == steps

    expected, got = _all_state(straight), _all_state(second)
    assert expected.keys() == got.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f"resumed run differs in {different[:5]}"
    # and the runs really trained: the weights moved away from a fresh start
    fresh = Trainer(tiny_run("fresh", model=model, steps=steps))
    fresh.setup()
    start = _all_state(fresh)
    projections = [k for k in got if k.startswith("generator.") and k.endswith("project.weight")]
    assert projections and all(not torch.equal(start[k], got[k]) for k in projections)


def test_resume_refuses_a_changed_model_or_data(tiny_run, tiny_npz) -> None:  # type: ignore[no-untyped-def]
    Trainer(tiny_run("run", steps=2)).fit()
    changed = tiny_run("run", steps=4, model={"loss": "lsgan"})
    with pytest.raises(ConfigError, match="cannot resume.*model"):
        Trainer(changed).fit(resume=True)
    import numpy as np

    with np.load(tiny_npz) as npz:
        arrays = dict(npz)
    arrays["train_images"] = 255 - arrays["train_images"]
    np.savez(tiny_npz, **arrays)
    with pytest.raises(ConfigError, match="fingerprint"):
        Trainer(tiny_run("run", steps=4)).fit(resume=True)


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tiny_run) -> None:  # type: ignore[no-untyped-def]
    def poison_at_3(trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        if step == 3:
            assert trainer.family is not None
            with torch.no_grad():
                trainer.family.nets["generator"].project.weight.fill_(float("nan"))

    trainer = Trainer(tiny_run(steps=8, checkpoint_every=2), callbacks=[poison_at_3])
    with pytest.raises(TrainingDivergedError) as caught:
        trainer.fit()
    message = str(caught.value)
    assert "step 4" in message and "nan" in message.lower()
    assert "last good checkpoint" in message and "step 2" in message
    state = load_checkpoint(trainer.checkpoint_path)
    assert state["step"] == 2
    weight = state["family"]["nets"]["generator"]["project.weight"]
    assert torch.isfinite(weight).all()


def test_divergence_threshold_counts_as_divergence(tiny_run) -> None:  # type: ignore[no-untyped-def]
    trainer = Trainer(tiny_run(steps=3, divergence_threshold=1e-6))
    with pytest.raises(TrainingDivergedError, match="No checkpoint had been written"):
        trainer.fit()


def test_time_limit_stops_cleanly_with_a_package(tiny_run) -> None:  # type: ignore[no-untyped-def]
    trainer = Trainer(tiny_run(steps=100_000, max_minutes=0.001))
    result = trainer.fit()
    assert result.status == "time_limit"
    assert 1 <= result.steps < 100_000
    assert result.package is not None and (trainer.out_dir / "model" / "model_card.json").is_file()


def test_monitoring_outputs(tiny_run) -> None:  # type: ignore[no-untyped-def]
    trainer = Trainer(tiny_run(steps=4, sample_every=2, log_every=2))
    result = trainer.fit()
    records = read_metrics(trainer.out_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4]
    assert {"d_loss", "g_loss", "images_per_second"} <= records[0].keys()
    grids = sorted(p.name for p in (trainer.out_dir / "samples").iterdir())
    assert grids == ["step_0000002.png", "step_0000004.png"]
    summary = json.loads((trainer.out_dir / "train_summary.json").read_text())
    assert summary["steps"] == result.steps == 4
    assert (trainer.out_dir / "config.yaml").is_file()


def test_precision_choice() -> None:
    from medisynth.config import TrainConfig

    dtype, channels_last = resolve_precision(TrainConfig(precision="auto"), torch.device("cpu"))
    assert (dtype == torch.bfloat16) == cpu_has_native_bf16()
    assert channels_last == (dtype is not None)
    assert resolve_precision(TrainConfig(precision="fp32"), torch.device("cpu")) == (None, False)
    # a family that opts out of CPU autocast: auto is fp32, an explicit bf16 is still obeyed
    cpu = torch.device("cpu")
    auto = TrainConfig(precision="auto")
    assert resolve_precision(auto, cpu, cpu_autocast=False) == (None, False)
    assert resolve_precision(TrainConfig(precision="bf16"), cpu, False)[0] == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16"):
        resolve_precision(TrainConfig(precision="fp16"), torch.device("cpu"))


def test_bf16_step_runs_when_forced(tiny_run) -> None:  # type: ignore[no-untyped-def]
    result = Trainer(tiny_run(steps=2, precision="bf16")).fit()
    assert result.precision == "bf16"
    assert all(abs(v) < 1e4 for v in result.last_losses.values())


def test_batch_sampler_shards_and_resumes() -> None:
    def take(sampler: EpochBatchSampler, n: int) -> list[list[int]]:
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    rank0 = take(EpochBatchSampler(20, 4, seed=1, rank=0, world_size=2), 2)
    rank1 = take(EpochBatchSampler(20, 4, seed=1, rank=1, world_size=2), 2)
    first_epoch = rank0[0] + rank1[0] + rank0[1] + rank1[1]
    assert len(set(first_epoch)) == 16  # disjoint shards of one permutation
    single = take(EpochBatchSampler(20, 4, seed=1), 6)
    assert take(EpochBatchSampler(20, 4, seed=1, start_batch=4), 2) == single[4:]
    with pytest.raises(ConfigError, match="fewer than one batch"):
        EpochBatchSampler(3, 4, seed=0)


def test_class_balanced_sampling_evens_out_classes_and_resumes() -> None:
    labels = [0] * 90 + [1] * 10
    weights = class_balanced_weights(labels)
    sampler = EpochBatchSampler(100, 10, seed=3, weights=weights)
    it = iter(sampler)
    drawn = [labels[i] for _ in range(50) for i in next(it)]
    assert 0.4 < sum(drawn) / len(drawn) < 0.6  # the 10% class is drawn about half the time
    first = [
        next(iter(EpochBatchSampler(100, 10, seed=3, weights=weights, start_batch=k)))
        for k in range(12)
    ]
    it = iter(sampler)
    assert first == [next(it) for _ in range(12)]
    with pytest.raises(ConfigError, match="one sampling weight per item"):
        EpochBatchSampler(100, 10, seed=3, weights=weights[:50])


def test_balance_classes_setting_reaches_the_sampler(tiny_run) -> None:  # type: ignore[no-untyped-def]
    from medisynth.config import RunConfig

    plain = tiny_run(steps=2)
    data = {**plain.data.model_dump(), "balance_classes": True}
    config = RunConfig.from_dict({**plain.model_dump(), "data": data})
    trainer = Trainer(config)
    result = trainer.fit()
    assert result.steps == 2
    assert trainer._sampling_weights() is not None and plain.data.balance_classes is False


def test_cpu_threads_are_shared_among_local_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    from medisynth.training.distributed import DistInfo
    from medisynth.training.engine import cpu_threads

    assert cpu_threads(None, DistInfo()) is None  # one process: torch's own default
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    expected = max(1, (os.cpu_count() or 1) // 2)
    assert cpu_threads(None, DistInfo(rank=1, world_size=2, local_rank=1)) == expected
    assert cpu_threads(1, DistInfo(rank=1, world_size=2, local_rank=1)) == 1


def test_train_threads_setting_is_applied(tiny_run) -> None:  # type: ignore[no-untyped-def]
    from medisynth.training.engine import train

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        train(tiny_run(out="threads", steps=1, threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_training_warns_when_its_threads_meet_busy_cores(tiny_run, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    from medisynth.training import engine

    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.skip("one core: a single thread is never oversubscribed")
    before = torch.get_num_threads()
    try:
        for load, warned in ((0.0, False), (float(cores), True)):
            monkeypatch.setattr(engine.os, "getloadavg", lambda load=load: (load, load, load))
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="medisynth.training.engine"):
                Trainer(tiny_run(out=f"load{load}", steps=1, threads=cores)).fit()
            said = [r.getMessage() for r in caplog.records if "cores free" in r.getMessage()]
            assert bool(said) == warned
        assert "set train.threads=1" in said[0]  # all cores busy: one thread
    finally:
        torch.set_num_threads(before)
