"""The Triton norm-penalty kernel against its plain twin, run on the CPU through Triton's interpreter."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from acl_dist.ops import gp_triton
from acl_dist.ops import gradient_penalty as gp

needs_triton = pytest.mark.skipif(gp_triton.triton is None, reason=f"triton not importable: {gp_triton.IMPORT_ERROR}")


def _penalty_and_grad(grads: torch.Tensor, impl: str, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    g = grads.clone().requires_grad_(True)
    pen = gp.penalty_from_gradients(g, impl=impl, **kw)
    (dg,) = torch.autograd.grad(pen * 3.0, g)  # a non-unit upstream gradient
    return pen.detach(), dg


def compare_in_interpreter() -> None:
    """Runs in a child process started with TRITON_INTERPRET=1 (it must be set before triton is imported:
    triton's own library functions are jit-decorated at import time)."""
    assert gp_triton.interpret_mode() and gp_triton.available(torch.zeros(1))[0]
    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([0.0, 0.001, 0.01, 0.05, 1.0]).view(5, 1, 1, 1)  # row 0: norm 0, finite coefficient
    grads = torch.randn(5, 3, 20, 20, generator=gen) * scales  # N = 1200 > BLOCK: the loop runs twice
    for kind, one_sided in [("wgan", False), ("wgan", True), ("r1", False)]:
        ref = _penalty_and_grad(grads, "ref", kind=kind, one_sided=one_sided)
        tri = _penalty_and_grad(grads, "triton", kind=kind, one_sided=one_sided)
        # the kernel sums each row's N = 1200 squares in blocks, torch in its own order: float32 sums of N terms
        # differ by at most N·u32 of their scale (7.2e-5), and the gradient (a coefficient of the norm times g)
        # inherits that relative error; the atol covers row 0, whose norm is 0
        rtol = 1200 * 2.0**-24
        torch.testing.assert_close(tri[0], ref[0], rtol=rtol, atol=1e-6)
        torch.testing.assert_close(tri[1], ref[1], rtol=rtol, atol=1e-7)
        assert tri[1].abs().sum() > 0
    assert not gp._warned, gp._warned  # the kernel ran: no fallback was logged
    print("triton-interpreter-ok")


@needs_triton
def test_triton_kernel_matches_ref_in_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    here = str(Path(__file__).parent)
    code = f"import sys; sys.path.insert(0, {here!r}); import test_gp_triton as t; t.compare_in_interpreter()"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "triton-interpreter-ok" in done.stdout, done.stdout + done.stderr


def test_triton_unavailable_on_cpu_says_so_once_and_uses_ref(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(gp, "_warned", set())
    grads = torch.randn(3, 2, 4, 4)
    with caplog.at_level(logging.WARNING, logger=gp.__name__):
        first = gp.penalty_from_gradients(grads, impl="triton")
        second = gp.penalty_from_gradients(grads, impl="triton")
    assert sum("Triton norm kernel unavailable" in r.getMessage() for r in caplog.records) == 1
    torch.testing.assert_close(first, gp.penalty_from_gradients(grads, impl="ref"))
    torch.testing.assert_close(second, first)
    with pytest.raises(ValueError, match="norm impl 'cuda'"):
        gp.penalty_from_gradients(grads, impl="cuda")
