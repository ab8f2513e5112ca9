"""What only a GPU can show: the Triton kernel compiled for real, bf16/fp16 penalties on CUDA, and a training
step that never synchronises the host (``torch.cuda.set_sync_debug_mode("error")``). Skipped without CUDA;
run them on a GPU with ``pytest -m cuda``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from acl_dist.ops import gp_triton
from acl_dist.ops.gradient_penalty import critic_scores_and_penalty, draw_alpha, penalty_from_gradients
from acl_dist.trainer import Trainer

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = torch.device("cuda")


def _critic() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 4, 2, 1),
                         nn.GroupNorm(1, 64), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(64 * 8 * 8, 1)).to(CUDA)


def _penalty_and_param_grads(critic: nn.Module, real, fake, alpha, impl: str, dtype=None, norm_impl="ref"):
    critic.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        r, f, pen = critic_scores_and_penalty(critic, real, fake, impl=impl, alpha=alpha, norm_impl=norm_impl)
        loss = f.float().mean() - r.float().mean() + 10.0 * pen
    loss.backward()
    return pen.detach().float(), [p.grad.detach().float().clone() for p in critic.parameters()]


@pytest.mark.skipif(gp_triton.triton is None, reason="triton not importable")
def test_triton_norm_kernel_compiled_on_the_gpu_matches_ref() -> None:
    gen = torch.Generator(device=CUDA).manual_seed(0)
    grads = torch.randn(64, 3, 32, 32, device=CUDA, generator=gen) * 0.02
    for kind, one_sided in [("wgan", False), ("wgan", True), ("r1", False)]:
        out = {}
        for impl in ("ref", "triton"):
            g = grads.clone().requires_grad_(True)
            pen = penalty_from_gradients(g, impl=impl, kind=kind, one_sided=one_sided)
            (dg,) = torch.autograd.grad(pen * 3.0, g)
            out[impl] = (pen.detach(), dg)
        torch.testing.assert_close(out["triton"][0], out["ref"][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out["triton"][1], out["ref"][1], rtol=1e-5, atol=1e-7)


def test_penalty_paths_agree_on_cuda_and_bf16_stays_close_to_fp32() -> None:
    critic = _critic()
    real, fake = torch.randn(32, 3, 32, 32, device=CUDA), torch.randn(32, 3, 32, 32, device=CUDA)
    alpha = draw_alpha(real)
    ref_pen, ref_grads = _penalty_and_param_grads(critic, real, fake, alpha, "ref")
    for impl, norm_impl in [("fused", "ref"), ("split", "ref"), ("split", "triton")]:
        pen, grads = _penalty_and_param_grads(critic, real, fake, alpha, impl, norm_impl=norm_impl)
        torch.testing.assert_close(pen, ref_pen, rtol=1e-4, atol=1e-5)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    # bf16 keeps 8 bits of mantissa: the penalty within 5 %, parameter gradients within 10 % in norm
    pen, grads = _penalty_and_param_grads(critic, real, fake, alpha, "split", dtype=torch.bfloat16)
    assert abs(pen - ref_pen) <= 0.05 * ref_pen
    for a, b in zip(grads, ref_grads):
        assert (a - b).norm() <= 0.1 * b.norm() + 1e-6


@pytest.mark.parametrize("precision", ["no", "bf16", "fp16"])
@pytest.mark.parametrize("method", ["acl_gan_gp", "wgan_gp"])
def test_training_step_never_synchronises_the_host(tiny_recipe, method, precision) -> None:
    trainer = Trainer(tiny_recipe(method, "launch.device=cuda", f"train.mixed_precision={precision}",
                                  "train.steps=10"))
    batches, sums = iter(trainer.stream), {}
    for _ in range(2):  # optimizer states, allocator, cuDNN autotuning: first-call costs may sync
        trainer.run_step(batches, sums)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer.run_step(batches, sums)
            trainer.step += 1
            trainer.ema.update(trainer._sampling_nets(), trainer.step)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(torch.isfinite(v).all() for v in sums.values())
    assert trainer.skipped == 0
