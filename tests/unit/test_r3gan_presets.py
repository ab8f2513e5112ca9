"""The FFHQ R3GAN recipes against the authors' published FFHQ-256 preset (their train.py, ``--preset FFHQ-256``),
its values written here as facts: widths and groups per stage, blocks, expansion, noise, the penalty every critic
step, and every schedule (linear over the first 20M images, then held)."""

from __future__ import annotations

import os

import pytest

from acl_dist.config import load_recipe
from acl_dist.nets.conv import channel_schedule
from acl_dist.nets.r3gan import _groups
from tests.conftest import REPO

PUBLISHED_FFHQ256 = {
    "widths_4_to_256": [768, 768, 768, 768, 384, 192, 96],  # WidthPerStage = 3/4 x [1024]*4 + [512, 256, 128]
    "cardinality_4_to_256": [96, 96, 96, 96, 48, 24, 12],  # CardinalityPerStage = 3 x [32]*4 + [16, 8, 4]
    "blocks_per_stage": 2, "expansion": 2, "noise_dimension": 64, "adam_beta1": 0.0,
    "horizon_images": 20_000_000,  # decay_nimg = 2e7, every scheduler's total_nimg
    "lr": (2e-4, 5e-5), "beta2": (0.9, 0.99), "gamma": (150.0, 15.0), "ema_halflife_images": (0, 500_000),
}


@pytest.mark.parametrize("name,extra_stage", [("r3gan_ffhq256", False), ("acl_r3gan_ffhq256", False),
                                              ("r3gan_ffhq512", True), ("acl_r3gan_ffhq512", True)])
def test_the_ffhq_recipes_resolve_to_the_published_preset(name, extra_stage):
    r = load_recipe(os.path.join(REPO, "recipes", f"{name}.yaml"), ["data.shards=pipe:cat /dev/null"])  # no FFHQ here
    p, m = PUBLISHED_FFHQ256, r.model
    widths = channel_schedule(m.resolution, m.base_channels, m.max_channels)
    expected = p["widths_4_to_256"] + ([48] if extra_stage else [])  # 512: one more stage, the width halved again
    assert [widths[res] for res in sorted(widths)] == expected
    groups = [_groups(w * m.r3gan_expansion, m.r3gan_group_width) for w in expected]
    assert groups == p["cardinality_4_to_256"] + ([6] if extra_stage else [])
    assert (m.arch, m.r3gan_blocks, m.r3gan_expansion, m.code_dim) == ("r3gan", p["blocks_per_stage"],
                                                                       p["expansion"], p["noise_dimension"])
    o, t, method = r.optim, r.train, r.method
    assert o.beta1 == p["adam_beta1"] and o.schedule == "linear" and method.gamma_schedule == "linear"
    assert (o.lr, o.lr * o.lr_decay_to) == pytest.approx(p["lr"]) and (o.beta2, o.beta2_final) == p["beta2"]
    assert (method.gamma, method.gamma_final) == p["gamma"] and method.gp_every == 1
    assert t.schedule_images == p["horizon_images"] and t.ema_halflife_images == p["ema_halflife_images"][1]
    assert t.steps * t.batch_size * 8 >= p["horizon_images"]  # on 8 processes the run reaches the horizon


PUBLISHED_AUGMENT = {  # R3GAN's train.py: stylegan2-ada's AugmentPipe with these per-operation weights
    "xflip": 1, "rotate90": 1, "xint": 1, "scale": 1, "rotate": 1, "aniso": 1, "xfrac": 1, "brightness": 0.5,
    "contrast": 0.5, "lumaflip": 0.5, "hue": 0.5, "saturation": 0.5, "cutout": 1}


@pytest.mark.parametrize("name,p_final", [("r3gan_ffhq256", 0.3), ("acl_r3gan_ffhq512", 0.3)])
def test_the_ffhq_recipes_augment_as_published(name, p_final):
    from acl_dist.ops.ada_ops import WEIGHTS

    r = load_recipe(os.path.join(REPO, "recipes", f"{name}.yaml"), ["data.shards=pipe:cat /dev/null"])
    assert {op: WEIGHTS[op] for op in r.data.augment_ops} == PUBLISHED_AUGMENT
    assert r.data.augment_p == p_final and r.data.ada_target == 0  # scheduled, not adaptive
    assert r.data.augment_resample == "wavelet"  # 2x supersampled through the symlet-6 filter, as published
    assert r.method.gp_through_augment  # R1 + R2 w.r.t. the un-augmented images


PUBLISHED_CIFAR10 = {  # --preset CIFAR10
    "width_per_stage": 768, "cardinality_per_stage": 96, "blocks_per_stage": 2, "expansion": 2, "noise_dimension": 64,
    "lr": (2e-4, 5e-5), "beta2": (0.9, 0.99), "gamma": (0.05, 0.005), "augment_p": 0.55,
    "ema_halflife_of_horizon": 5_000_000 / 20_000_000,
}


@pytest.mark.parametrize("name", ["r3gan", "acl_r3gan"])
def test_the_32px_recipes_follow_the_cifar10_preset_but_the_widths(name):
    """Every value of the preset but the widths (16-64: a CPU's); schedules linear over the run's length, which
    the campaign sets to the family's budget; groups of 16 channels as the preset's 1,536 / 96."""
    from acl_dist.ops.ada_ops import WEIGHTS

    r = load_recipe(os.path.join(REPO, "recipes", "mnist", f"{name}.yaml"))
    p, m, o, t, method = PUBLISHED_CIFAR10, r.model, r.optim, r.train, r.method
    assert p["width_per_stage"] * p["expansion"] // p["cardinality_per_stage"] == m.r3gan_group_width
    assert (m.r3gan_blocks, m.r3gan_expansion, m.code_dim) == (p["blocks_per_stage"], p["expansion"],
                                                               p["noise_dimension"])
    assert (o.lr, o.lr * o.lr_decay_to) == pytest.approx(p["lr"]) and (o.beta2, o.beta2_final) == p["beta2"]
    assert (method.gamma, method.gamma_final) == p["gamma"] and method.gp_every == 1 and o.beta1 == 0
    assert o.schedule == "linear" and method.gamma_schedule == "linear"
    assert t.schedule_images == 0  # the horizon is the run
    horizon = t.steps * t.batch_size
    assert t.ema_halflife_images / horizon == pytest.approx(p["ema_halflife_of_horizon"])
    assert {op: WEIGHTS[op] for op in r.data.augment_ops} == PUBLISHED_AUGMENT
    assert r.data.augment_p == p["augment_p"] and r.data.augment_resample == "wavelet"
