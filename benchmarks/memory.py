"""Memory of an ACL-GAN-GP critic+generator step per resolution: plain vs activation checkpointing vs ZeRO.

    python benchmarks/memory.py [--resolutions 64 128 256 512] [--batch 8] [--ranks 8] [--device cpu|cuda]

What is measured, side by side for each resolution:
- activations: bytes autograd saves for backward in one generator forward + critic forward (counted with
  ``saved_tensors_hooks``, exact on any device), plain vs ``model.checkpoint_activations``;
- model state per rank: fp32 weights + gradients + Adam moments of G and D, and what ZeRO-2 leaves on one of
  ``--ranks`` ranks (weights whole; gradients and optimizer states sharded) and ZeRO-3 (weights sharded too),
  computed from the parameter counts. ZeRO-3 cannot train a penalised critic (its double backward; see
  validation._check_zero3), so its column is for the same nets trained without a penalty (acl_gan's Gx and
  Dx, gan's G and D);
- on CUDA only: the peak allocated memory of a real D step with the penalty and a G step
  (``torch.cuda.max_memory_allocated``), plain vs checkpointing.
Ratios are printed against the plain configuration.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from acl_dist.nets.conv import ConvDiscriminator, ConvGenerator  # noqa: E402
from acl_dist.ops.gradient_penalty import critic_scores_and_penalty  # noqa: E402

MIB = 2 ** 20


def build(resolution: int, checkpoint: bool, device: torch.device):
    torch.manual_seed(0)
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


def cuda_peak_bytes(g, d, batch: int, device: torch.device) -> int:
    opt_d, opt_g = torch.optim.Adam(d.parameters()), torch.optim.Adam(g.parameters())
    real = torch.randn(batch, 3, g.resolution, g.resolution, device=device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        fake = g(torch.randn(batch, 128, device=device))
    r, f, gp = critic_scores_and_penalty(d, real, fake, impl="split")
    (f.mean() - r.mean() + 10 * gp).backward()
    opt_d.step()
    opt_d.zero_grad(set_to_none=True)
    (-d(g(torch.randn(batch, 128, device=device))).mean()).backward()
    opt_g.step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--ranks", type=int, default=8, help="ranks ZeRO-2 shards over")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"ACL-GAN-GP G+D (base 64, max 512 channels), batch {args.batch}, device {device}, ZeRO over "
          f"{args.ranks} ranks; MiB")
    print(f"{'res':>5} {'act plain':>10} {'act ckpt':>10} {'ratio':>6} {'state plain':>12} {'state zero2':>12} "
          f"{'ratio':>6} {'state zero3':>12} {'ratio':>6}"
          + (f" {'peak plain':>11} {'peak ckpt':>10} {'ratio':>6}" if device.type == "cuda" else ""))
    for res in args.resolutions:
        row = []
        peaks = []
        for checkpoint in (False, True):
            g, d = build(res, checkpoint, device)
            row.append(saved_activation_bytes(g, d, args.batch, device))
            if device.type == "cuda":
                peaks.append(cuda_peak_bytes(g, d, args.batch, device))
            del g, d
        plain_state, zero2_state, zero3_state = model_state_bytes(*build(res, False, torch.device("meta")),
                                                                  args.ranks)
        line = (f"{res:>5} {row[0] / MIB:>10.1f} {row[1] / MIB:>10.1f} {row[0] / row[1]:>5.1f}x "
                f"{plain_state / MIB:>12.1f} {zero2_state / MIB:>12.1f} {plain_state / zero2_state:>5.1f}x "
                f"{zero3_state / MIB:>12.1f} {plain_state / zero3_state:>5.1f}x")
        if peaks:
            line += f" {peaks[0] / MIB:>11.1f} {peaks[1] / MIB:>10.1f} {peaks[0] / peaks[1]:>5.1f}x"
        print(line)


if __name__ == "__main__":
    main()
