"""Noise priors p(z): Gaussian, uniform, k-mode Gaussian mixture and categorical.

The ACL paper's prior analysis (Fig. 11) compares a 1-mode and a 4-mode Gaussian prior for the same target,
so the mixture is a first-class prior, not a toy-only helper.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

PRIORS = ("gaussian", "uniform", "gmm", "categorical")


def mixture_centers(modes: int, dim: int, radius: float) -> Tensor:
    """Mode centres evenly on a circle of ``radius`` in the first two dimensions, zero elsewhere. [modes, dim]"""
    angles = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    centers = torch.zeros(modes, dim, dtype=torch.float64)
    centers[:, 0] = radius * torch.cos(angles)
    if dim > 1:
        centers[:, 1] = radius * torch.sin(angles)
    return centers.to(torch.get_default_dtype())  # float32, or float64 in a float64 run


class Prior:
    """Samples [n, dim] noise on a device from the recipe's prior (uses torch's global RNG of the caller)."""

    def __init__(self, kind: str, dim: int, modes: int = 4, radius: float = 2.0, std: float = 0.5):
        if kind not in PRIORS:
            raise ValueError(f"unknown prior {kind!r}; choose one of {PRIORS}")
        if kind == "categorical" and modes > dim:
            raise ValueError(f"a categorical prior needs modes ({modes}) <= dim ({dim})")
        self.kind, self.dim, self.modes, self.std = kind, dim, modes, std
        self.centers = mixture_centers(modes, dim, radius)
        self._centers_on: dict[str, Tensor] = {}  # per device: a pageable host copy each step would stall it

    def sample(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        if self.kind == "gaussian":
            return torch.randn(n, self.dim, device=device)
        if self.kind == "uniform":
            return torch.rand(n, self.dim, device=device) * 2 - 1
        mode = torch.randint(0, self.modes, (n,), device=device)
        if self.kind == "gmm":
            return self._centers(device)[mode] + self.std * torch.randn(n, self.dim, device=device)
        z = torch.randn(n, self.dim, device=device)  # categorical: one-hot block + Gaussian rest
        z[:, : self.modes] = torch.nn.functional.one_hot(mode, self.modes).float()
        return z

    def _centers(self, device: torch.device | str) -> Tensor:
        """The mixture centres on ``device``, copied there once."""
        key = str(torch.device(device))
        if key not in self._centers_on:
            self._centers_on[key] = self.centers.to(device)
        return self._centers_on[key]
