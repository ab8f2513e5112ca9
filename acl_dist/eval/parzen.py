"""Parzen-window log-likelihood of test data under generated samples (Goodfellow et al., 2014, sec. 5).

A Gaussian kernel of width sigma is put on every generated sample (flattened), and the test set's mean
log-density under that mixture is reported with its standard error; sigma is chosen by the same score on a
validation split. The GAN paper reports it for MNIST and TFD and warns that it is a poor estimator in high
dimension; it is here to compare with the paper's tables, not as the main metric.

Stable and batched: log p(x) = logsumexp_i(-||x - s_i||^2 / (2 sigma^2)) - log N - D/2 log(2 pi sigma^2),
in float64, over blocks of test points and of samples, so memory stays at [batch, batch].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class ParzenResult:
    """Mean log-likelihood of the test split (nats per example), its standard error, and the sigma used."""

    mean: float
    stderr: float
    sigma: float


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).to(torch.float64)  # [N, D]


def log_densities(samples: torch.Tensor, test: torch.Tensor, sigma: float, batch: int = 1000) -> torch.Tensor:
    """Per-point log p(x) [M] of ``test`` [M, ...] under the Parzen window of ``samples`` [N, ...]."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    s, x = _flat(samples), _flat(test)  # [N, D], [M, D]
    n, d = s.shape
    s_sq = (s * s).sum(dim=1)  # [N]
    out = []
    for xb in x.split(batch):  # [b, D]
        x_sq = (xb * xb).sum(dim=1, keepdim=True)  # [b, 1]
        parts = []
        for sb, sb_sq in zip(s.split(batch), s_sq.split(batch)):
            dist2 = (x_sq + sb_sq[None] - 2.0 * xb @ sb.T).clamp_min(0)  # [b, n_b] squared distances
            parts.append(torch.logsumexp(-dist2 / (2 * sigma**2), dim=1))  # [b]
        out.append(torch.logsumexp(torch.stack(parts, dim=1), dim=1))  # [b]: logsumexp over sample blocks
    const = math.log(n) + 0.5 * d * math.log(2 * math.pi * sigma**2)
    return torch.cat(out) - const


def parzen_log_likelihood(
    samples: torch.Tensor, test: torch.Tensor, sigma: float, batch: int = 1000
) -> tuple[float, float]:
    """(mean log-likelihood, standard error of the mean) of ``test`` under the Parzen window of ``samples``."""
    ll = log_densities(samples, test, sigma, batch)  # [M]
    stderr = ll.std(unbiased=True).item() / math.sqrt(len(ll)) if len(ll) > 1 else float("nan")
    return ll.mean().item(), stderr


def select_sigma(
    samples: torch.Tensor, validation: torch.Tensor, sigmas: Sequence[float], batch: int = 1000
) -> float:
    """The sigma of ``sigmas`` with the highest mean validation log-likelihood (GAN paper's cross-validation)."""
    scores = [parzen_log_likelihood(samples, validation, s, batch)[0] for s in sigmas]
    return float(sigmas[max(range(len(sigmas)), key=scores.__getitem__)])


def parzen_evaluate(
    samples: torch.Tensor,
    validation: torch.Tensor,
    test: torch.Tensor,
    sigmas: Sequence[float] = tuple(torch.logspace(-1, 0, 10).tolist()),
    batch: int = 1000,
) -> ParzenResult:
    """Choose sigma on ``validation``, then report the test split's mean log-likelihood and standard error.

    The default grid, 10 values log-spaced in [0.1, 1], is for images in [0, 1] as in the GAN paper's code;
    scale it for other ranges.
    """
    sigma = select_sigma(samples, validation, sigmas, batch)
    mean, stderr = parzen_log_likelihood(samples, test, sigma, batch)
    return ParzenResult(mean, stderr, sigma)
