"""The lazy gradient penalty through the digits recipes: computed on exactly the critic iterations
``i % k == 0`` (i counts the critic phase's runs, d_steps per generator step), weighted by k there, absent
elsewhere, and in step with ``Trainer.control_period`` (what a CUDA graph is captured per)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

from acl_dist.config import load_recipe
from acl_dist.methods import common
from acl_dist.training.trainer import Trainer
from tests.conftest import REPO

SMALL = ["model.resolution=8", "model.code_dim=4", "model.base_channels=4", "model.max_channels=8",
         "model.acl_hidden=8", "train.batch_size=8", "train.log_every=1", "train.sample_every=1000",
         "train.ckpt_every=0", "train.progress=false", "log.trackers=[]", "eval.every=0"]


def _train_recording(tmp_path, monkeypatch, name: str, every: int, steps: int):
    """Train the recipe with ``method.gp_every=every``; record every penalty computed and every critic loss."""
    recipe = load_recipe(os.path.join(REPO, f"recipes/digits/{name}.yaml"),
                         [*SMALL, f"run.out_dir={tmp_path}", f"train.steps={steps}", f"method.gp_every={every}"])
    trainer = Trainer(recipe)
    index = next(i for i, p in enumerate(trainer.phases) if p.name in ("D", "Dx"))
    critic = trainer.phases[index]
    penalties: dict[int, tuple] = {}  # critic iteration -> (real scores, fake scores, penalty)
    losses: dict[int, tuple] = {}  # critic iteration -> (generator step, loss, metrics)
    compute = common.critic_scores_and_penalty

    def recording_penalty(d, real, fake, **kw):
        assert kw["kind"] == recipe.method.gp_kind
        out = compute(d, real, fake, **kw)
        penalties[trainer.phase_iterations[critic.name]] = out
        return out

    def recording_loss(batch, ctx):
        loss, values = critic.loss(batch, ctx)
        losses[ctx.iteration] = (ctx.step, loss.detach(), values)
        return loss, values

    monkeypatch.setattr(common, "critic_scores_and_penalty", recording_penalty)
    trainer.phases[index] = dataclasses.replace(critic, loss=recording_loss)
    trainer.train()
    return recipe, trainer, critic, penalties, losses


@pytest.mark.parametrize("name, every", [("wgan_gp", 1), ("wgan_gp", 3), ("wgan_gp", 4), ("acl_gan_gp", 3)])
def test_lazy_penalty_schedule_and_gain_through_the_recipe(tmp_path, monkeypatch, name, every):
    steps = 5
    recipe, trainer, critic, penalties, losses = _train_recording(tmp_path, monkeypatch, name, every, steps)
    cfg = recipe.method
    assert cfg.d_steps == 2 and cfg.gp_weight == 10.0 and cfg.gp_every == every  # what the recipe says
    iterations = steps * cfg.d_steps
    assert trainer.phase_iterations[critic.name] == iterations == len(losses)
    assert sorted(penalties) == [i for i in range(iterations) if i % every == 0]  # critic iterations, not steps
    assert all(losses[i][0] == i // cfg.d_steps for i in range(iterations))  # d_steps iterations per step
    period = trainer.control_period()
    assert period == every and all((i % period == 0) == (i in penalties) for i in range(iterations))
    scale = cfg.lambda_gan if name.startswith("acl") else 1.0  # ACL-GAN-GP's critic loss is lambda_gan * L_GAN
    for i, (_, loss, values) in losses.items():
        if i in penalties:
            real_scores, fake_scores, penalty = penalties[i]
            expected = fake_scores.mean() - real_scores.mean() + cfg.gp_weight * every * penalty  # gain k
            torch.testing.assert_close(loss, scale * expected.detach())
            torch.testing.assert_close(values["gp"], penalty.detach())
        else:
            assert "gp" not in values
            torch.testing.assert_close(loss, scale * values["d_loss"])
    _check_logged_penalty(trainer.run_dir, critic.name, penalties, cfg.d_steps, steps)


def _check_logged_penalty(run_dir: str, phase: str, penalties: dict, d_steps: int, steps: int) -> None:
    """metrics.jsonl (one line per step here) logs ``<phase>/gp`` on exactly the steps that computed it."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [r for r in map(json.loads, f) if "images_per_s" in r]
    logged = [f"{phase}/gp" in r for r in rows]
    assert logged == [any(s * d_steps + j in penalties for j in range(d_steps)) for s in range(steps)]


def test_lazy_report_compares_throughput_only_between_runs_trained_under_one_load():
    """A k = 1 run reused from an earlier report trained under that time's load: no speed ratio against it."""
    from repro import lazy

    def run(start: float, speed: float) -> dict:
        return {"speed": speed, "window": (start, start + 300.0)}

    dense = [run(0.0, 400.0), run(100.0, 500.0)]
    together = [run(600.0, 600.0), run(900.0, 750.0)]
    assert lazy.speed_ratio(together, dense) == [1.5, 1.5]
    later = [run(600.0, 600.0), run(100.0 + lazy.SAME_LOAD_S + 1, 750.0)]  # one seed's pair hours apart
    assert lazy.speed_ratio(later, dense) is None


def test_lazy_report_gives_a_one_seed_screen_no_verdict():
    """R1/R2 rows run on one seed at the full budget: the report lists their FDs and judges nothing."""
    from repro import lazy

    screen = {"gan+r1": {1: [{"fid": 80.0}], 4: [{"fid": 90.0}], 16: [{"fid": 70.0}]}}
    (line,) = lazy._verdicts(screen, {})
    assert line == ("- gan+r1: one seed, a screen with no spread to judge by (final FD k = 1: 80.0, k = 4: 90.0, "
                    "k = 16: 70.0); no verdict.")
