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
