"""Distances between two sets of points, as tensors (single-device maths, usable inside a training phase).

The squared maximum mean discrepancy (MMD²) compares whole distributions, not only their moments: the
training metrics use it to say how far Gz's codes are from the encoder's, and the reports use it on 2-D data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

CODE_MMD_SCALES = (0.5, 1.0, 2.0)  # kernel widths for codes, in units of sqrt(d) after standardisation


def mmd2(x: Tensor, y: Tensor, bandwidths: tuple[float, ...]) -> Tensor:
    """Unbiased squared MMD between x [n, d] and y [m, d] with k(a, b) = sum_s exp(-|a-b|^2 / (2 s^2)).

    Zero in expectation when both come from one distribution (so it can be slightly negative). Computed in
    the inputs' dtype; pass float64 for the reports' small differences.
    """
    n, m = len(x), len(y)

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        d2 = torch.cdist(a, b).pow(2)  # [len(a), len(b)]
        return sum(torch.exp(-d2 / (2 * s * s)) for s in bandwidths)

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return xx + yy - 2 * kxy.mean()


def code_mmd2(fake: Tensor, real: Tensor) -> Tensor:
    """MMD² between generated codes [n, d] and the encoder's codes [m, d], independent of the codes' scale.

    Both sets are standardised with the encoder codes' per-dimension mean and std, then compared with Gaussian
    kernels of widths ``CODE_MMD_SCALES`` x sqrt(d) (about the typical distance between two standardised
    codes), so runs whose encoders work at different scales are comparable.
    """
    wide = torch.promote_types(real.dtype, torch.float32)  # bf16 codes widened; float64 kept
    real, fake = real.to(wide), fake.to(wide)
    mean, std = real.mean(0), real.std(0).clamp(min=1e-6)
    scale = math.sqrt(real.shape[1])
    return mmd2((fake - mean) / std, (real - mean) / std, tuple(s * scale for s in CODE_MMD_SCALES))
