"""ReLU / LeakyReLU whose backward depends on the input only through its detached sign (a mask).

Why: a gradient penalty differentiates the critic's input gradient once more. For a piecewise-linear
activation that second derivative is zero almost everywhere, but PyTorch's ``leaky_relu_backward`` still
records a ``zeros_like`` derivative with respect to the activation's input, so the final backward pushes a
tensor of zeros back through the whole forward graph of the penalised points (a full conv backward, input
and weight, per layer, for nothing). Reading the input detached in the backward cuts that path out of the
graph: the values and all gradients are the same and the double backward is shorter.

``masked_activations()`` is a context manager (a ``TorchFunctionMode``) that swaps ``F.relu`` /
``F.leaky_relu`` / ``torch.relu`` for these versions inside the critic's forward without touching its
modules; ``impl="ref"`` paths never enter it. ReLU is served as a leaky ReLU of slope 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode


class _MaskedLeakyReLU(torch.autograd.Function):
    """leaky_relu(x) whose backward reads x only as a detached constant (its sign)."""

    @staticmethod
    def forward(ctx, x: Tensor, slope: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)  # what the native op saves too: same memory
        ctx.slope = slope
        return F.leaky_relu(x, slope)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        # The native backward kernel (one pass, grad's dtype), differentiable in ``grad`` only: with x
        # detached the double backward stops here instead of sending zeros through the forward graph.
        (x,) = ctx.saved_tensors
        return torch.ops.aten.leaky_relu_backward(grad, x.detach(), ctx.slope, False), None


def masked_leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """Out-of-place leaky ReLU with a mask-only backward (see the module docstring)."""
    return _MaskedLeakyReLU.apply(x, float(negative_slope))


def _slope_of(func, args: tuple, kwargs: dict) -> float | None:
    """The negative slope a relu-like call asks for, or None when ``func`` is not one we replace."""
    if func is F.leaky_relu:
        return float(args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01))
    if func in (F.relu, torch.relu, Tensor.relu):
        return 0.0
    return None


class _MaskedActivationsMode(TorchFunctionMode):
    """Routes relu-like calls that build a graph to ``masked_leaky_relu``; everything else passes through.

    In-place requests (``inplace=True``) are served out of place: modules use the return value, and an
    in-place activation on a tensor the penalty differentiates would be unsafe anyway.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        slope = _slope_of(func, args, kwargs)
        x = args[0] if args else None
        if slope is not None and isinstance(x, Tensor) and x.requires_grad and torch.is_grad_enabled():
            return masked_leaky_relu(x, slope)
        return func(*args, **kwargs)


def masked_activations() -> TorchFunctionMode:
    """Context manager: inside it, ReLU/LeakyReLU keep only a sign mask for their backward."""
    return _MaskedActivationsMode()
