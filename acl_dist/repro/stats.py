"""Distances between point sets for the prior analysis: MMD with a stated kernel, and mode coverage."""

from __future__ import annotations

import torch
from torch import Tensor

from acl_dist import stats

MMD_BANDWIDTHS = (0.1, 0.3, 1.0, 3.0)  # Gaussian kernel widths summed: fine and coarse structure both count


def mmd2(x: Tensor, y: Tensor, bandwidths: tuple[float, ...] = MMD_BANDWIDTHS) -> float:
    """Unbiased squared MMD between samples x [n, d] and y [m, d] with k(a, b) = sum_s exp(-|a-b|^2 / (2 s^2)),
    in float64 (``acl_dist.stats.mmd2``). Zero in expectation when both come from one distribution."""
    return float(stats.mmd2(x.double(), y.double(), bandwidths))


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
