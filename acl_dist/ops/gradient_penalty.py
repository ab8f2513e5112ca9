"""Gradient penalties for critics: WGAN-GP (interpolates), R1 (reals), R2 (fakes), R1 + R2 (R3GAN), plain and
fast paths.

Why a module of its own: the penalty needs a double backward, which is the most expensive part of a critic
step, and under fp16 it must follow PyTorch's GradScaler recipe (scale the outputs before ``autograd.grad``,
unscale the gradients out of place, penalty inside autocast) or the input gradients underflow. The trainer
owns the scaler and hands its current scale in as ``grad_scale`` (a tensor, e.g. ``scaler.scale(one)``, so
nothing here calls ``.item()``); this module never sees a scaler object.

Two entry points:

* ``gradient_penalty`` -- the penalty alone (one extra critic forward on the penalised points); the plain
  reference, and what a lazy ``Dreg``-style phase calls.
* ``critic_scores_and_penalty`` -- a whole critic step's forwards: real scores, fake scores and the penalty.
  ``impl="ref"`` does three separate forwards. ``impl="fused"`` pushes real, fake and the penalised points
  through ONE forward (cat along the batch). ``impl="split"`` does one forward of the unpenalised points and
  one of the penalised ones, so the double backward spans only the penalised batch; both fast paths also
  keep ReLU/LeakyReLU backward masks detached (``masked_activations``). ``"auto"`` is ``DEFAULT_IMPL``,
  chosen by ``benchmarks/gp.py`` on the CPU (see there for the numbers).

torch.compile: AOTAutograd has no double backward, so every forward that feeds ``autograd.grad(...,
create_graph=True)`` here runs eagerly (``torch.compiler.set_stance("force_eager")``) even when the trainer
compiled the critic (``train.compile``); the critic's other forwards (the generator's phase) stay compiled.

Lazy regularisation (StyleGAN2): run the penalty every ``k`` steps and weight it by ``k``; ``lazy_gain``
gives that weight (0 on skipped steps), so the expected gradient equals the dense one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from acl_dist.ops import gp_triton
from acl_dist.ops.masked_activations import masked_activations

KINDS = ("wgan", "r1", "r2", "r1r2")  # r1r2: R1 + R2 from one double backward over reals and fakes together
IMPLS = ("ref", "fused", "split")
NORM_IMPLS = ("ref", "triton")
# "split" measured fastest on the 2-core CPU (benchmarks/gp.py): the one-forward "fused" path makes the
# input-gradient pass and the double backward span 3B rows instead of B. On an H200 (eager, 32x32, batch
# 64, layer norm) fused was ahead: D-step ratios ref 3.74x, fused 3.33x, split 3.61x, because launches,
# not FLOPs, set the pace there; under CUDA graphs (the default on one GPU) launches cost nothing and the
# FLOPs argument for split holds again, so split stays the default everywhere.
DEFAULT_IMPL = "split"

log = logging.getLogger(__name__)
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    """Log a fast path's absence once per process, never silently."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def lazy_gain(step: int, every: int) -> float:
    """Weight of a lazily computed penalty at ``step``: ``every`` on the steps it runs, 0 when skipped.

    Running it on steps ``0, k, 2k, ...`` with weight ``k`` keeps the expected gradient equal to running
    it every step with weight 1 (StyleGAN2's lazy R1), at ``1/k`` of the cost.
    """
    if every < 1:
        raise ValueError(f"lazy penalty interval must be >= 1, got {every}")
    return float(every) if step % every == 0 else 0.0


def _at_least_fp32(t: Tensor) -> Tensor:
    """fp16/bf16 -> fp32 for sums and norms; fp32/fp64 unchanged (a float64 check must stay float64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"gradient penalty kind {kind!r} is not one of {KINDS}")


def _eager():
    """Run compiled modules eagerly in this block: their double backward is not supported compiled."""
    return torch.compiler.set_stance("force_eager")


def _input_gradients_of(scores: Tensor, points: Tensor, grad_scale: Tensor | None) -> Tensor:
    """d(sum scores)/d(points) [B, ...], kept in the graph; scaled and unscaled out of place under fp16.

    The sum is taken in fp32 so an fp16 batch sum cannot overflow before the scale is even applied.
    """
    outputs = _at_least_fp32(scores).sum()
    if grad_scale is not None:
        outputs = outputs * grad_scale
    (grads,) = torch.autograd.grad(outputs, points, create_graph=True)
    if grad_scale is not None:
        grads = grads / grad_scale  # out of place: the scaled tensor stays in the graph untouched
    return grads


def _input_gradients(critic: nn.Module, points: Tensor, grad_scale: Tensor | None) -> tuple[Tensor, Tensor]:
    """Critic scores at ``points`` and d(sum scores)/d(points), kept in the graph for the double backward."""
    points = points.detach().requires_grad_(True)
    scores = critic(points).reshape(-1)  # [B]
    return scores, _input_gradients_of(scores, points, grad_scale)


def penalty_rows_ref(grads: Tensor, *, center: float, one_sided: bool, squared: bool) -> Tensor:
    """Per-sample penalty [B] of ``grads`` [B, ...]: |g|^2 (squared) or (|g| - center)^2, in >= fp32."""
    flat = _at_least_fp32(grads).flatten(1)  # [B, N]
    if squared:
        return flat.pow(2).sum(dim=1)  # no sqrt: exact and smooth at g = 0
    excess = flat.norm(2, dim=1) - center  # [B]
    if one_sided:
        excess = excess.clamp(min=0)
    return excess.pow(2)


def penalty_from_gradients(
    grads: Tensor, one_sided: bool = False, center: float = 1.0, kind: str = "wgan", impl: str = "ref"
) -> Tensor:
    """Mean over the batch of the per-sample penalty on input gradients ``grads`` [B, ...].

    ``impl="triton"`` runs one reduction kernel forward and one elementwise kernel backward (GPU, or the
    CPU interpreter under ``TRITON_INTERPRET=1``); where it cannot run, this says so once and uses ``ref``.
    """
    if impl not in NORM_IMPLS:
        raise ValueError(f"penalty norm impl {impl!r} is not one of {NORM_IMPLS}")
    squared = kind in ("r1", "r2", "r1r2")
    # r1r2: ``grads`` holds the reals' rows then the fakes' (as many of each); R1 + R2 is the sum of the two
    # halves' means, twice the mean over all rows
    sides = 2.0 if kind == "r1r2" else 1.0
    if impl == "triton":
        ok, why = gp_triton.available(grads)
        if ok:
            rows = gp_triton.penalty_rows_triton(grads, center=center, one_sided=one_sided, squared=squared)
            return sides * rows.mean()
        _warn_once(f"triton:{why}", f"gradient penalty: Triton norm kernel unavailable ({why}); using impl='ref'")
    return sides * penalty_rows_ref(grads, center=center, one_sided=one_sided, squared=squared).mean()


def draw_alpha(real: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample interpolation weights [B, 1, ...] drawn once, so every impl sees the same points."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    return torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)


def interpolate(
    real: Tensor, fake: Tensor, generator: torch.Generator | None = None, alpha: Tensor | None = None
) -> Tensor:
    """Random points on the lines between paired real and fake samples (WGAN-GP); one lerp kernel."""
    if alpha is None:
        alpha = draw_alpha(real, generator)
    return torch.lerp(fake.detach(), real.detach(), alpha)  # [B, ...]


def _penalty_points(
    kind: str, real: Tensor, fake: Tensor, generator: torch.Generator | None, alpha: Tensor | None
) -> Tensor:
    """Detached points the penalty is taken at: interpolates (wgan), reals (r1), fakes (r2), or the reals then the
    fakes (r1r2, [2B, ...])."""
    if kind == "wgan":
        return interpolate(real, fake, generator, alpha)
    if kind == "r1r2":
        return torch.cat([real.detach(), fake.detach()])
    return (real if kind == "r1" else fake).detach()


def gradient_penalty(
    critic: nn.Module,
    real: Tensor,
    fake: Tensor,
    *,
    kind: str = "wgan",
    one_sided: bool = False,
    grad_scale: Tensor | None = None,
    generator: torch.Generator | None = None,
    alpha: Tensor | None = None,
) -> Tensor:
    """Reference penalty: one extra critic forward on the penalised points, ``autograd.grad``, mean penalty.

    Args:
        critic: maps [B, ...] inputs to [B] or [B, 1] scores.
        real, fake: same-shape batches; fake is detached here.
        kind: ``wgan`` (interpolates, target norm 1), ``r1`` (reals, norm^2), ``r2`` (fakes, norm^2), ``r1r2``
            (R1 + R2: both, one double backward).
        grad_scale: the fp16 GradScaler's current scale (a tensor), or None without fp16.
        alpha: pre-drawn interpolation weights [B, 1, ...] (wgan); drawn from ``generator`` when None.
    """
    _check_kind(kind)
    points = _penalty_points(kind, real, fake, generator, alpha)
    with _eager():
        _, grads = _input_gradients(critic, points, grad_scale)
    return penalty_from_gradients(grads, one_sided=one_sided, kind=kind)


def batch_coupling_layers(critic: nn.Module) -> list[str]:
    """Names of the layers that mix samples of a batch (every BatchNorm flavour, SyncBatchNorm included)."""
    modules = critic.named_modules()
    return [f"{name or '<root>'} ({type(m).__name__})" for name, m in modules if isinstance(m, _BatchNorm)]


def _refuse_batch_coupling(critic: nn.Module, impl: str) -> None:
    """Batched forwards change what a batch-norm critic computes, and the penalty's per-sample meaning."""
    found = batch_coupling_layers(critic)
    if found:
        raise ValueError(
            f"critic_scores_and_penalty(impl={impl!r}) pushes several batches through one critic forward, "
            f"which changes the result when a layer couples the samples of a batch; the critic has "
            f"{', '.join(found)}. Use a per-sample norm (layer/instance) for a penalised critic, or impl='ref'."
        )


ScoresAndPenalty = tuple[Tensor, Tensor, Tensor]  # real scores [B], fake scores [B], penalty []
_Grads = tuple[Tensor, Tensor, Tensor]  # real scores [B], fake scores [B], input gradients [B, ...]


def _as_they_are(points: Tensor) -> Tensor:
    return points


def _through(augment: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The r1r2 points [2B] (reals, then fakes, un-augmented) as the critic sees them: each half through
    ``augment``, the fakes drawn first as everywhere (``augmented``), so the input gradient reaches the images
    themselves through the augmentation."""
    def view(points: Tensor) -> Tensor:
        n = points.shape[0] // 2
        fake, real = augmented(augment, points[n:], points[:n])
        return torch.cat([real, fake])

    return view


def _scores_ref(
    critic: nn.Module, real: Tensor, fake: Tensor, points: Tensor, kind: str, gs: Tensor | None,
    view: Callable[[Tensor], Tensor] = _as_they_are,
) -> _Grads:
    """Three separate forwards: real, fake, penalised points (r1r2: the reals and the fakes, which are the
    penalised points, each its own forward)."""
    if kind == "r1r2":
        n = real.shape[0]
        points = points.requires_grad_(True)
        seen = view(points)  # what the critic sees of them (through the augmentation), differentiable
        real_scores, fake_scores = critic(seen[:n]).reshape(-1), critic(seen[n:]).reshape(-1)  # [B], [B]
        return real_scores, fake_scores, _input_gradients_of(torch.cat([real_scores, fake_scores]), points, gs)
    real_scores = critic(real).reshape(-1)  # [B]
    fake_scores = critic(fake.detach()).reshape(-1)  # [B]
    _, grads = _input_gradients(critic, points, gs)
    return real_scores, fake_scores, grads


def _scores_fused(
    critic: nn.Module, real: Tensor, fake: Tensor, points: Tensor, kind: str, gs: Tensor | None,
    view: Callable[[Tensor], Tensor] = _as_they_are,
) -> _Grads:
    """ONE forward over the batch-concatenated inputs; the input gradient of the penalised rows only.

    For r1/r2 the penalised points are the reals/fakes themselves, so their scores serve both the loss and
    the penalty ([2B] forward); for wgan the interpolates ride along ([3B] forward).
    """
    n = real.shape[0]
    points = points.requires_grad_(True)
    if kind == "r1r2":  # the reals and fakes are the points: one [2B] forward serves loss and penalty
        scores = critic(view(points)).reshape(-1)  # [2B]
        return scores[:n], scores[n:], _input_gradients_of(scores, points, gs)
    if kind == "wgan":
        scores = critic(torch.cat([real, fake.detach(), points])).reshape(-1)  # [3B]
        penalised = scores[2 * n :]
    elif kind == "r1":
        scores = critic(torch.cat([points, fake.detach()])).reshape(-1)  # [2B], reals are the points
        penalised = scores[:n]
    else:
        scores = critic(torch.cat([real, points])).reshape(-1)  # [2B], fakes are the points
        penalised = scores[n : 2 * n]
    return scores[:n], scores[n : 2 * n], _input_gradients_of(penalised, points, gs)


def _scores_split(
    critic: nn.Module, real: Tensor, fake: Tensor, points: Tensor, kind: str, gs: Tensor | None,
    view: Callable[[Tensor], Tensor] = _as_they_are,
) -> _Grads:
    """Two forwards: the unpenalised points together, the penalised ones alone (their own double backward)."""
    n = real.shape[0]
    points = points.requires_grad_(True)
    if kind == "r1r2":  # nothing is unpenalised: the one forward of both is the fused path's
        scores = critic(view(points)).reshape(-1)  # [2B]
        return scores[:n], scores[n:], _input_gradients_of(scores, points, gs)
    if kind == "wgan":
        scores = critic(torch.cat([real, fake.detach()])).reshape(-1)  # [2B]
        real_scores, fake_scores = scores[:n], scores[n:]
        penalised = critic(points).reshape(-1)  # [B]
    elif kind == "r1":
        real_scores = penalised = critic(points).reshape(-1)  # [B], shared by loss and penalty
        fake_scores = critic(fake.detach()).reshape(-1)
    else:
        real_scores = critic(real).reshape(-1)
        fake_scores = penalised = critic(points).reshape(-1)
    return real_scores, fake_scores, _input_gradients_of(penalised, points, gs)


_PATHS = {"ref": _scores_ref, "fused": _scores_fused, "split": _scores_split}


def augmented(augment: Callable[[Tensor], Tensor] | None, fake: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
    """(fake, real) as the critic sees them through ``augment`` (the run's augmentation pipe), fakes drawn
    first: one order everywhere, so a step draws the same augmentations whichever path computes it."""
    if augment is None:
        return fake, real
    fake = augment(fake)
    return fake, augment(real)


def critic_scores_and_penalty(
    critic: nn.Module,
    real: Tensor,
    fake: Tensor,
    *,
    kind: str = "wgan",
    one_sided: bool = False,
    impl: str = "auto",
    grad_scale: Tensor | None = None,
    generator: torch.Generator | None = None,
    alpha: Tensor | None = None,
    norm_impl: str = "ref",
    augment: Callable[[Tensor], Tensor] | None = None,
    through_augment: bool = False,
) -> ScoresAndPenalty:
    """All of a penalised critic step's forwards: (real scores [B], fake scores [B], penalty []).

    Every impl gives the same values and the same parameter gradients (fp32, up to summation order) for a
    critic without batch coupling, given the same ``alpha`` (or the same ``generator`` state).

    Args:
        impl: ``ref`` (three forwards, plain PyTorch), ``fused`` (one forward of real+fake+points),
            ``split`` (real+fake in one forward, points in another), ``auto`` = ``DEFAULT_IMPL``.
            ``fused`` and ``split`` refuse critics with batch-norm layers.
        grad_scale: the fp16 GradScaler's current scale (a tensor), or None.
        alpha: pre-drawn interpolation weights [B, 1, ...] for ``wgan``.
        norm_impl: ``ref`` or ``triton`` for the per-sample norm penalty (see ``penalty_from_gradients``).
        augment: the run's augmentation pipe (ops/augment_pipe.py), applied here to fakes then reals before
            every forward; the penalty is taken at the augmented images (and, for ``wgan``, between them).
        through_augment: ``r1r2`` only: the penalty is the gradient w.r.t. the un-augmented images, taken
            through the augmentation (R3GAN as published), instead of at the augmented images.
    Notes:
        fake is detached (this is the critic's step). A spectral-norm critic runs one power iteration per
        forward, so ``ref`` (3 forwards) and ``fused`` (1) leave its ``u`` vectors in different states.
    """
    _check_kind(kind)
    impl = DEFAULT_IMPL if impl == "auto" else impl
    if impl not in _PATHS:
        raise ValueError(f"critic_scores_and_penalty impl {impl!r} is not one of {IMPLS} or 'auto'")
    view = _as_they_are
    if through_augment and augment is not None:
        if kind != "r1r2":
            raise ValueError(f"through_augment is for r1r2 (the penalty at the un-augmented images), not {kind!r}")
        view = _through(augment)
    else:
        fake, real = augmented(augment, fake, real)
    points = _penalty_points(kind, real, fake, generator, alpha)  # [B, ...], detached
    if impl == "ref":
        with _eager():
            real_scores, fake_scores, grads = _scores_ref(critic, real, fake, points, kind, grad_scale, view)
    else:
        _refuse_batch_coupling(critic, impl)
        with _eager(), masked_activations():
            real_scores, fake_scores, grads = _PATHS[impl](critic, real, fake, points, kind, grad_scale, view)
    penalty = penalty_from_gradients(grads, one_sided=one_sided, kind=kind, impl=norm_impl)
    return real_scores, fake_scores, penalty
