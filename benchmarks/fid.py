"""Our FID (streamed features -> float64 sufficient statistics) against torch_fidelity.calculate_metrics.

Same images, same extractor (digits-cnn), both in one process on the CPU: reports images/s for each, the
speed ratio, and the relative difference of the two FIDs (which should be ~1e-7 or less).

    python benchmarks/fid.py [--num 2000] [--batch 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F
import torch_fidelity
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
from acl_dist.eval.extractors import build_extractor, to_uint8_rgb  # noqa: E402
from acl_dist.eval.fid import compute_fid, real_statistics  # noqa: E402


class Uint8Images(torch.utils.data.Dataset):
    """torch-fidelity's in-memory input: a Dataset of uint8 [3, H, W]."""

    def __init__(self, images: torch.Tensor):
        self.x = to_uint8_rgb(images)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def make_images(num: int, seed: int, noise: float) -> torch.Tensor:
    """num digits (cycled) at 32 px in [-1, 1], [num, 1, 32, 32], with seeded noise."""
    d = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # [1797, 1, 8, 8]
    x = F.interpolate(d[torch.arange(num) % len(d)], size=(32, 32), mode="bilinear", align_corners=False)
    return (x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)


def ours(real: torch.Tensor, fake: torch.Tensor, batch: int) -> float:
    ex = build_extractor("digits-cnn")
    stats = real_statistics(real.split(batch), ex, len(real))
    pool = iter(fake.split(batch))
    return compute_fid(lambda n: next(pool), len(fake), stats, ex, batch)


def theirs(real: torch.Tensor, fake: torch.Tensor, batch: int) -> float:
    out = torch_fidelity.calculate_metrics(
        input1=Uint8Images(fake), input2=Uint8Images(real), fid=True, feature_extractor="digits-cnn",
        cuda=False, save_cpu_ram=True, cache=False, verbose=False, batch_size=batch,
    )
    return out["frechet_inception_distance"]


def timed(fn, *args) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=2000, help="images per side (real and fake)")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    real, fake = make_images(args.num, 0, 0.0), make_images(args.num, 1, 0.3).roll(1, dims=0)
    ours(real[:50], fake[:50], args.batch), theirs(real[:50], fake[:50], args.batch)  # warm-up
    runs = {"acl_dist": [], "torch-fidelity": []}
    for _ in range(args.repeats):
        runs["acl_dist"].append(timed(ours, real, fake, args.batch))
        runs["torch-fidelity"].append(timed(theirs, real, fake, args.batch))
    total = 2 * args.num
    print(f"digits-cnn FID, {args.num} real + {args.num} fake 32x32 grey images, batch {args.batch}, "
          f"{args.threads} CPU thread(s), best of {args.repeats}")
    best = {}
    for name, results in runs.items():
        fid, seconds = results[0][0], min(s for _, s in results)
        best[name] = seconds
        print(f"  {name:15s} FID {fid:12.6f}  {seconds:6.3f} s  {total / seconds:8.0f} images/s")
    a, b = runs["acl_dist"][0][0], runs["torch-fidelity"][0][0]
    print(f"  speed ratio acl_dist / torch-fidelity: {best['torch-fidelity'] / best['acl_dist']:.2f}x; "
          f"relative FID difference {abs(a - b) / b:.2e}")


if __name__ == "__main__":
    main()
