"""Normalisation and spectral-norm choices shared by the conv nets."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
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


def batch_norms(*modules: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every batch-norm layer (1-D or 2-D) inside ``modules`` that keeps running statistics."""
    return [m for module in modules for m in module.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@contextlib.contextmanager
def running_stats_frozen(*modules: nn.Module) -> Iterator[None]:
    """Batch norms inside normalise with the batch's statistics but leave their running statistics alone.

    Used where a generator sees inputs of another kind than it is sampled from (ACL-GAN's Gx on encoder
    codes in the reconstruction phase), so eval-mode sampling uses statistics of what it is fed.
    """
    layers = batch_norms(*modules)
    for layer in layers:
        layer.track_running_stats = False  # in train mode: batch statistics, no running update
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True


@torch.no_grad()
def recalibrate_batch_norms(modules: list[nn.Module], forward: Callable[[], object], batches: int) -> int:
    """Re-estimate every batch norm's running statistics from ``batches`` calls of ``forward``.

    The statistics become the plain average over those batches (momentum ``None``), computed in train mode;
    each module's train/eval mode and momentum are restored. Returns how many batch-norm layers changed.
    """
    layers = batch_norms(*modules)
    if not layers or batches <= 0:
        return 0
    modes = [m.training for m in modules]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative moving average: every batch counts equally
    for module in modules:
        module.train()
    try:
        for _ in range(batches):
            forward()
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)
