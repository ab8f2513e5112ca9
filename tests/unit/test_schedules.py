"""Schedules over a horizon in images (train.schedule_images): learning rate, Adam beta2, R3GAN's gamma and the
EMA's half-life, cosine or linear to the horizon, then held; the same at any batch size."""

from __future__ import annotations

import math

import pytest
import torch

from acl_dist.methods.r3gan import R3GANOptions
from acl_dist.schedules import ema_decay, horizon_fraction, ramp
from acl_dist.training.trainer import Trainer


def test_the_fraction_counts_images_and_a_zero_horizon_is_the_run():
    assert horizon_fraction(3, 64, 0, 10) == 3 / 10  # the run's length: step / steps, bit for bit
    assert horizon_fraction(2, 16, 64, 100) == horizon_fraction(4, 8, 64, 100) == 0.5  # images, not steps
    assert horizon_fraction(100, 8, 64, 100) == 1.0  # held after the horizon
    assert ramp(0.25, "linear") == 0.25 and ramp(0.5, "cosine") == pytest.approx(0.5)
    assert ramp(0.25, "cosine") == pytest.approx(0.5 * (1 - math.cos(math.pi / 4)))


def test_gamma_decays_on_a_line_or_a_cosine_and_holds():
    line = R3GANOptions(gamma=10.0, gamma_final=1.0, gamma_schedule="linear")
    cosine = R3GANOptions(gamma=10.0, gamma_final=1.0)
    quarter, end = torch.tensor(0.25, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    assert float(line.gamma_at(quarter)) == pytest.approx(7.75)
    assert float(cosine.gamma_at(quarter)) == pytest.approx(1 + 9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert float(line.gamma_at(end)) == pytest.approx(1.0) and float(cosine.gamma_at(end)) == pytest.approx(1.0)


def _trainer(tiny_recipe, batch: int, *extra: str) -> Trainer:
    return Trainer(tiny_recipe("gan", f"train.batch_size={batch}", "train.steps=20", "optim.lr=1e-3",
                               "optim.lr_decay_to=0.5", "optim.beta2_final=0.99", "optim.schedule=linear",
                               "train.schedule_images=64", *extra))


def _hparams_at(trainer: Trainer, step: int) -> tuple[float, float]:
    trainer.step = step
    trainer._apply_optimizer_schedules()
    group = trainer.updates.optimizers["G"].param_groups[0]
    return group["lr"], group["betas"][1]


def test_the_optimiser_follows_the_horizon_in_images_at_any_batch_size(tiny_recipe):
    small, large = _trainer(tiny_recipe, 8), _trainer(tiny_recipe, 16)
    base_beta2 = small.recipe.optim.beta2
    for images in (0, 32, 64, 128):  # start, half the horizon, the horizon, past it (held)
        lr, beta2 = _hparams_at(small, images // 8)
        assert (lr, beta2) == pytest.approx(_hparams_at(large, images // 16))
        fraction = min(1.0, images / 64)
        assert lr == pytest.approx(1e-3 * (1 - 0.5 * fraction))
        assert beta2 == pytest.approx(base_beta2 + (0.99 - base_beta2) * fraction)


def test_the_ema_half_life_ramps_over_the_horizon(tiny_recipe):
    trainer = _trainer(tiny_recipe, 8, "train.ema_halflife_images=32")
    decays = []
    for step in (0, 4, 8, 16):
        trainer.step = step
        decays.append(trainer._ema_decay())
    assert decays[0] == 0.0  # no half-life yet: the copy follows the nets
    assert decays[1] == pytest.approx(0.5 ** (8 / 16)) and decays[2] == pytest.approx(0.5 ** (8 / 32))
    assert decays[3] == decays[2] == ema_decay(32, 1.0, 8)  # held at the full half-life
    assert _trainer(tiny_recipe, 8)._ema_decay() is None  # without it: train.ema's fixed decay


def test_training_hands_the_ema_its_scheduled_decay(tiny_recipe):
    trainer = Trainer(tiny_recipe("gan", "train.batch_size=8", "train.steps=3", "train.ema_halflife_images=32",
                                  "train.schedule_images=64"))
    seen = []
    real_update = trainer.ema.update
    trainer.ema.update = lambda nets, step, decay=None: seen.append(decay) or real_update(nets, step, decay)
    trainer.train()
    assert seen == pytest.approx([ema_decay(32, step * 8 / 64, 8) for step in (1, 2, 3)])
