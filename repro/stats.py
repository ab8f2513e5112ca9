"""Distances between point sets for the prior analysis: MMD with a stated kernel, mode coverage; the rules
that turn seeds into a verdict (Welch's 95% CI of the difference; the older seed-spread rule of the prior report) and
the number of seeds an effect needs."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch
from torch import Tensor

from acl_dist import stats

# Gaussian kernel widths, each reported on its own: summed, the fine widths dominate and one number hides
# whether two sets differ in fine structure (thin streaks) or in coarse placement (where the mass is).
MMD_BANDWIDTHS = (0.1, 0.3, 1.0, 3.0)
VERDICTS = ("holds", "opposite", "not distinguishable")


def mmd2(x: Tensor, y: Tensor, bandwidths: tuple[float, ...]) -> float:
    """Unbiased squared MMD between samples x [n, d] and y [m, d] with k(a, b) = sum_s exp(-|a-b|^2 / (2 s^2)),
    in float64 (``acl_dist.stats.mmd2``). Zero in expectation when both come from one distribution."""
    return float(stats.mmd2(x.double(), y.double(), bandwidths))


def mmd2_per_bandwidth(x: Tensor, y: Tensor, bandwidths: tuple[float, ...] = MMD_BANDWIDTHS) -> dict[float, float]:
    """{width: MMD² with the one Gaussian kernel of that width}, so no width can outweigh another."""
    return {s: mmd2(x, y, (s,)) for s in bandwidths}


def seed_verdict(candidate: list[float], reference: list[float], higher_is_better: bool) -> str:
    """Whether ``candidate`` beats ``reference`` beyond the seed spread (the rule of docs/results/table1.md).

    The spread is the larger max - min over seeds of the two sets. "holds": the candidate's mean is better by
    more than the spread; "opposite": worse by more than the spread; "not distinguishable" otherwise, and
    always with fewer than two seeds on either side (one seed shows no spread to judge a difference by).
    """
    if len(candidate) < 2 or len(reference) < 2:
        return "not distinguishable"
    spread = max(max(candidate) - min(candidate), max(reference) - min(reference))
    gain = sum(candidate) / len(candidate) - sum(reference) / len(reference)
    gain = gain if higher_is_better else -gain
    if gain > spread:
        return "holds"
    if -gain > spread:
        return "opposite"
    return "not distinguishable"


def mode_coverage(points: Tensor, centres: Tensor, std: float, within: float = 3.0) -> dict[str, float]:
    """How generated points sit on the target's modes (the usual 2-D mixture metrics).

    Returns:
        high_quality: fraction of points within ``within`` std of their nearest centre;
        modes_covered: modes that got at least 1/(4 K) of the high-quality points;
        mode_balance: smallest over largest mode share among the high-quality points (1 = even).
    """
    d = torch.cdist(points.double(), centres.double())  # [n, K]
    nearest, which = d.min(dim=1)
    good = nearest < within * std
    k = len(centres)
    counts = torch.bincount(which[good], minlength=k).double()
    share = counts / counts.sum().clamp(min=1)
    return {"high_quality": float(good.double().mean()),
            "modes_covered": int((share >= 1 / (4 * k)).sum()),
            "mode_balance": float(share.min() / share.max().clamp(min=1e-12)) if counts.sum() > 0 else 0.0}


@dataclass(frozen=True)
class Difference:
    """Two sets of seeds compared: their means and stds, the difference other - base with its Welch 95% CI."""

    base_mean: float
    base_std: float
    other_mean: float
    other_std: float
    n_base: int
    n_other: int
    diff: float  # other - base: negative is lower (better, for a distance)
    ci_low: float
    ci_high: float
    p_value: float  # Welch's two-sided t-test
    df: float  # Welch-Satterthwaite degrees of freedom


def welch(base: list[float], other: list[float], level: float = 0.95) -> Difference:
    """Welch's unequal-variance comparison of ``other`` against ``base``: the difference of means, its ``level``
    confidence interval (Welch-Satterthwaite degrees of freedom) and the two-sided p-value.

    Raises:
        ValueError: fewer than two values on a side (no spread to estimate).
    """
    if len(base) < 2 or len(other) < 2:
        raise ValueError(f"Welch's test needs two values a side, got {len(base)} and {len(other)}")
    return welch_from_moments(statistics.fmean(base), statistics.stdev(base), len(base),
                              statistics.fmean(other), statistics.stdev(other), len(other), level)


def welch_from_moments(base_mean: float, base_std: float, n_base: int, other_mean: float, other_std: float,
                       n_other: int, level: float = 0.95) -> Difference:
    """``welch`` from each side's mean, sample std (n - 1) and count: what a published "mean ± std over n seeds"
    table still allows when the per-seed values are gone."""
    from scipy import stats as scipy_stats

    if n_base < 2 or n_other < 2:
        raise ValueError(f"Welch's test needs two values a side, got {n_base} and {n_other}")
    vb, vo = base_std**2, other_std**2
    se2 = vb / n_base + vo / n_other
    diff = other_mean - base_mean
    if se2 == 0:
        return Difference(base_mean, 0.0, other_mean, 0.0, n_base, n_other, diff, diff, diff,
                          1.0 if diff == 0 else 0.0, math.inf)
    df = se2**2 / ((vb / n_base) ** 2 / (n_base - 1) + (vo / n_other) ** 2 / (n_other - 1))
    half = float(scipy_stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(se2)
    p = 2 * scipy_stats.t.sf(abs(diff) / math.sqrt(se2), df)
    return Difference(base_mean, base_std, other_mean, other_std, n_base, n_other, diff, diff - half,
                      diff + half, float(p), float(df))


def difference_sentence(other: str, base: str, d: Difference) -> str:
    """One line a reader can check: both means, the difference with its 95% CI and p, and the verdict of
    ``distance_verdict`` (a distance: lower is better)."""
    return (f"{other} {d.other_mean:.1f} vs {base} {d.base_mean:.1f} ({d.n_other} and {d.n_base} seeds): "
            f"{other} - {base} = {d.diff:+.1f}, 95% CI [{d.ci_low:+.1f}, {d.ci_high:+.1f}] (Welch, p = "
            f"{d.p_value:.2g}): **{distance_verdict(d)}**")


def distance_verdict(d: Difference) -> str:
    """The rule stated before the runs, for a distance (lower is better): "improves" only when the whole 95% CI
    of other - base lies below 0, "worse" only when it lies above 0, else "no evidence of a difference"."""
    if d.ci_high < 0:
        return "improves"
    if d.ci_low > 0:
        return "worse"
    return "no evidence of a difference"


def seeds_needed(std: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Seeds per arm for a two-sided test at ``alpha`` to detect a difference of means ``effect`` with
    probability ``power`` when both arms have standard deviation ``std`` (the t-test's sample size, found by
    raising n until its noncentral-t power reaches ``power``)."""
    from scipy import stats as scipy_stats

    if effect == 0:
        return math.inf
    for n in range(2, 100000):
        df = 2 * n - 2
        shift = abs(effect) / (std * math.sqrt(2 / n)) if std > 0 else math.inf
        crit = scipy_stats.t.ppf(1 - alpha / 2, df)
        if scipy_stats.nct.sf(crit, df, shift) + scipy_stats.nct.cdf(-crit, df, shift) >= power:
            return n
    return math.inf
