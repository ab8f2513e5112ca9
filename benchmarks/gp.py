"""Critic-step cost of the gradient penalty: no penalty vs the plain reference vs our paths, side by side.

    python benchmarks/gp.py [--batch 64] [--rounds 9] [--norm none|layer] [--threads N] [--kernels]

A DCGAN-style 32x32 critic (conv 4x4 stride 2: 3->64->128->256, LeakyReLU(0.2), optional layer norm,
linear head) takes full D steps (zero_grad, forwards, backward, Adam step) on fixed real and fake batches
(the generator's forward is left out: it is the same for every variant). The variants run interleaved,
one of each per round; the median, the minimum and the median process-CPU time per variant are reported,
because the machine is shared and noisy.
Ratios are against the fastest D step without a penalty (real and fake in one forward).

``--kernels`` also times the per-sample norm penalty (forward + backward on [B, 3, 32, 32] gradients)
eager vs ``torch.compile`` vs Triton where Triton can run, to choose the penalty kernel.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import Tensor, nn

from acl_dist.ops.gradient_penalty import DEFAULT_IMPL, critic_scores_and_penalty, lazy_gain, penalty_rows_ref

LAMBDA = 10.0


def build_critic(norm: str) -> nn.Sequential:
    """DCGAN 32x32 critic: [B, 3, 32, 32] -> [B, 1]."""
    layers: list[nn.Module] = []
    channels = 3
    for out in (64, 128, 256):  # 32 -> 16 -> 8 -> 4
        layers.append(nn.Conv2d(channels, out, 4, 2, 1))
        if norm == "layer":
            layers.append(nn.GroupNorm(1, out))
        layers.append(nn.LeakyReLU(0.2))
        channels = out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(256 * 4 * 4, 1))


def make_variants(critic: nn.Module, real: Tensor, fake: Tensor) -> dict[str, tuple[Callable[[], None], int]]:
    """name -> (callable running some D steps, how many steps one call runs)."""
    opt = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.5, 0.9))
    n = real.shape[0]

    def finish(loss: Tensor) -> None:
        loss.backward()
        opt.step()

    def no_penalty_separate() -> None:
        opt.zero_grad(set_to_none=True)
        finish(critic(fake).mean() - critic(real).mean())

    def no_penalty_one_forward() -> None:
        opt.zero_grad(set_to_none=True)
        scores = critic(torch.cat([real, fake])).reshape(-1)  # [2B]
        finish(scores[n:].mean() - scores[:n].mean())

    def with_penalty(impl: str, gain: float = 1.0) -> None:
        opt.zero_grad(set_to_none=True)
        r, f, pen = critic_scores_and_penalty(critic, real, fake, impl=impl)
        finish(f.mean() - r.mean() + (LAMBDA * gain) * pen)

    def lazy(every: int) -> None:  # one call = one interval: 1 penalised step + (every - 1) plain ones
        for step in range(every):
            gain = lazy_gain(step, every)
            with_penalty(DEFAULT_IMPL, gain) if gain else no_penalty_one_forward()

    return {
        "no penalty, separate forwards": (no_penalty_separate, 1),
        "no penalty, one forward": (no_penalty_one_forward, 1),
        "reference penalty (impl=ref)": (lambda: with_penalty("ref"), 1),
        "one-forward fused (impl=fused)": (lambda: with_penalty("fused"), 1),
        f"default path (impl={DEFAULT_IMPL})": (lambda: with_penalty(DEFAULT_IMPL), 1),
        f"default path, lazy every 4 (amortised)": (lambda: lazy(4), 4),
    }


def time_interleaved(
    variants: dict[str, tuple[Callable[[], None], int]], rounds: int
) -> dict[str, tuple[float, float, float]]:
    """(median wall, min wall, median process-CPU) ms per D step of each variant.

    One call of each per round, order rotated every round. The minimum and the CPU time are the robust
    figures on a shared machine: other processes inflate wall time, not the work done.
    """
    names = list(variants)
    for name in names:  # warm-up: allocator, oneDNN primitive caches
        variants[name][0]()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, steps = variants[name]
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append((time.perf_counter() - start) * 1e3 / steps)
            cpu[name].append((time.process_time() - start_cpu) * 1e3 / steps)
    return {n: (statistics.median(wall[n]), min(wall[n]), statistics.median(cpu[n])) for n in names}


def report(results: dict[str, tuple[float, float, float]], header: str) -> None:
    """Print ms per D step and the overhead against the best penalty-free D step, per statistic."""
    base = [min(results["no penalty, separate forwards"][i], results["no penalty, one forward"][i]) for i in range(3)]
    print(header)
    print(f"  {'variant':42s} {'median ms':>10s} {'min ms':>8s} {'cpu ms':>8s}   ratios to no-penalty (median/min/cpu)")
    for name, stats in results.items():
        ratios = "/".join(f"{v / b:.2f}" for v, b in zip(stats, base))
        print(f"  {name:42s} {stats[0]:10.1f} {stats[1]:8.1f} {stats[2]:8.1f}   {ratios}")


def time_norm_kernels(batch: int, reps: int = 50) -> None:
    """Per-sample norm penalty forward+backward on [B, 3, 32, 32]: eager vs torch.compile (vs Triton)."""
    grads = torch.randn(batch, 3, 32, 32, requires_grad=True)

    def eager(g: Tensor) -> Tensor:
        return penalty_rows_ref(g, center=1.0, one_sided=False, squared=False).mean()

    fns = {"eager": eager}
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
        for _ in range(reps):
            start = time.perf_counter()
            fn(grads).backward()
            times.append((time.perf_counter() - start) * 1e3)
        print(f"  norm penalty fwd+bwd {name:14s} {statistics.median(times):7.3f} ms")
    print("  (Triton runs on CPU only in its interpreter, TRITON_INTERPRET=1: correctness, not speed.)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--norm", choices=("none", "layer", "both"), default="both")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads; default: as is")
    parser.add_argument("--kernels", action="store_true", help="also time the norm-penalty kernels")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    real = torch.randn(args.batch, 3, 32, 32)  # [B, 3, 32, 32]
    fake = torch.randn(args.batch, 3, 32, 32)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"{args.rounds} interleaved rounds; cpu = process CPU time (all threads)")
    for norm in ("none", "layer") if args.norm == "both" else (args.norm,):
        results = time_interleaved(make_variants(build_critic(norm), real, fake), args.rounds)
        report(results, f"critic norm={norm}")
    if args.kernels:
        time_norm_kernels(args.batch)


if __name__ == "__main__":
    main()
