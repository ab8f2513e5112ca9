"""The prior analysis' distances: MMD² near zero for one distribution, mode coverage counts what it says."""

from __future__ import annotations

import torch

from acl_dist.priors import mixture_centers
from acl_dist.repro.report import mean_std
from acl_dist.repro.stats import mmd2, mode_coverage


def test_mmd_is_near_zero_for_the_same_distribution_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    same = mmd2(x, y)
    assert abs(same) < 0.02
    assert mmd2(x, y + 0.5) > 10 * abs(same)
    assert mmd2(x, y + 2.0) > mmd2(x, y + 0.5)


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
