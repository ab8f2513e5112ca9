"""Tolerances derived from floating-point arithmetic, for tests that compare two computations of one quantity.

A test that compares two orders of the same arithmetic (another kernel, another batching, another process
count) must allow what the arithmetic allows, and no more: a bound that follows from the unit roundoff u and
the number of terms summed holds on any CPU, where a tolerance tuned on one machine does not. The classic bound
for a sum of N terms added in another order is N·u·Σ|terms| (Higham, *Accuracy and Stability of Numerical
Algorithms*, ch. 4).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

U32 = 2.0**-24  # float32 unit roundoff
U64 = 2.0**-53  # float64 unit roundoff

# Training steps in float64 (tests/unit/test_golden.py derives these). A loss is a sum of fewer than 10^4 terms
# of O(1) in these tiny configurations; another order moves it by < 10^4·u64, and 10^3 more allows for
# cancellation (a critic gap or an MMD is a difference of sums 10^3 times larger than itself).
LONGEST_REDUCTION = 10**4
FLOAT64_METRIC_RTOL = LONGEST_REDUCTION * U64 * 1e3  # 1.1e-9


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Nets are built, noise drawn and batches cast in ``dtype`` inside the block (the trainer follows torch's
    default floating dtype): how a test runs the real training code in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def reordered_sum_bound(terms: int, scale: float, u: float) -> float:
    """How far a sum of ``terms`` terms whose absolute values add up to ``scale`` moves when added in another
    order, in a format of unit roundoff ``u`` (first order: each of the N - 1 additions rounds once)."""
    return terms * u * scale


def fid_reorder_tolerance(n: int, dim: int, feature_max: float) -> float:
    """How far FID moves (absolute) when its float64 sums over ``n`` feature vectors of ``dim`` dimensions,
    each entry below ``feature_max`` in absolute value, are added in another order.

    Each covariance sum of n products x_i x_j moves by at most n·u·feature_max² (``reordered_sum_bound``), and
    so does each eigenvalue. The trace of the matrix square root is FID's worst-conditioned part: an eigenvalue
    at 0 (fewer samples than dimensions leave some) moved by δ moves its root by √δ, so the trace, and FID,
    move by at most 2·dim·√(n·u)·feature_max.
    """
    return 2 * dim * math.sqrt(reordered_sum_bound(n, feature_max**2, U64))


@torch.no_grad()
def feature_bound(body: nn.Sequential, input_shape: tuple[int, ...], input_max: float = 1.0) -> float:
    """A guaranteed bound on |features| of ``body`` (convolutions, linear layers, ReLU, flatten) for any input
    within ±``input_max``: interval arithmetic, |W x + b| <= |W| |x| + |b| layer by layer (ReLU only shrinks)."""
    bound = torch.full((1, *input_shape), input_max, dtype=torch.float64)
    for layer in body:
        if isinstance(layer, nn.Conv2d):
            bias = layer.bias.abs().double() if layer.bias is not None else None
            bound = F.conv2d(bound, layer.weight.abs().double(), bias, layer.stride, layer.padding)
        elif isinstance(layer, nn.Linear):
            bound = F.linear(bound, layer.weight.abs().double(), layer.bias.abs().double())
        elif isinstance(layer, nn.Flatten):
            bound = bound.flatten(1)
        elif not isinstance(layer, nn.ReLU):
            raise TypeError(f"no interval rule for {type(layer).__name__}")
    return float(bound.max())


def fid_vs_float32_means_tolerance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """How far FID from float64 sums (ours) may be from torch-fidelity's for the same features [n, d]:
    torch-fidelity takes each side's mean with numpy in the features' float32, adding the n rows one after
    another (a reduction over the outer axis), so each mean is off by up to n·u32·mean|x| per dimension
    (``reordered_sum_bound`` / n). ||mu_a - mu_b||² then moves by at most Σ (2·|Δmu|·e + e²) with e the two
    errors added; the covariances (float64 on both sides, other formulas) move as ``fid_reorder_tolerance``."""
    a, b = features_a.double(), features_b.double()
    error = sum(len(f) * U32 * f.abs().mean(0) for f in (a, b))  # [d]
    gap = (a.mean(0) - b.mean(0)).abs()  # [d]
    means = float((2 * gap * error + error**2).sum())
    n, feature_max = max(len(a), len(b)), float(max(a.abs().max(), b.abs().max()))
    return means + fid_reorder_tolerance(n, a.shape[1], feature_max)
