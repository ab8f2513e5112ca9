"""Distances between point sets for the prior analysis: MMD with a stated kernel, mode coverage, and the rule
that turns seeds into a verdict."""

from __future__ import annotations

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
