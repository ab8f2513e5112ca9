"""Gradient penalties: reference vs fast paths, mixed precision, lazy gain, double-backward correctness."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from acl_dist.ops.gradient_penalty import (
    critic_scores_and_penalty,
    draw_alpha,
    gradient_penalty,
    interpolate,
    lazy_gain,
    penalty_from_gradients,
)
from acl_dist.ops.masked_activations import masked_activations

B = 4  # tiny batches: these tests check maths, not speed

# Two computations of the same maths in another order (the fast paths batch real and fake together and share
# the interpolates' forward; vmap sums per sample) are compared in float64, where another order moves a
# sum of N terms by at most N·u·Σ|terms| (u = 2^-53). The longest reduction here (a weight gradient over the
# batch and the 4x4 / 2x2 positions of a 4x4 kernel with 4 input channels) has N < 10^3 terms, and the double
# backward passes through 3 layers; REORDER_RTOL = 10^3·N·u ≈ 1e-10 (the 10^3 for cancellation in the
# penalty's (|g| - 1)²). In float32 the same comparison would need a tolerance tuned to one CPU's kernels.
REORDER_RTOL = REORDER_ATOL = 1e3 * 1e3 * 2.0**-53


def conv_critic(norm: bool = True, act: type[nn.Module] = nn.LeakyReLU) -> nn.Sequential:
    """[B, 3, 8, 8] -> [B, 1]; GroupNorm(1) is the per-sample 'layer' norm allowed under a penalty."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 4, 2, 1)] + ([nn.GroupNorm(1, cout)] if norm else []) + [act()]
    return nn.Sequential(*block(3, 4), *block(4, 8), nn.Flatten(), nn.Linear(8 * 2 * 2, 1))


def batch(seed: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, 8, 8, generator=g, dtype=dtype), torch.randn(B, 3, 8, 8, generator=g, dtype=dtype)


def param_grads(critic: nn.Module, loss: Tensor) -> list[Tensor]:
    critic.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in critic.parameters()]


def step_grads(
    critic: nn.Module, real: Tensor, fake: Tensor, impl: str, seed: int, **kw
) -> tuple[list[Tensor], list[Tensor]]:
    """(real scores, fake scores, penalty) and the parameter gradients of a WGAN-GP critic loss."""
    gen = torch.Generator().manual_seed(seed)
    r, f, pen = critic_scores_and_penalty(critic, real, fake, impl=impl, generator=gen, **kw)
    grads = param_grads(critic, f.mean() - r.mean() + 10.0 * pen)
    return [r.detach(), f.detach(), pen.detach()], grads


# --------------------------------------------------------------------------------------------- lazy gain
def test_lazy_gain_pattern() -> None:
    assert [lazy_gain(s, 4) for s in range(8)] == [4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0]
    assert [lazy_gain(s, 1) for s in range(3)] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="interval"):
        lazy_gain(0, 0)


def test_lazy_expected_gradient_equals_dense() -> None:
    """Mean over k steps of gain * penalty gradient (skipped steps contribute 0) == the dense gradient."""
    torch.manual_seed(0)
    critic = conv_critic()
    real, fake = batch(1)
    alpha = draw_alpha(real, torch.Generator().manual_seed(2))
    dense = param_grads(critic, gradient_penalty(critic, real, fake, alpha=alpha))
    every, runs = 4, 0
    total = [torch.zeros_like(g) for g in dense]
    for step in range(every):
        gain = lazy_gain(step, every)
        if gain == 0.0:
            continue  # skipped: no penalty computed at all
        runs += 1
        grads = param_grads(critic, gain * gradient_penalty(critic, real, fake, alpha=alpha))
        total = [t + g for t, g in zip(total, grads)]
    assert runs == 1
    for t, d in zip(total, dense):
        torch.testing.assert_close(t / every, d)


# ------------------------------------------------------------------------------------ ref vs fast paths


@pytest.mark.parametrize("impl", ["fused", "split"])
@pytest.mark.parametrize("kind,one_sided", [("wgan", False), ("wgan", True), ("r1", False), ("r2", False)])
def test_fast_paths_match_ref(impl: str, kind: str, one_sided: bool) -> None:
    """Same scores, penalty and critic parameter gradients as three separate plain forwards (float64)."""
    torch.manual_seed(0)
    critic = conv_critic().double()
    real, fake = batch(3, torch.float64)
    if one_sided:
        real, fake = real * 0.05, fake * 0.05  # some norms below 1, so the clamp matters
    ref_vals, ref_grads = step_grads(critic, real, fake, "ref", seed=7, kind=kind, one_sided=one_sided)
    vals, grads = step_grads(critic, real, fake, impl, seed=7, kind=kind, one_sided=one_sided)
    assert ref_vals[2] > 0 and vals[2].dtype == torch.float64
    for a, b in zip(vals + grads, ref_vals + ref_grads):
        torch.testing.assert_close(a, b, rtol=REORDER_RTOL, atol=REORDER_ATOL)


def test_auto_impl_and_pre_drawn_alpha() -> None:
    """``auto`` is a real impl, and a pre-drawn alpha gives what the generator would have drawn."""
    torch.manual_seed(0)
    critic = conv_critic()
    real, fake = batch(4)
    alpha = draw_alpha(real, torch.Generator().manual_seed(9))
    _, _, with_alpha = critic_scores_and_penalty(critic, real, fake, impl="auto", alpha=alpha)
    gen = torch.Generator().manual_seed(9)
    _, _, with_gen = critic_scores_and_penalty(critic, real, fake, impl="ref", generator=gen)
    torch.testing.assert_close(with_alpha, with_gen)


@pytest.mark.parametrize("layer", [nn.BatchNorm2d(4), nn.SyncBatchNorm(4)])
@pytest.mark.parametrize("impl", ["fused", "split"])
def test_batch_norm_critic_refused_by_batched_paths(layer: nn.Module, impl: str) -> None:
    critic = nn.Sequential(nn.Conv2d(3, 4, 4, 2, 1), layer, nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(64, 1))
    real, fake = batch(5)
    with pytest.raises(ValueError, match=rf"impl='{impl}'.*1 \({type(layer).__name__}\).*per-sample norm"):
        critic_scores_and_penalty(critic, real, fake, impl=impl)
    if isinstance(layer, nn.BatchNorm2d):  # the reference still runs (SyncBatchNorm needs a process group)
        critic_scores_and_penalty(critic, real, fake, impl="ref")


def test_bad_kind_and_impl_are_errors() -> None:
    critic = conv_critic()
    real, fake = batch(6)
    with pytest.raises(ValueError, match="kind 'r3'"):
        critic_scores_and_penalty(critic, real, fake, kind="r3")
    with pytest.raises(ValueError, match="impl 'cuda'"):
        critic_scores_and_penalty(critic, real, fake, impl="cuda")
    with pytest.raises(ValueError, match="kind 'r3'"):
        gradient_penalty(critic, real, fake, kind="r3")


# ------------------------------------------------------------------------------------ values, directly
def test_r1_r2_wgan_values_of_a_linear_critic() -> None:
    """D(x) = w.x + b has input gradient w everywhere: R1 = R2 = |w|^2, WGAN-GP = (|w| - 1)^2 (float64: the
    penalty sums the 192 squares in another order than ``sq``; see REORDER_RTOL)."""
    critic = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 1)).double()
    real, fake = batch(8, torch.float64)
    sq = critic[1].weight.detach().pow(2).sum()
    close = dict(rtol=REORDER_RTOL, atol=REORDER_ATOL)
    for impl in ("ref", "fused", "split"):
        for kind in ("r1", "r2"):
            penalty = critic_scores_and_penalty(critic, real, fake, kind=kind, impl=impl)[2]
            torch.testing.assert_close(penalty, sq, **close)
        wgan = critic_scores_and_penalty(critic, real, fake, impl=impl)[2]
        torch.testing.assert_close(wgan, (sq.sqrt() - 1).pow(2), **close)
        one_sided = critic_scores_and_penalty(critic, real, fake, impl=impl, one_sided=True)[2]
        assert sq.sqrt() < 1 and one_sided.item() == 0.0  # |w| < 1 at init: nothing to penalise


@pytest.mark.parametrize("kind", ["r1", "r2"])
def test_r1_r2_equal_per_sample_gradients_from_torch_func(kind: str) -> None:
    """float64: vmap's per-sample gradients sum in another order than the batched backward (REORDER_RTOL)."""
    torch.manual_seed(0)
    critic = conv_critic().double()
    real, fake = batch(9, torch.float64)
    points = real if kind == "r1" else fake
    params = dict(critic.named_parameters())

    def score(x: Tensor) -> Tensor:  # one sample [3, 8, 8] -> scalar
        return torch.func.functional_call(critic, params, (x[None],)).squeeze()

    per_sample = torch.func.vmap(torch.func.grad(score))(points)  # [B, 3, 8, 8]
    direct = per_sample.flatten(1).pow(2).sum(1).mean()
    close = dict(rtol=REORDER_RTOL, atol=REORDER_ATOL)
    torch.testing.assert_close(gradient_penalty(critic, real, fake, kind=kind), direct, **close)
    torch.testing.assert_close(critic_scores_and_penalty(critic, real, fake, kind=kind)[2], direct, **close)


# ------------------------------------------------------------------------ double backward correctness
def _finite_difference(critic: nn.Module, loss_fn, eps: float = 1e-6) -> list[Tensor]:
    """Central differences of loss_fn() with respect to every parameter element (float64)."""
    out = []
    with torch.no_grad():
        for p in critic.parameters():
            g = torch.zeros_like(p)
            flat, gflat = p.view(-1), g.view(-1)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + eps
                with torch.enable_grad():
                    up = loss_fn().item()
                flat[i] = old - eps
                with torch.enable_grad():
                    down = loss_fn().item()
                flat[i] = old
                gflat[i] = (up - down) / (2 * eps)
            out.append(g)
    return out


@pytest.mark.parametrize("impl,act", [("ref", nn.Tanh), ("split", nn.LeakyReLU), ("fused", nn.LeakyReLU)])
def test_penalty_gradients_reach_parameters_and_match_finite_differences(impl: str, act: type[nn.Module]) -> None:
    """float64: autograd's double backward == central differences, and every weight gets a gradient."""
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(3, 5), act(), nn.Linear(5, 4), act(), nn.Linear(4, 1)).double()
    real, fake = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
    alpha = draw_alpha(real, torch.Generator().manual_seed(1))

    def loss() -> Tensor:
        return critic_scores_and_penalty(critic, real, fake, impl=impl, alpha=alpha)[2]

    analytic = param_grads(critic, loss())
    numeric = _finite_difference(critic, loss)
    # central differences with step h = 1e-6 in float64: truncation error h²·|f'''| ~ 1e-12, rounding error
    # u·|f|/h ~ 1e-10 for |f| ~ 1: 1e-7 absolute (and 1e-5 relative) leaves a 1000x margin over both
    for a, n in zip(analytic, numeric):
        torch.testing.assert_close(a, n, rtol=1e-5, atol=1e-7)
    for (name, _), a in zip(critic.named_parameters(), analytic):
        if name.endswith("weight"):
            assert a.abs().sum() > 0, f"no penalty gradient reached {name}"


def test_masked_activations_cut_the_zero_path_and_keep_gradients() -> None:
    """Under the mode, the penalty no longer reaches the input through the activations' (zero) 2nd
    derivative -- that path was pure waste -- and first-order gradients are unchanged."""
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(3, 6), nn.LeakyReLU(0.2), nn.Linear(6, 6), nn.ReLU(inplace=True), nn.Linear(6, 1))

    def penalty_and_input(masked: bool) -> tuple[Tensor, Tensor, Tensor]:
        x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        if masked:
            with masked_activations():
                scores = critic(x)
        else:
            scores = critic(x)
        (g,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
        return g, g.pow(2).sum(), x

    g_native, pen_native, x_native = penalty_and_input(False)
    g_masked, pen_masked, x_masked = penalty_and_input(True)
    torch.testing.assert_close(g_masked, g_native)
    (zeros,) = torch.autograd.grad(pen_native, x_native, allow_unused=True, retain_graph=True)
    assert zeros is not None and zeros.abs().sum() == 0  # native: a computed tensor of zeros
    (unused,) = torch.autograd.grad(pen_masked, x_masked, allow_unused=True, retain_graph=True)
    assert unused is None  # masked: the path is not in the graph at all
    torch.testing.assert_close(param_grads(critic, pen_masked), param_grads(critic, pen_native))


# ------------------------------------------------------------------------------------ mixed precision
def _cosine(a: list[Tensor], b: list[Tensor]) -> float:
    va, vb = torch.cat([t.flatten() for t in a]), torch.cat([t.flatten() for t in b])
    return (va @ vb / (va.norm() * vb.norm())).item()


@pytest.mark.parametrize("impl", ["ref", "split"])
def test_bf16_autocast_close_to_fp32(impl: str) -> None:
    """bf16 keeps ~3 significant digits: penalty within 3% and parameter gradients at cosine > 0.995."""
    torch.manual_seed(0)
    critic = conv_critic()
    real, fake = batch(10)
    vals32, grads32 = step_grads(critic, real, fake, impl, seed=11)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gen = torch.Generator().manual_seed(11)
        r, f, pen = critic_scores_and_penalty(critic, real, fake, impl=impl, generator=gen)
    assert r.dtype == torch.bfloat16 and pen.dtype == torch.float32  # the penalty itself is taken in fp32
    grads16 = param_grads(critic, f.float().mean() - r.float().mean() + 10.0 * pen)
    # bf16 rounds each value to 8 significant bits (u = 2^-8 = 0.4%); the penalty's input gradients pass about
    # 8 rounded ops (2 convs, 2 norms, their backwards), each adding up to u: within 8u ≈ 3%. The gradients' cosine
    # 0.995 allows the same ~3% relative error spread over the vector (cos ≈ 1 - e²/2 for relative error e ≤ 0.1).
    torch.testing.assert_close(pen.detach(), vals32[2], rtol=8 * 2.0**-8, atol=0.0)
    assert _cosine(grads16, grads32) > 0.995


def _small_gradient_critic() -> nn.Sequential:
    """Input gradients ~1e-9: fine in fp32, below fp16's smallest subnormal (6e-8) unless scaled."""
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    with torch.no_grad():
        for p in critic.parameters():
            p.mul_(1e-3)
    return critic


def test_fp16_unscaled_input_gradients_underflow_and_the_scaled_recipe_does_not() -> None:
    critic = _small_gradient_critic()
    real, fake = torch.randn(B, 8), torch.randn(B, 8)
    exact = gradient_penalty(critic, real, fake, kind="r1")  # fp32
    assert exact > 0
    scale = torch.tensor(2.0**15)  # GradScaler's 2^16 start is itself inf in fp16; it backs off to 2^15
    with torch.autocast("cpu", dtype=torch.float16):
        unscaled = gradient_penalty(critic, real, fake, kind="r1")
        scaled = gradient_penalty(critic, real, fake, kind="r1", grad_scale=scale)
        _, _, scaled_split = critic_scores_and_penalty(critic, real, fake, kind="r1", grad_scale=scale)
        too_big = gradient_penalty(critic, real, fake, kind="r1", grad_scale=torch.tensor(2.0**16))
    assert not torch.isfinite(too_big)  # non-finite -> the scaler skips that step and halves its scale
    assert unscaled.item() == 0.0  # every input gradient flushed to zero in the fp16 backward
    # fp16 keeps 11 significant bits (u = 2^-11 ≈ 4.9e-4); 3 linear layers forward and back, their products and
    # the squared norm round about 40 times on the way: within 40u ≈ 2% of the float32 penalty
    torch.testing.assert_close(scaled, exact, rtol=40 * 2.0**-11, atol=0.0)
    torch.testing.assert_close(scaled_split, exact, rtol=40 * 2.0**-11, atol=0.0)


def _wgan_gp_fp16_run(steps: int, *, recipe: bool) -> tuple[nn.Module, nn.Module, int, float, float]:
    """Tiny WGAN-GP on a 2-D toy set under fp16 autocast and a GradScaler; returns nets, D steps taken
    the last penalty and the final scale. ``recipe=False`` forgets the unscale (scales, never divides back)."""
    torch.manual_seed(0)
    gnet = nn.Sequential(nn.Linear(4, 32), nn.LeakyReLU(0.2), nn.Linear(32, 2))
    dnet = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
    g_opt = torch.optim.Adam(gnet.parameters(), lr=1e-3, betas=(0.5, 0.9))
    d_opt = torch.optim.Adam(dnet.parameters(), lr=1e-3, betas=(0.5, 0.9))
    scaler = torch.amp.GradScaler("cpu")
    one = torch.ones(())
    pen = torch.zeros(())
    for _ in range(steps):
        real = torch.randn(16, 2) * 0.1 + torch.tensor([1.0, -1.0])
        with torch.autocast("cpu", dtype=torch.float16):
            fake = gnet(torch.randn(16, 4)).float()
            grad_scale = scaler.scale(one)  # the scale as a tensor: no .item(), no sync
            if recipe:
                r, f, pen = critic_scores_and_penalty(dnet, real, fake, grad_scale=grad_scale)
            else:  # the classic mistake: scale before autograd.grad, penalise the still-scaled gradients
                r, f = dnet(real).reshape(-1), dnet(fake.detach()).reshape(-1)
                points = interpolate(real, fake).requires_grad_(True)
                (grads,) = torch.autograd.grad(dnet(points).float().sum() * grad_scale, points, create_graph=True)
                pen = penalty_from_gradients(grads)
            d_loss = f.float().mean() - r.float().mean() + 10.0 * pen
        d_opt.zero_grad(set_to_none=True)
        scaler.scale(d_loss).backward()
        scaler.step(d_opt)
        scaler.update()
        with torch.autocast("cpu", dtype=torch.float16):
            g_loss = -dnet(gnet(torch.randn(16, 4))).float().mean()
        g_opt.zero_grad(set_to_none=True)
        scaler.scale(g_loss).backward()
        scaler.step(g_opt)
        scaler.update()
    taken = int(d_opt.state[next(iter(dnet.parameters()))]["step"]) if d_opt.state else 0
    return gnet, dnet, taken, float(pen.detach()), scaler.get_scale()


def test_fp16_scaler_recipe_trains_200_steps_finite_and_forgetting_unscale_breaks_it() -> None:
    gnet, dnet, taken, last_pen, scale = _wgan_gp_fp16_run(200, recipe=True)
    params = torch.cat([p.detach().flatten() for p in [*gnet.parameters(), *dnet.parameters()]])
    assert torch.isfinite(params).all()
    assert taken >= 190, f"only {taken}/200 critic steps taken: the scaler kept skipping on inf/nan"
    assert torch.isfinite(torch.tensor(last_pen)) and scale >= 2.0**10
    # Without the unscale the penalty sees gradients times 2^16: the backward overflows fp16, the scaler
    # skips steps and halves its scale until the wrong penalty fits, i.e. training a different objective.
    _, _, bad_taken, _, bad_scale = _wgan_gp_fp16_run(30, recipe=False)
    assert bad_taken <= 25 and bad_scale <= 2.0**6, (bad_taken, bad_scale)
