"""What only a GPU can show: the Triton kernel compiled for real, bf16/fp16 penalties on CUDA, and a training
step that never synchronises the host (``torch.cuda.set_sync_debug_mode("error")``). Skipped without CUDA;
run them on a GPU with ``pytest -m cuda``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from acl_dist.methods.registry import method_names
from acl_dist.ops import gp_triton
from acl_dist.ops.gradient_penalty import critic_scores_and_penalty, draw_alpha, penalty_from_gradients
from acl_dist.training.trainer import Trainer

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
        rtol = 3 * 32 * 32 * 2.0**-24  # a row's N = 3072 squares summed in another order: N·u32 = 1.8e-4
        torch.testing.assert_close(out["triton"][0], out["ref"][0], rtol=rtol, atol=1e-6)
        torch.testing.assert_close(out["triton"][1], out["ref"][1], rtol=rtol, atol=1e-7)


@pytest.fixture
def no_tf32(monkeypatch):
    """fp32 means fp32: cuDNN's default TF32 convolutions pick different algorithms per batch size."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        yield


def test_penalty_paths_agree_on_cuda_and_bf16_stays_close_to_fp32(no_tf32) -> None:
    critic = _critic()
    real, fake = torch.randn(32, 3, 32, 32, device=CUDA), torch.randn(32, 3, 32, 32, device=CUDA)
    alpha = draw_alpha(real)
    ref_pen, ref_grads = _penalty_and_param_grads(critic, real, fake, alpha, "ref")
    for impl, norm_impl in [("fused", "ref"), ("split", "ref"), ("split", "triton")]:
        pen, grads = _penalty_and_param_grads(critic, real, fake, alpha, impl, norm_impl=norm_impl)
        # cuDNN picks its algorithms per batch shape, so the paths sum in other orders: the penalty's row norms
        # over N = 3072 inputs within N·u32 = 1.8e-4, weight gradients over B·H·W = 64·16·16 positions within
        # 16384·u32 = 1e-3
        torch.testing.assert_close(pen, ref_pen, rtol=3072 * 2.0**-24, atol=1e-5)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b, rtol=16384 * 2.0**-24, atol=1e-5)
    # bf16 keeps 8 bits of mantissa: the penalty within 5 %, parameter gradients within 10 % in norm
    pen, grads = _penalty_and_param_grads(critic, real, fake, alpha, "split", dtype=torch.bfloat16)
    assert abs(pen - ref_pen) <= 0.05 * ref_pen
    for a, b in zip(grads, ref_grads):
        assert (a - b).norm() <= 0.1 * b.norm() + 1e-6


@pytest.mark.parametrize("precision", ["no", "bf16", "fp16"])
@pytest.mark.parametrize("method", ["acl_gan_gp", "wgan_gp"])
def test_training_step_never_synchronises_the_host(tiny_recipe, method, precision) -> None:
    trainer = Trainer(tiny_recipe(method, "launch.device=cuda", f"train.mixed_precision={precision}",
                                  "train.steps=10", "train.cuda_graphs=never"))
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


def _train(recipe, steps: int, autocast_cache: bool = True) -> Trainer:
    trainer = Trainer(recipe)
    if not autocast_cache:  # what a graph capture needs; the cache changes bf16 rounding (see below)
        dtype = torch.bfloat16 if recipe.train.mixed_precision == "bf16" else torch.float32
        trainer._autocast = lambda: torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32,
                                                   cache_enabled=False)
    batches, sums = iter(trainer.stream), {}
    for _ in range(steps):
        trainer.train_step(batches, sums)
        trainer.step += 1
        trainer.ema.update(trainer._sampling_nets(), trainer.step)
    trainer.last_sums, trainer._batches = sums, batches
    return trainer


def _largest_differences(a: Trainer, b: Trainer) -> dict[str, float]:
    """Per net, the largest absolute parameter difference between two runs."""
    return {name: max(float((p - q).detach().abs().max()) for p, q in zip(net.parameters(),
                                                                           b.method.nets[name].parameters()))
            for name, net in a.method.nets.items()}


@pytest.mark.parametrize("precision", ["no", "bf16"])
@pytest.mark.parametrize("method, extra", [("acl_gan_gp", []), ("wgan_gp", ["method.gp_every=2"])])
def test_cuda_graph_replays_train_exactly_like_eager_steps(tiny_recipe, no_tf32, method, extra, precision) -> None:
    """Warm-up, capture (one graph per lazy-penalty residue) and replays train as the eager steps do: same
    phase counts, same random numbers (graph-safe Philox), same parameters and metrics.

    The eager run also leaves autocast's weight-cast cache off, as a capture must: with the cache, a weight
    used twice in a phase gets its two gradients summed in bf16 before the cast back, without it in fp32, so
    the two differ in rounding (H200, acl_gan_gp, 9 steps: up to 1.1e-4 of a 3.8e-3 move; two eager runs with
    the same setting agree exactly, as fp32 graphed and eager runs do)."""
    common = ["launch.device=cuda", f"train.mixed_precision={precision}", "train.steps=12", *extra]
    eager_only = "train.cuda_graphs=never"
    eager = _train(tiny_recipe(method, *common, eager_only), 9, autocast_cache=False)
    graphed = _train(tiny_recipe(method, *common, "train.cuda_graphs=always"), 9)
    assert len(graphed.graphed.graphs) == (2 if extra else 1)
    assert graphed.phase_iterations == eager.phase_iterations
    moved = _largest_differences(eager, Trainer(tiny_recipe(method, *common, eager_only)))  # trained vs initial
    graph_vs_eager = _largest_differences(eager, graphed)
    print(f"{method} {precision}: moved {moved}\n graphed-eager {graph_vs_eager}")
    for name, diff in graph_vs_eager.items():
        assert diff <= 1e-3 * moved[name], (name, diff, moved[name])
    for key, value in eager.last_sums.items():
        torch.testing.assert_close(graphed.last_sums[key], value, rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("method, extra", [(m, []) for m in method_names()] + [
    ("acl_ae", ["method.prior=gmm"]), ("acl_gan_gp", ["model.checkpoint_activations=true"]),
    ("acl_gan_gp", ["train.channels_last=always"])])
def test_every_method_graphs_exactly_and_steps_without_host_sync(tiny_recipe, no_tf32, method, extra) -> None:
    """Each method's step (bf16) runs under the sync debug mode and replays from a CUDA graph bit for bit
    like the eager step; also with activation checkpointing, and in NHWC (``channels_last: always``, which
    ``auto`` leaves off on CUDA), the two options the high-resolution recipes may run with under graphs."""
    common = ["launch.device=cuda", "train.mixed_precision=bf16", "train.steps=12", *extra]
    eager = _train(tiny_recipe(method, *common, "train.cuda_graphs=never"), 6, autocast_cache=False)
    graphed = _train(tiny_recipe(method, *common, "train.cuda_graphs=always"), 4)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):  # graphed steps 5 and 6: host batches copied in, replayed, metrics summed
            graphed.train_step(graphed._batches, graphed.last_sums)
            graphed.step += 1
            graphed.ema.update(graphed._sampling_nets(), graphed.step)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert graphed.graphed.graphs and graphed.phase_iterations == eager.phase_iterations
    diffs = _largest_differences(eager, graphed)
    assert max(diffs.values()) == 0.0, diffs


def test_cuda_graph_training_runs_end_to_end_and_resumes_eagerly(tiny_recipe) -> None:
    result = Trainer(tiny_recipe("acl_gan_gp", "launch.device=cuda", "train.steps=8", "train.cuda_graphs=always",
                                 "train.mixed_precision=bf16")).train()
    assert result.step == 8 and result.checkpoint and torch.isfinite(torch.tensor(list(result.metrics.values()))).all()
    resumed = Trainer(tiny_recipe("acl_gan_gp", "launch.device=cuda", "train.steps=10",
                                  "train.mixed_precision=bf16", "train.cuda_graphs=never"))
    assert resumed.step == 8
    assert resumed.train().step == 10
