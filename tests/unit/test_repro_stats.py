"""The prior analysis' distances: MMD² near zero for one distribution, mode coverage counts what it says, the
seed-spread verdict rule, and the sweep's runs."""

from __future__ import annotations

import torch

from acl_dist.priors import mixture_centers
from repro.prior import jobs_for
from repro.report import mean_std
from repro.stats import mmd2, mmd2_per_bandwidth, mode_coverage, seed_verdict


def test_mmd_is_near_zero_for_the_same_distribution_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    same = mmd2(x, y, (1.0,))
    assert abs(same) < 0.02
    assert mmd2(x, y + 0.5, (1.0,)) > 10 * abs(same)
    assert mmd2(x, y + 2.0, (1.0,)) > mmd2(x, y + 0.5, (1.0,))


def test_mmd_per_bandwidth_is_each_kernel_alone_and_they_sum_to_the_summed_kernel():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(200, 2, generator=g), 0.3 * torch.randn(200, 2, generator=g)
    each = mmd2_per_bandwidth(x, y, (0.1, 1.0, 3.0))
    assert list(each) == [0.1, 1.0, 3.0]
    assert each[1.0] == mmd2(x, y, (1.0,))
    # the kernel is linear in its terms; float64 sums of 3 x 200² kernel values of at most 1 in another order:
    # within 1.2e5·u64 ≈ 1.3e-11 of their scale, and the MMD's three means divide that by 200²
    assert abs(sum(each.values()) - mmd2(x, y, (0.1, 1.0, 3.0))) < 1e-12


def test_seed_verdict_needs_a_difference_beyond_the_larger_spread():
    # lower is better (MMD): means 1.0 vs 2.0, spreads 0.2 and 0.4 -> 1.0 better by more than 0.4
    assert seed_verdict([0.9, 1.0, 1.1], [1.8, 2.0, 2.2], higher_is_better=False) == "holds"
    assert seed_verdict([1.8, 2.0, 2.2], [0.9, 1.0, 1.1], higher_is_better=False) == "opposite"
    assert seed_verdict([0.9, 1.0, 1.1], [1.8, 2.0, 2.2], higher_is_better=True) == "opposite"
    # a difference of 1.0 inside a spread of 1.5: neither way
    assert seed_verdict([0.25, 1.0, 1.75], [2.0, 2.0, 2.0], higher_is_better=False) == "not distinguishable"
    assert seed_verdict([4, 4, 4], [4, 4, 4], higher_is_better=True) == "not distinguishable"  # ties
    assert seed_verdict([0.0], [5.0], higher_is_better=False) == "not distinguishable"  # one seed: no spread


def test_prior_sweep_is_the_full_factorial_with_explicit_settings():
    jobs = jobs_for("full")
    assert len(jobs) == 4 * 3 * 3 and len({j.name for j in jobs}) == 36
    by_name = {j.name: j for j in jobs}
    four = by_name["prior-gmm4-std0.3-lr3e-04-seed2"]
    assert four.recipe.endswith("acl_ae_prior4.yaml")
    for override in ("method.prior=gmm", "method.prior_std=0.3", "method.prior_modes=4", "optim.lr=0.001",
                     "optim.lr_per_net={Gz: 0.0003, Dc: 0.0003}", "run.seed=2", "train.steps=3000",
                     "train.ckpt_every=500", "data.toy_std=0.1", "train.batch_size=256"):
        assert override in four.overrides, override
    one = by_name["prior-gauss1-lr1e-04-seed0"]
    assert "method.prior=gaussian" in one.overrides and "optim.lr_per_net={Gz: 0.0001, Dc: 0.0001}" in one.overrides
    assert [j.name for j in jobs_for("tiny")] == ["prior-gauss1-lr1e-03-seed0", "prior-gmm4-std0.1-lr1e-03-seed0"]


def test_mode_coverage_sees_a_dropped_mode():
    centres = mixture_centers(4, 2, 2.0)
    g = torch.Generator().manual_seed(0)
    three = centres[torch.arange(300) % 3] + 0.1 * torch.randn(300, 2, generator=g)  # mode 3 never hit
    far = torch.full((100, 2), 10.0)
    out = mode_coverage(torch.cat([three, far]), centres, std=0.1)
    assert out["modes_covered"] == 3 and out["mode_balance"] == 0.0
    assert abs(out["high_quality"] - 0.75 * 0.989) < 0.02  # 2-D Gaussian: P(|e| < 3 std) = 1 - exp(-4.5)
    even = mode_coverage(centres[torch.arange(400) % 4], centres, std=0.1)
    assert even == {"high_quality": 1.0, "modes_covered": 4, "mode_balance": 1.0}


def test_mean_std_formats_seeds():
    assert mean_std([1.0, 2.0, 3.0], 1) == "2.0 ± 1.0"
    assert mean_std([5.0]) == "5.00" and mean_std([None, float("nan")]) == "n/a"


def test_a_curve_label_keeps_its_colour_in_every_panel():
    from repro.report import line_colours

    panels = {"acl_gan": [("gan", [], "--"), ("paper", [], "-"), ("gx_stats", [], "-"), ("all", [], "-")],
              "acl_ae": [("vae", [], "--"), ("paper", [], "-"), ("all", [], "-")]}
    colours = line_colours(panels)
    assert set(colours) == {"gan", "paper", "gx_stats", "all", "vae"}
    assert len(set(colours.values())) == 5  # distinct labels, distinct colours
    many = {"p": [(f"v{i}", [], "-") for i in range(12)]}
    assert len(set(map(str, line_colours(many).values()))) == 12  # tab20 beyond 10 labels
