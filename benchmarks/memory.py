"""Memory of a critic+generator step per resolution: plain vs activation checkpointing vs ZeRO.

    python benchmarks/memory.py [--resolutions 64 128 256 512] [--batch 8] [--ranks 8] [--device cpu|cuda]
                                [--precision no|bf16] [--step] [--arch dcgan|r3gan] [--blocks 2]

``--arch dcgan``: ACL-GAN-GP's DCGAN-style nets (base 64, max 512 channels); ``--arch r3gan``: R3GAN's nets at
the same widths, ``--blocks`` residual blocks per resolution (the r3gan_ffhq recipes' nets).

What is measured, side by side for each resolution:
- activations: bytes autograd saves for backward in one generator forward + critic forward (counted with
  ``saved_tensors_hooks``, exact on any device), plain vs ``model.checkpoint_activations``;
- model state per rank: fp32 weights + gradients + Adam moments of G and D, and what ZeRO-2 leaves on one of
  ``--ranks`` ranks (weights whole; gradients and optimizer states sharded) and ZeRO-3 (weights sharded too),
  computed from the parameter counts. ZeRO-3 cannot train a penalised critic (its double backward; see
  validation._check_zero3), so its column is for the same nets trained without a penalty (acl_gan's Gx and
  Dx, gan's G and D);
- on CUDA only: the peak allocated memory of a real D step with the penalty and a G step, the first of each
  (so Adam's moments are allocated within it), under ``--precision`` autocast
  (``torch.cuda.max_memory_allocated``), plain vs checkpointing; a configuration that runs out of memory
  prints OOM and the next one still runs. ``--step`` runs that step on the CPU too, unmeasured (a check that
  it runs).
Ratios are printed against the plain configuration.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from acl_dist.nets.conv import ConvDiscriminator, ConvGenerator  # noqa: E402
from acl_dist.nets.r3gan import R3Discriminator, R3Generator  # noqa: E402
from acl_dist.ops.gradient_penalty import critic_scores_and_penalty  # noqa: E402

MIB = 2 ** 20


ARCH = {"name": "dcgan", "blocks": 2}  # set by main(): which nets build() makes


def build(resolution: int, checkpoint: bool, device: torch.device):
    torch.manual_seed(0)
    if ARCH["name"] == "r3gan":
        blocks = ARCH["blocks"]
        g = R3Generator(128, resolution, 3, 64, 512, blocks, checkpoint_activations=checkpoint).to(device)
        d = R3Discriminator(resolution, 3, 64, 512, blocks, checkpoint_activations=checkpoint).to(device)
        return g, d
    g = ConvGenerator(128, resolution, 3, 64, 512, "batch", checkpoint_activations=checkpoint).to(device)
    d = ConvDiscriminator(resolution, 3, 64, 512, "layer", checkpoint_activations=checkpoint).to(device)
    return g, d


def saved_activation_bytes(g, d, batch: int, device: torch.device) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        d(g(torch.randn(batch, 128, device=device)))
    return total


def model_state_bytes(g, d, ranks: int) -> tuple[int, int, int]:
    """(plain, ZeRO-2, ZeRO-3) bytes per rank of fp32 weights, gradients and Adam's two moments."""
    params = sum(p.numel() for net in (g, d) for p in net.parameters())
    plain = params * 4 * 4  # weights, gradients, Adam exp_avg, exp_avg_sq (fp32)
    zero2 = params * 4 + params * 4 * 3 // ranks  # weights whole; gradients + both moments sharded
    zero3 = params * 4 * 4 // ranks  # everything sharded (a layer's weights are gathered only while it runs)
    return plain, zero2, zero3


def real_step(g, d, batch: int, device: torch.device, precision: str = "no") -> None:
    """A first D step with the penalty and a first G step, Adam included, under ``precision`` autocast."""
    opt_d, opt_g = torch.optim.Adam(d.parameters()), torch.optim.Adam(g.parameters())
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    real = torch.randn(batch, 3, g.resolution, g.resolution, device=device)
    with torch.no_grad(), autocast:
        fake = g(torch.randn(batch, 128, device=device)).float()
    with autocast:
        r, f, gp = critic_scores_and_penalty(d, real, fake, impl="split")
        loss = f.float().mean() - r.float().mean() + 10 * gp
    loss.backward()
    opt_d.step()
    opt_d.zero_grad(set_to_none=True)
    with autocast:
        loss = -d(g(torch.randn(batch, 128, device=device))).float().mean()
    loss.backward()
    opt_g.step()


def cuda_peak_bytes(g, d, batch: int, device: torch.device, precision: str = "no") -> int | None:
    """``torch.cuda.max_memory_allocated`` over :func:`real_step` (the nets' weights included); None: OOM."""
    torch.cuda.reset_peak_memory_stats(device)
    try:
        real_step(g, d, batch, device, precision)
        torch.cuda.synchronize(device)
    except torch.OutOfMemoryError:
        return None
    return torch.cuda.max_memory_allocated(device)


def _mib(value: int | None, width: int) -> str:
    return f"{'OOM':>{width}}" if value is None else f"{value / MIB:>{width}.1f}"


def _ratio(a: int | None, b: int | None) -> str:
    return f"{a / b:>5.1f}x" if a and b else f"{'-':>6}"


def row(res: int, args: argparse.Namespace, device: torch.device) -> str:
    """One resolution: activations, model state per rank, and (CUDA) the peak of a real step, plain vs ckpt."""
    acts, peaks = [], []
    for checkpoint in (False, True):
        g, d = build(res, checkpoint, device)
        acts.append(saved_activation_bytes(g, d, args.batch, device))
        if device.type == "cuda":
            peaks.append(cuda_peak_bytes(g, d, args.batch, device, args.precision))
        elif args.step:
            real_step(g, d, args.batch, device, args.precision)  # runs, unmeasured
        del g, d
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    plain, zero2, zero3 = model_state_bytes(*build(res, False, torch.device("meta")), args.ranks)
    line = (f"{res:>5} {_mib(acts[0], 10)} {_mib(acts[1], 10)} {_ratio(acts[0], acts[1])} {_mib(plain, 12)} "
            f"{_mib(zero2, 12)} {_ratio(plain, zero2)} {_mib(zero3, 12)} {_ratio(plain, zero3)}")
    if peaks:
        line += f" {_mib(peaks[0], 11)} {_mib(peaks[1], 10)} {_ratio(peaks[0], peaks[1])}"
    return line


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--ranks", type=int, default=8, help="ranks ZeRO-2 shards over")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="no", choices=("no", "bf16"), help="autocast of the real step")
    p.add_argument("--step", action="store_true", help="off CUDA: run the real step too (unmeasured)")
    p.add_argument("--arch", default="dcgan", choices=("dcgan", "r3gan"))
    p.add_argument("--blocks", type=int, default=2, help="r3gan: residual blocks per resolution")
    args = p.parse_args()
    ARCH.update(name=args.arch, blocks=args.blocks)
    device = torch.device(args.device)
    nets = "ACL-GAN-GP" if args.arch == "dcgan" else f"R3GAN ({args.blocks} blocks per resolution)"
    print(f"{nets} G+D (base 64, max 512 channels), batch {args.batch}, device {device}, ZeRO over "
          f"{args.ranks} ranks; real step in {args.precision}; MiB")
    print(f"{'res':>5} {'act plain':>10} {'act ckpt':>10} {'ratio':>6} {'state plain':>12} {'state zero2':>12} "
          f"{'ratio':>6} {'state zero3':>12} {'ratio':>6}"
          + (f" {'peak plain':>11} {'peak ckpt':>10} {'ratio':>6}" if device.type == "cuda" else ""))
    for res in args.resolutions:
        print(row(res, args, device), flush=True)
    if args.step and device.type != "cuda":
        print("real steps ran (peaks are measured on CUDA only)")


if __name__ == "__main__":
    main()
