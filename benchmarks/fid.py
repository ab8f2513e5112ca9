"""Our FID, KID and precision/recall against torch_fidelity.calculate_metrics, side by side in one run.

Same images, same extractor (digits-cnn), both in one process on the CPU. FID: streamed features -> float64
sufficient statistics, ``--num`` images per side. KID and PRC: features kept (what rank 0 gathers) and scored
by torch-fidelity's own functions, ``--kid-num`` images per side (10,000 by default; 100 KID subsets of 1,000,
k = 3). Reports the time of each, the speed ratio, and the relative difference of the values (FID ~1e-6: float64
sums vs numpy's mean/cov before a matrix square root; KID and precision/recall: the same function on the same
float32 features, so equal unless a batch size changes a feature's last bit).

    python benchmarks/fid.py [--num 2000] [--kid-num 10000] [--batch 200] [--threads 1]
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
from acl_dist.eval.extractors import TorchFidelityImages, build_extractor  # noqa: E402
from acl_dist.eval.metrics import MetricOptions, compute_metrics, reference_set  # noqa: E402

KID_PRC = MetricOptions(("kid", "prc"))  # torch-fidelity's defaults: 100 subsets of 1,000, k = 3


def make_images(num: int, seed: int, noise: float) -> torch.Tensor:
    """num digits (cycled) at 32 px in [-1, 1], [num, 1, 32, 32], with seeded noise."""
    d = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # [1797, 1, 8, 8]
    x = F.interpolate(d[torch.arange(num) % len(d)], size=(32, 32), mode="bilinear", align_corners=False)
    return (x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)


def ours(real: torch.Tensor, fake: torch.Tensor, batch: int, options: MetricOptions = MetricOptions()) -> dict:
    ex = build_extractor("digits-cnn")
    reference = reference_set(real.split(batch), ex, len(real), options.needs_features)
    pool = iter(fake.split(batch))
    return compute_metrics(lambda n: next(pool), len(fake), reference, ex, options, batch)


def theirs(real: torch.Tensor, fake: torch.Tensor, batch: int, kid_prc: bool = False) -> dict:
    out = torch_fidelity.calculate_metrics(
        input1=TorchFidelityImages(fake), input2=TorchFidelityImages(real), fid=not kid_prc, kid=kid_prc, prc=kid_prc,
        feature_extractor="digits-cnn", cuda=False, save_cpu_ram=True, cache=False, verbose=False, batch_size=batch,
    )
    names = {"frechet_inception_distance": "fid", "kernel_inception_distance_mean": "kid_mean",
             "kernel_inception_distance_std": "kid_std"}
    return {names.get(k, k): v for k, v in out.items()}


def timed(fn, *args) -> tuple[dict, float]:
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def compare(title: str, runs: dict[str, list[tuple[dict, float]]], images: int, keys: list[str]) -> None:
    """Print each side's best time, the speed ratio and each value's relative difference."""
    print(title)
    best = {name: min(seconds for _, seconds in results) for name, results in runs.items()}
    for name, results in runs.items():
        shown = "  ".join(f"{k} {results[0][0][k]:.6g}" for k in keys)
        print(f"  {name:15s} {shown}  {best[name]:7.3f} s  {images / best[name]:8.0f} images/s")
    a, b = runs["acl_dist"][0][0], runs["torch-fidelity"][0][0]
    diffs = ", ".join(f"{k} {abs(a[k] - b[k]) / max(abs(b[k]), 1e-30):.1e}" for k in keys)
    print(f"  speed ratio acl_dist / torch-fidelity: {best['torch-fidelity'] / best['acl_dist']:.2f}x; "
          f"relative differences: {diffs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=2000, help="FID: images per side (real and fake)")
    parser.add_argument("--kid-num", type=int, default=10000, help="KID/PRC: images per side (0: skip)")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="FID timings (KID/PRC: once each)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    real, fake = make_images(args.num, 0, 0.0), make_images(args.num, 1, 0.3).roll(1, dims=0)
    ours(real[:50], fake[:50], args.batch), theirs(real[:50], fake[:50], args.batch)  # warm-up
    runs = {"acl_dist": [], "torch-fidelity": []}
    for _ in range(args.repeats):
        runs["acl_dist"].append(timed(ours, real, fake, args.batch))
        runs["torch-fidelity"].append(timed(theirs, real, fake, args.batch))
    compare(f"digits-cnn FID, {args.num} real + {args.num} fake 32x32 grey images, batch {args.batch}, "
            f"{args.threads} CPU thread(s), best of {args.repeats}", runs, 2 * args.num, ["fid"])
    if args.kid_num:
        # real digits with a little noise, so that the ~5.6 copies of each of the 1,797 digits are not identical
        real, fake = make_images(args.kid_num, 2, 0.05), make_images(args.kid_num, 3, 0.3).roll(1, dims=0)
        runs = {"acl_dist": [timed(ours, real, fake, args.batch, KID_PRC)],
                "torch-fidelity": [timed(theirs, real, fake, args.batch, True)]}
        compare(f"digits-cnn KID (100 subsets of 1,000) and precision/recall (k=3), {args.kid_num} real + "
                f"{args.kid_num} fake images, {args.threads} CPU thread(s), once", runs, 2 * args.kid_num,
                ["kid_mean", "kid_std", "precision", "recall"])


if __name__ == "__main__":
    main()
