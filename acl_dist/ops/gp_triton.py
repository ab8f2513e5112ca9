"""Triton kernel for the per-sample norm penalty, with its backward: the ``impl="triton"`` twin of
``gradient_penalty.penalty_rows_ref``.

Why: in eager PyTorch the penalty on input gradients [B, N] is ~6 small kernels forward (norm, sub, clamp,
pow, ...) and as many backward; on a GPU at small batch those launches are visible next to the critic. Here
it is one reduction kernel per sample forward (sum of squares in fp32, penalty and backward coefficient in
the epilogue) and one elementwise kernel backward. On the CPU Triton only runs in its interpreter
(``TRITON_INTERPRET=1``), which is for tests, not speed; ``available()`` says whether a tensor can use it.

The interpolation needs no kernel of its own: ``torch.lerp`` with a pre-drawn per-sample alpha is already
one elementwise kernel, and drawing alpha in torch keeps it reproducible by ``torch.Generator``.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import Tensor

try:  # triton is optional: CPU-only installs may lack it
    import triton
    import triton.language as tl
except Exception as error:  # pragma: no cover - depends on the install
    triton = None
    IMPORT_ERROR: str | None = f"{type(error).__name__}: {error}"
else:
    IMPORT_ERROR = None

_BLOCK = 1024


def interpret_mode() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def available(t: Tensor) -> tuple[bool, str]:
    """Whether the Triton kernel can run on ``t`` here, and if not, why (for a one-time log line)."""
    if triton is None:
        return False, f"triton is not importable ({IMPORT_ERROR})"
    if t.is_cuda or interpret_mode():
        return True, ""
    return False, f"Triton kernels need a CUDA tensor (got {t.device.type}) or TRITON_INTERPRET=1"


@functools.lru_cache(maxsize=2)
def _kernels(interpret: bool):
    """Build (jit) the kernels once per interpreter setting: ``triton.jit`` picks the backend at decoration."""
    del interpret  # only the cache key: the env var is read by triton.jit itself

    @triton.jit
    def rows_fwd(g_ptr, pen_ptr, coef_ptr, N, center, SQUARED: tl.constexpr, ONE_SIDED: tl.constexpr,
                 BLOCK: tl.constexpr):
        row = tl.program_id(0)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, N, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            v = tl.load(g_ptr + row * N + offs, mask=offs < N, other=0.0).to(tl.float32)
            acc += v * v
        ss = tl.sum(acc, axis=0)
        if SQUARED:  # R1/R2: |g|^2, d/dg = 2 g
            pen = ss
            coef = ss * 0.0 + 2.0
        else:  # WGAN-GP: (|g| - c)^2 (clamped at 0 when one-sided), d/dg = 2 (|g| - c) g / |g|
            norm = tl.sqrt(ss)
            excess = norm - center
            if ONE_SIDED:
                excess = tl.maximum(excess, 0.0)
            pen = excess * excess
            coef = 2.0 * excess / tl.maximum(norm, 1e-12)
        tl.store(pen_ptr + row, pen)
        tl.store(coef_ptr + row, coef)

    @triton.jit
    def rows_bwd(g_ptr, coef_ptr, gout_ptr, out_ptr, N, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        scale = tl.load(coef_ptr + row) * tl.load(gout_ptr + row)
        v = tl.load(g_ptr + row * N + offs, mask=offs < N, other=0.0).to(tl.float32)
        tl.store(out_ptr + row * N + offs, (v * scale).to(out_ptr.dtype.element_ty), mask=offs < N)

    return rows_fwd, rows_bwd


class _PenaltyRows(torch.autograd.Function):
    """Per-sample penalty [B] of gradients [B, N]; first-order backward only (the penalty is a loss leaf)."""

    @staticmethod
    def forward(ctx, grads: Tensor, center: float, one_sided: bool, squared: bool) -> Tensor:  # type: ignore[override]
        grads = grads.contiguous()  # [B, N]
        rows, n = grads.shape
        pen = torch.empty(rows, device=grads.device, dtype=torch.float32)  # [B]
        coef = torch.empty_like(pen)  # [B], d pen_b / d g_b = coef_b * g_b
        fwd, _ = _kernels(interpret_mode())
        fwd[(rows,)](grads, pen, coef, n, float(center), SQUARED=squared, ONE_SIDED=one_sided, BLOCK=_BLOCK)
        ctx.save_for_backward(grads, coef)
        return pen

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pen: Tensor):  # type: ignore[override]
        grads, coef = ctx.saved_tensors
        rows, n = grads.shape
        out = torch.empty_like(grads)
        _, bwd = _kernels(interpret_mode())
        bwd[(rows, triton.cdiv(n, _BLOCK))](grads, coef, grad_pen.float().contiguous(), out, n, BLOCK=_BLOCK)
        return out, None, None, None


def penalty_rows_triton(grads: Tensor, *, center: float, one_sided: bool, squared: bool) -> Tensor:
    """Per-sample penalty [B] of ``grads`` [B, ...] with the Triton kernels (caller checked ``available``)."""
    return _PenaltyRows.apply(grads.flatten(1), center, one_sided, squared)
