"""Gradient penalties for critics: WGAN-GP (interpolates), R1 (reals), R2 (fakes).

Why a function of its own: the penalty needs a double backward, which is the most expensive part of a critic
step, and under fp16 it must follow PyTorch's GradScaler recipe (scale the outputs before ``autograd.grad``,
unscale the gradients out of place) or the gradients overflow. The trainer owns the scaler and hands its
current scale in as ``grad_scale``; this module never sees a scaler object.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

KINDS = ("wgan", "r1", "r2")


def _input_gradients(critic: nn.Module, points: Tensor, grad_scale: Tensor | None) -> tuple[Tensor, Tensor]:
    """Critic scores at ``points`` and d(sum scores)/d(points), kept in the graph for the double backward."""
    points = points.detach().requires_grad_(True)
    scores = critic(points).reshape(-1)  # [B]
    outputs = scores.sum() if grad_scale is None else scores.sum() * grad_scale
    (grads,) = torch.autograd.grad(outputs, points, create_graph=True)
    if grad_scale is not None:
        grads = grads / grad_scale  # out of place: the scaled tensor stays in the graph untouched
    return scores, grads


def penalty_from_gradients(grads: Tensor, one_sided: bool = False, center: float = 1.0, kind: str = "wgan") -> Tensor:
    """Mean over the batch of the per-sample penalty on input gradients ``grads`` [B, ...]."""
    norms = grads.float().flatten(1).norm(2, dim=1)  # [B]
    if kind in ("r1", "r2"):
        return norms.pow(2).mean()
    excess = norms - center
    if one_sided:
        excess = excess.clamp(min=0)
    return excess.pow(2).mean()


def interpolate(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random points on the lines between paired real and fake samples (WGAN-GP)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    return torch.lerp(fake.detach(), real.detach(), alpha)


def gradient_penalty(
    critic: nn.Module,
    real: Tensor,
    fake: Tensor,
    *,
    kind: str = "wgan",
    one_sided: bool = False,
    grad_scale: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Reference penalty: one extra critic forward on the penalised points, ``autograd.grad``, mean penalty.

    Args:
        critic: maps [B, ...] inputs to [B] or [B, 1] scores.
        real, fake: same-shape batches; fake is detached here.
        kind: ``wgan`` (interpolates, target norm 1), ``r1`` (reals, norm^2), ``r2`` (fakes, norm^2).
        grad_scale: the fp16 GradScaler's current scale, or None without fp16.
    """
    if kind not in KINDS:
        raise ValueError(f"gradient penalty kind {kind!r} is not one of {KINDS}")
    points = {"wgan": lambda: interpolate(real, fake, generator), "r1": lambda: real, "r2": lambda: fake}[kind]()
    _, grads = _input_gradients(critic, points, grad_scale)
    return penalty_from_gradients(grads, one_sided=one_sided, kind=kind)
