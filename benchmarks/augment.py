"""stylegan2-ada's geometric resampling, side by side in one run: acl_dist's wavelet path (two small matrix
products a side, ops/ada_ops.py) against a plain reference of the same maths (reflection padding, a 1-channel
transposed convolution up and a strided convolution down, as one would write it from the published pipe), and
against one bilinear resampling (``data.augment_resample: bilinear``). Forward and backward of a batch, every
geometric operation drawn at ``--p``; the median over ``--rounds`` interleaved rounds; ratios printed.

    python benchmarks/augment.py [--batch 128] [--sizes 32 64] [--channels 1] [--threads 1] [--device cpu]

What an R3GAN step pays for it: ``python benchmarks/train_step.py --recipe recipes/mnist/r3gan.yaml --threads 1
--variant data.augment_resample=wavelet --variant data.augment_resample=bilinear``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from acl_dist.ops import ada_ops


def reference_wavelet(images: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The same resampling written plainly: pad, upsample by transposed convolution, sample, downsample."""
    b, c, h, w = images.shape
    taps = torch.tensor(ada_ops.SYM6, dtype=images.dtype, device=images.device).view(1, 1, -1)
    length = taps.shape[-1]

    def along(x: torch.Tensor, axis: int, op) -> torch.Tensor:
        moved = x.movedim(axis, -1)
        out = op(moved.reshape(-1, 1, moved.shape[-1]))
        return out.reshape(*moved.shape[:-1], out.shape[-1]).movedim(-1, axis)

    x = F.pad(images, (w - 1, w - 1, h - 1, h - 1), mode="reflect")
    for axis in (2, 3):
        x = along(x, axis, lambda t: F.conv_transpose1d(t, taps, stride=2) * math.sqrt(2))
    out_h, out_w = 2 * h + length - 2, 2 * w + length - 2
    theta = ada_ops._wavelet_theta(g, (h, w), (out_h, out_w), tuple(x.shape[-2:]), length).to(images.dtype)
    grid = F.affine_grid(theta, [b, c, out_h, out_w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    for axis in (2, 3):
        x = along(x, axis, lambda t: F.conv1d(t, taps, stride=2) / math.sqrt(2))
    return x


SIDES = {"ours (wavelet, matrices)": lambda x, g: ada_ops.augment_geometric(x, g, "wavelet"),
         "reference (wavelet, convolutions)": reference_wavelet,
         "bilinear": lambda x, g: ada_ops.augment_geometric(x, g, "bilinear")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--p", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    print(f"geometric resampling, forward + backward, batch {a.batch} x {a.channels} channels, p {a.p}, "
          f"device {device}, threads {a.threads}")
    for size in a.sizes:
        torch.manual_seed(0)
        x = torch.randn(a.batch, a.channels, size, size, device=device, requires_grad=True)
        g = ada_ops.geometric_matrix(ada_ops.GEOMETRIC, a.batch, torch.tensor(a.p, device=device), device,
                                     (size, size))
        with torch.no_grad():
            x64, g64 = x.double(), g.double()
            gap = (SIDES["ours (wavelet, matrices)"](x64, g64) - reference_wavelet(x64, g64)).abs().max().item()
        times: dict[str, list[float]] = {name: [] for name in SIDES}
        names = list(SIDES)
        for r in range(a.rounds + 1):  # round 0 warms up
            for name in names[r % len(names):] + names[:r % len(names)]:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                SIDES[name](x, g).square().sum().backward()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if r:
                    times[name].append(time.perf_counter() - start)
        ours = statistics.median(times[names[0]])
        print(f"  {size} px (ours vs reference in float64: max difference {gap:.1e})")
        for name in names:
            t = statistics.median(times[name])
            print(f"    {name:36s} median {1000 * t:8.1f} ms   {t / ours:6.2f}x ours' time")


if __name__ == "__main__":
    main()
