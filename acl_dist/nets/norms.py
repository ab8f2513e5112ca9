"""Normalisation and spectral-norm choices shared by the conv nets."""

from __future__ import annotations

from torch import nn

NORMS = ("batch", "layer", "instance", "none")


def norm_2d(kind: str, channels: int) -> nn.Module:
    """A 2-D normalisation layer by recipe name.

    ``layer`` is GroupNorm with one group (normalises each sample over C, H, W) and ``instance`` is
    per-channel GroupNorm: neither couples samples of a batch, so both are safe under a gradient penalty
    (WGAN-GP's critic must not use batch norm).
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.GroupNorm(channels, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


def maybe_spectral(layer: nn.Module, enabled: bool) -> nn.Module:
    """Wrap a conv/linear layer with spectral normalisation when asked."""
    return nn.utils.parametrizations.spectral_norm(layer) if enabled else layer
