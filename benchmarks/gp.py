"""Critic-step cost of the gradient penalty: no penalty vs the plain reference vs our paths, side by side.

    python benchmarks/gp.py [--batch 64] [--rounds 9] [--norm none|layer] [--threads N] [--kernels]
                            [--device cpu|cuda] [--precision no|bf16] [--resolution 32]
                            [--every 1 4 16] [--kind wgan|r1|r2]

A DCGAN-style 32x32 critic (conv 4x4 stride 2: 3->64->128->256, LeakyReLU(0.2), optional layer norm,
linear head) takes full D steps (zero_grad, forwards, backward, Adam step) on fixed real and fake batches
(the generator's forward is left out: it is the same for every variant). The variants run interleaved,
one of each per round; the median, the minimum and the median process-CPU time per variant are reported,
because the machine is shared and noisy.
Ratios are against the fastest D step without a penalty (real and fake in one forward).

Lazy regularisation (``method.gp_every``): ``--every K ...`` times intervals of K D steps, the first with
the penalty at gain K, the other K - 1 without, as ``methods.common.Adversary`` runs them (real and fake in
separate forwards), and prints the amortised cost per D step beside the dense one, with the prediction
(K - 1 + r) / K from the dense ratio r. The recipes' default K (``method.gp_every`` of
``recipes/digits/wgan_gp.yaml``) is always among them, and its amortised cost is printed last beside the dense
one, against the goal of at most 1.15x a D step without penalty. ``lazy_overheads`` is that measurement as a
function (the lazy penalty report, ``acl-dist repro lazy``, calls it on the digits recipes' critic).

On a GPU (``--device cuda``) each timing ends with a synchronise, and ``--precision bf16`` runs the critic
under bf16 autocast (the penalty's sums and norms stay fp32). ``--resolution 64`` adds a conv layer per
doubling.

``--kernels`` also times the per-sample norm penalty (forward + backward on [B, 3, 32, 32] gradients)
eager vs ``torch.compile`` vs Triton where Triton can run, to choose the penalty kernel.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from acl_dist.ops import gp_triton
from acl_dist.ops.gradient_penalty import (
    DEFAULT_IMPL,
    critic_scores_and_penalty,
    lazy_gain,
    penalty_from_gradients,
    penalty_rows_ref,
)

LAMBDA = 10.0
GOAL = 1.15  # issue 16: amortised cost per D step at the recipes' default k, over a D step without penalty
DEFAULT_RECIPE = "recipes/digits/wgan_gp.yaml"


def recipe_default_every() -> int:
    """The penalised recipes' default ``method.gp_every`` (read from the digits WGAN-GP recipe, so this
    benchmark follows the recipe when its default moves)."""
    import os

    from acl_dist.config import load_recipe

    return load_recipe(os.path.join(os.path.dirname(__file__), "..", DEFAULT_RECIPE)).method.gp_every


def build_critic(norm: str, resolution: int = 32) -> nn.Sequential:
    """DCGAN critic: [B, 3, R, R] -> [B, 1] (R = 32: 3->64->128->256, one more 256 layer per doubling)."""
    layers: list[nn.Module] = []
    channels = 3
    widths = [64, 128, 256] + [256] * max(0, resolution.bit_length() - 6)
    for out in widths:  # R -> R/2 -> ... -> 4
        layers.append(nn.Conv2d(channels, out, 4, 2, 1))
        if norm == "layer":
            layers.append(nn.GroupNorm(1, out))
        layers.append(nn.LeakyReLU(0.2))
        channels = out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(256 * 4 * 4, 1))


NO_PENALTY = ("no penalty, separate forwards", "no penalty, one forward")
DENSE = f"default path (impl={DEFAULT_IMPL})"


def lazy_name(every: int) -> str:
    return f"default path, lazy every {every} (amortised)"


def make_variants(
    critic: nn.Module, real: Tensor, fake: Tensor, precision: str = "no", everies: tuple[int, ...] = (4,),
    kind: str = "wgan", all_impls: bool = True,
) -> dict[str, tuple[Callable[[], None], int]]:
    """name -> (callable running some D steps, how many steps one call runs).

    ``everies``: lazy intervals to time (k > 1; k = 1 is the dense default path). ``all_impls=False`` leaves
    out the ref and fused paths (the lazy report times only what the trainer runs)."""
    opt = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.5, 0.9))
    n = real.shape[0]
    autocast = lambda: torch.autocast(real.device.type, dtype=torch.bfloat16,  # noqa: E731
                                      enabled=precision == "bf16")

    def finish(loss: Tensor) -> None:
        loss.backward()
        opt.step()

    def no_penalty_separate() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = critic(fake).float().mean() - critic(real).float().mean()
        finish(loss)

    def no_penalty_one_forward() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast():
            scores = critic(torch.cat([real, fake])).reshape(-1).float()  # [2B]
        finish(scores[n:].mean() - scores[:n].mean())

    def with_penalty(impl: str, gain: float = 1.0) -> None:
        opt.zero_grad(set_to_none=True)
        with autocast():
            r, f, pen = critic_scores_and_penalty(critic, real, fake, kind=kind, impl=impl)
            loss = f.float().mean() - r.float().mean() + (LAMBDA * gain) * pen
        finish(loss)

    def lazy(every: int) -> None:  # one call = one interval: 1 penalised step + (every - 1) plain ones
        for step in range(every):  # the plain steps as the trainer runs them: separate forwards
            gain = lazy_gain(step, every)
            with_penalty(DEFAULT_IMPL, gain) if gain else no_penalty_separate()

    variants = {NO_PENALTY[0]: (no_penalty_separate, 1), NO_PENALTY[1]: (no_penalty_one_forward, 1)}
    if all_impls:
        variants["reference penalty (impl=ref)"] = (lambda: with_penalty("ref"), 1)
        variants["one-forward fused (impl=fused)"] = (lambda: with_penalty("fused"), 1)
    variants[DENSE] = (lambda: with_penalty(DEFAULT_IMPL), 1)
    for every in sorted({k for k in everies if k > 1}):
        variants[lazy_name(every)] = (lambda every=every: lazy(every), every)
    return variants


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_interleaved(
    variants: dict[str, tuple[Callable[[], None], int]], rounds: int
) -> dict[str, tuple[float, float, float]]:
    """(median wall, min wall, median process-CPU) ms per D step of each variant.

    One call of each per round, order rotated every round. The minimum and the CPU time are the robust
    figures on a shared machine: other processes inflate wall time, not the work done.
    """
    names = list(variants)
    for name in names:  # warm-up: allocator, oneDNN primitive caches, cuDNN autotuning
        variants[name][0]()
    _sync()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, steps = variants[name]
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            _sync()
            wall[name].append((time.perf_counter() - start) * 1e3 / steps)
            cpu[name].append((time.process_time() - start_cpu) * 1e3 / steps)
    return {n: (statistics.median(wall[n]), min(wall[n]), statistics.median(cpu[n])) for n in names}


def _base(results: dict[str, tuple[float, float, float]]) -> list[float]:
    """The best penalty-free D step, per statistic (median wall, min wall, cpu)."""
    return [min(results[NO_PENALTY[0]][i], results[NO_PENALTY[1]][i]) for i in range(3)]


def report(results: dict[str, tuple[float, float, float]], header: str) -> None:
    """Print ms per D step and the overhead against the best penalty-free D step, per statistic."""
    base = _base(results)
    print(header)
    print(f"  {'variant':42s} {'median ms':>10s} {'min ms':>8s} {'cpu ms':>8s}   ratios to no-penalty (median/min/cpu)")
    for name, stats in results.items():
        ratios = "/".join(f"{v / b:.2f}" for v, b in zip(stats, base))
        print(f"  {name:42s} {stats[0]:10.1f} {stats[1]:8.1f} {stats[2]:8.1f}   {ratios}")


class Amortised(NamedTuple):
    """Cost of a D step with the penalty every k, per statistic (median wall, min wall, process CPU)."""

    measured: list[float]  # over the best D step without penalty (the ratios above)
    predicted: list[float]  # (k - 1 + r) / k from the dense ratio r, over the same base
    over_plain: list[float]  # over the trainer's own plain D step (real and fake in separate forwards)


def amortised(results: dict[str, tuple[float, float, float]], everies: tuple[int, ...]) -> dict[int, Amortised]:
    """{k: Amortised} for each interval; k = 1 is the dense path. The prediction assumes the plain steps
    cost the best penalty-free step; ``over_plain`` is the penalty's own share when they do not."""
    base = _base(results)
    dense = [v / b for v, b in zip(results[DENSE], base)]
    out = {}
    for every in sorted(set(everies)):
        stats = results[DENSE if every == 1 else lazy_name(every)]
        out[every] = Amortised([v / b for v, b in zip(stats, base)], [(every - 1 + r) / every for r in dense],
                               [v / p for v, p in zip(stats, results[NO_PENALTY[0]])])
    return out


def lazy_overheads(
    critic: nn.Module, real: Tensor, fake: Tensor, everies: tuple[int, ...], rounds: int, kind: str = "wgan",
    precision: str = "no",
) -> dict[int, Amortised]:
    """Time the penalty-free, dense and lazy D steps side by side; ``amortised`` of the result."""
    variants = make_variants(critic, real, fake, precision, everies, kind, all_impls=False)
    return amortised(time_interleaved(variants, rounds), everies)


def _show(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def report_amortised(overheads: dict[int, Amortised], kind: str, default: int | None = None) -> None:
    """Print the amortised penalty cost per D step for each interval k, beside dense (k = 1), then the
    recipes' ``default`` k against dense and the goal."""
    print(f"  amortised {kind} penalty cost per D step, every k (ratios median/min/cpu):")
    for every, cost in overheads.items():
        label = f"every {every:2d}" + (" (dense)" if every == 1 else " (default)" if every == default else "")
        print(f"    {label:18s} {_show(cost.measured):16s} predicted (k-1+r)/k {_show(cost.predicted):16s} "
              f"over the trainer's plain step (separate forwards) {_show(cost.over_plain)}")
    if default is not None and default in overheads and 1 in overheads:
        cost, dense = overheads[default], overheads[1]
        met = ("met" if cost.measured[0] <= GOAL else "met over the plain step" if cost.over_plain[0] <= GOAL
               else "not met")
        print(f"  recipes' default k = {default} ({DEFAULT_RECIPE}): {cost.measured[0]:.2f}x a D step without "
              f"penalty (median; {cost.over_plain[0]:.2f}x the trainer's plain step) vs dense "
              f"{dense.measured[0]:.2f}x; goal <= {GOAL}x: {met}")


def time_norm_kernels(batch: int, device: torch.device, resolution: int = 32, reps: int = 50) -> None:
    """Per-sample norm penalty forward+backward on [B, 3, R, R]: eager vs torch.compile (vs Triton on a GPU)."""
    grads = torch.randn(batch, 3, resolution, resolution, device=device, requires_grad=True)

    def eager(g: Tensor) -> Tensor:
        return penalty_rows_ref(g, center=1.0, one_sided=False, squared=False).mean()

    fns = {"eager": eager}
    if device.type == "cuda" and gp_triton.available(grads)[0]:
        fns["triton"] = lambda g: penalty_from_gradients(g, impl="triton")
    try:
        start = time.perf_counter()
        compiled = torch.compile(eager, dynamic=False)
        compiled(grads).backward()
        print(f"  torch.compile first call (compile) {time.perf_counter() - start:.1f} s")
        fns["torch.compile"] = compiled
    except Exception as error:  # report, never hide
        print(f"  torch.compile unavailable here: {type(error).__name__}: {str(error).splitlines()[0]}")
    for name, fn in fns.items():
        times = []
        fn(grads).backward()
        for _ in range(reps):
            _sync()
            start = time.perf_counter()
            fn(grads).backward()
            _sync()
            times.append((time.perf_counter() - start) * 1e3)
        print(f"  norm penalty fwd+bwd {name:14s} {statistics.median(times):7.3f} ms")
    if device.type == "cpu":
        print("  (Triton runs on CPU only in its interpreter, TRITON_INTERPRET=1: correctness, not speed.)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--norm", choices=("none", "layer", "both"), default="both")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads; default: as is")
    parser.add_argument("--kernels", action="store_true", help="also time the norm-penalty kernels")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="no", choices=("no", "bf16"))
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--every", type=int, nargs="+", default=[1, 4, 16],
                        help="lazy penalty intervals k (method.gp_every) to amortise; 1 is dense; the recipes' "
                             "default k and 1 are always added")
    parser.add_argument("--kind", default="wgan", choices=("wgan", "r1", "r2"), help="penalty kind (method.gp_kind)")
    args = parser.parse_args()
    if min(args.every) < 1:
        parser.error("--every: intervals must be >= 1")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (args.batch, 3, args.resolution, args.resolution)
    real, fake = torch.randn(shape, device=device), torch.randn(shape, device=device)  # [B, 3, R, R]
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, threads {torch.get_num_threads()}"
    print(f"torch {torch.__version__}, {where}, batch {args.batch}, {args.resolution}x{args.resolution}, "
          f"precision {args.precision}, penalty {args.kind}, {args.rounds} interleaved rounds; cpu = process CPU "
          f"time (all threads)")
    default = recipe_default_every()
    everies = tuple(sorted({1, default, *args.every}))
    for norm in ("none", "layer") if args.norm == "both" else (args.norm,):
        critic = build_critic(norm, args.resolution).to(device)
        results = time_interleaved(make_variants(critic, real, fake, args.precision, everies, args.kind),
                                   args.rounds)
        report(results, f"critic norm={norm}")
        report_amortised(amortised(results, everies), args.kind, default)
    if args.kernels:
        time_norm_kernels(args.batch, device, args.resolution)


if __name__ == "__main__":
    main()
