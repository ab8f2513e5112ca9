"""The loop: outputs on disk, exact resume, kill-and-resume, non-finite losses, stop signals."""

from __future__ import annotations

import json
import os

import pytest
import torch

from acl_dist import rules
from acl_dist.training.checkpoint import latest_checkpoint
from acl_dist.training.trainer import Trainer, TrainingError
from tests.conftest import tiny_overrides
from tests.numerics import FLOAT64_METRIC_RTOL, default_dtype


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.method.nets.state_dict().items()}


def test_training_writes_samples_metrics_checkpoint_and_recipe(tiny_recipe):
    recipe = tiny_recipe("acl_gan_gp", "train.steps=4", "train.sample_every=2", "train.log_every=2",
                         "log.trackers=[tensorboard]")
    result = Trainer(recipe).train()
    run = recipe.run_dir
    assert sorted(os.listdir(os.path.join(run, "samples"))) == ["step-00000002.png", "step-00000004.png"]
    lines = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    assert [line["step"] for line in lines] == [2, 4]
    assert {"Dx/d_loss", "Dx/gp", "rec/rec", "Gz/gz_loss", "images_per_s"} <= set(lines[-1])
    assert os.listdir(os.path.join(run, "tensorboard"))
    assert "name: acl_gan_gp" in open(os.path.join(run, "recipe.yaml")).read()
    assert result.checkpoint == latest_checkpoint(run)


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    from acl_dist.config import load_recipe

    def run(name, steps, resume="auto"):
        ov = tiny_overrides("acl_gan_gp", str(tmp_path), f"run.name={name}", f"train.steps={steps}",
                            f"run.resume={resume}", "train.ckpt_every=2")
        return Trainer(load_recipe(None, ov))

    straight = run("straight", 5)
    straight.train()
    first = run("split", 2)
    first.train()
    resumed = run("split", 5)
    assert resumed.step == 2 and resumed.resumed_from.endswith("step-00000002")
    resumed.train()
    for key, value in _weights(straight).items():
        assert torch.equal(value, resumed.method.nets.state_dict()[key]), key
    for name in straight.ema.nets:
        for a, b in zip(straight.ema.nets[name].parameters(), resumed.ema.nets[name].parameters()):
            assert torch.equal(a, b)


def test_non_finite_losses_are_skipped_counted_then_stop(tiny_recipe, monkeypatch):
    trainer = Trainer(tiny_recipe("gan", "train.steps=50", "train.max_bad_steps=3"))
    d_phase = trainer.phases[0]
    original = d_phase.loss
    calls = {"n": 0}

    def sometimes_nan(batch, ctx):
        calls["n"] += 1
        loss, values = original(batch, ctx)
        return (loss * float("nan") if calls["n"] >= 2 else loss), values

    object.__setattr__(d_phase, "loss", sometimes_nan)
    before = [p.clone() for p in trainer.method.nets["D"].parameters()]
    trainer.run_step(iter(trainer.stream), {})  # finite
    changed = [p.clone() for p in trainer.method.nets["D"].parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, changed))
    trainer.run_step(iter(trainer.stream), {})  # non-finite: D untouched, counted
    assert trainer.bad_steps == 1
    assert all(torch.equal(a, b) for a, b in zip(changed, trainer.method.nets["D"].parameters()))
    assert trainer.skipped == 1
    with pytest.raises(TrainingError, match="in a row had non-finite losses"):
        trainer.train()


def test_bf16_autocast_trains(tiny_recipe):
    result = Trainer(tiny_recipe("acl_gan_gp", "train.steps=2", "train.mixed_precision=bf16")).train()
    assert result.step == 2


def _first_conv_weight(trainer):
    """A conv weight with several input channels (a 1-channel one is contiguous in both layouts)."""
    return next(m.weight for m in trainer.method.nets["Dx"].modules()
                if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)


def test_channels_last_is_taken_on_the_cpu_and_computes_the_same_step(tiny_recipe):
    """auto: NHWC on the CPU (faster there, benchmarks/train_step.py); the step's numbers do not change.

    Compared in float64: NHWC runs other kernels, which sum in another order, and two float32 steps can amplify
    that to a whole Adam step (tests/unit/test_golden.py); in float64 two steps stay within
    FLOAT64_METRIC_RTOL."""
    runs = {}
    for mode in ("auto", "never"):
        with default_dtype(torch.float64):
            trainer = Trainer(tiny_recipe("acl_gan_gp", f"train.channels_last={mode}", "model.resolution=16"))
            weight = _first_conv_weight(trainer)
            assert weight.is_contiguous(memory_format=torch.channels_last) == (mode == "auto")
            assert trainer.channels_last == (mode == "auto") and weight.dtype == torch.float64
            sums: dict = {}
            batches = iter(trainer.stream)
            for _ in range(2):
                trainer.run_step(batches, sums)
                trainer.step += 1
        runs[mode] = sums
    for key, value in runs["never"].items():
        torch.testing.assert_close(runs["auto"][key], value, rtol=FLOAT64_METRIC_RTOL, atol=FLOAT64_METRIC_RTOL)


def test_channels_last_never_applies_to_vector_data(tiny_recipe):
    trainer = Trainer(tiny_recipe("gan", "data.source=toy", "train.channels_last=always"))
    assert not trainer.channels_last


@pytest.mark.parametrize("device, extra, nhwc", [
    ("cpu", [], True),
    ("cuda", ["train.mixed_precision=bf16", "model.resolution=128"], True),  # 1.09-1.12x on an H100
    ("cuda", ["train.mixed_precision=bf16", "model.resolution=64"], False),  # no gain measured at 64
    ("cuda", ["train.mixed_precision=no", "model.resolution=128"], False),  # fp32: not measured faster
    ("cuda", ["train.mixed_precision=bf16", "model.resolution=128", "train.channels_last=never"], False),
])
def test_channels_last_auto_takes_nhwc_where_it_was_measured_faster(tiny_recipe, device, extra, nhwc):
    recipe = tiny_recipe("acl_gan_gp", *extra)
    assert rules.channels_last_wanted(recipe, device, vector_data=False) is nhwc
    assert rules.channels_last_wanted(recipe, device, vector_data=True) is False


def test_several_processes_agree_on_a_stop_only_on_log_ticks(tiny_recipe, monkeypatch):
    """One process reads its own stop flag every step; with several, the all-reduce that a host read follows
    runs on log ticks (and the last step) only, never every step."""
    from acl_dist import distributed
    from acl_dist.training.checkpoint import StopSignal

    trainer = Trainer(tiny_recipe("gan", "train.steps=9", "train.log_every=4"))
    calls = []
    monkeypatch.setattr(distributed, "any_rank", lambda flag, device: calls.append(trainer.step) or flag)
    stop = StopSignal()
    try:
        for step in range(1, 10):
            trainer.step = step
            trainer._stop_requested(stop)
        assert calls == list(range(1, 10))  # one process: every step (no collective, no device read)
        calls.clear()
        trainer.world = 2
        for step in range(1, 10):
            trainer.step = step
            trainer._stop_requested(stop)
        assert calls == [4, 8, 9]
    finally:
        stop.close()


@pytest.mark.parametrize("method", ["gan", "acl_gan"])
def test_evaluation_leaves_training_noise_alone_so_eval_every_never_changes_the_weights(tmp_path, method):
    """eval.every 0, 2 and 4 give bit-identical weights at step 4: evaluation (its extractor's construction, its
    samples' noise, Parzen's samples) draws from a forked RNG, so a densely evaluated run is the exact prefix
    of a longer one and a budget can be read off one long curve. Without the fork, each evaluation's prior draws
    move every later training draw."""
    from acl_dist.config import load_recipe

    def weights(every: int) -> dict:
        ov = tiny_overrides(method, str(tmp_path), f"run.name=every{every}", "train.steps=4", f"eval.every={every}",
                            "eval.num_samples=16", "eval.batch_size=8", "eval.metrics=[fid]",
                            "eval.feature_extractor=digits-cnn", "eval.parzen=true")
        trainer = Trainer(load_recipe(None, ov))
        trainer.train()
        if every:
            assert os.path.isfile(os.path.join(trainer.run_dir, "eval.csv"))  # it did evaluate
        return {**_weights(trainer), **{f"ema.{n}.{k}": v for n, net in trainer.ema.nets.items()
                                        for k, v in net.state_dict().items()}}

    never, some, once = weights(0), weights(2), weights(4)
    for key, value in never.items():
        assert torch.equal(value, some[key]) and torch.equal(value, once[key]), key


def test_evaluation_noise_is_seeded_per_step_and_rank_and_restores_the_global_rng():
    from acl_dist.training.eval_noise import evaluation_noise, evaluation_seed

    cpu = torch.device("cpu")
    state = torch.get_rng_state()
    with evaluation_noise(3, 250, 0, cpu):
        a = torch.randn(4)
    assert torch.equal(torch.get_rng_state(), state)
    with evaluation_noise(3, 250, 0, cpu):
        assert torch.equal(torch.randn(4), a)  # the same evaluation draws the same noise
    seeds = {evaluation_seed(s, step, r) for s in (0, 1) for step in (-1, 0, 250, 500) for r in (0, 1, 7)}
    assert len(seeds) == 2 * 4 * 3


def test_a_run_is_the_exact_prefix_of_a_longer_one_at_a_constant_learning_rate(tmp_path):
    """What the campaign's records rely on (repro.records): B steps of a run equal the first B steps of a longer
    run of the same recipe, evaluating as it goes, so a budget is read off one long run."""
    from acl_dist.config import load_recipe
    from acl_dist.training.checkpoint import load_state

    def run(name: str, steps: int) -> Trainer:
        ov = tiny_overrides("acl_gan", str(tmp_path), f"run.name={name}", f"train.steps={steps}", "eval.every=2",
                            "eval.num_samples=16", "eval.batch_size=8", "train.ckpt_every=2",
                            "train.keep_checkpoints=0")
        trainer = Trainer(load_recipe(None, ov))
        trainer.train()
        return trainer

    short, long = run("short", 2), run("long", 4)
    at_two, _ = load_state(os.path.join(long.run_dir, "checkpoints", "step-00000002"), 0)
    for key, value in _weights(short).items():
        assert torch.equal(value, at_two["nets"][key]), key
    assert not torch.equal(_weights(long)[key], at_two["nets"][key])  # and the long run went on
