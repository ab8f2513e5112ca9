"""Data loading throughput on the same JPEGs: raw PIL decode vs ShardStream vs an image-folder DataLoader.

Raw decode of the bytes already in memory is the per-core ceiling; the goal is ShardStream >= 80% of it
with one process (num_workers=0) and faster than the per-file folder loader. Not a test; run:

    python benchmarks/data_stream.py [--images 2000] [--size 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from acl_dist.data.shards import Sample, encode_image, write_shards
from acl_dist.data.sources.shards import ShardOptions
from acl_dist.data.stream import build_shard_stream


def make_jpegs(n: int, size: int, seed: int = 0) -> list[bytes]:
    """Smooth random images plus noise (photo-like entropy), encoded the way the shard writer encodes them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 255, 3), rng.uniform(-128, 128, 3), rng.uniform(-128, 128, 3)
        img = a + b * xx[..., None] + c * yy[..., None] + rng.normal(0, 12, (size, size, 3))
        out.append(encode_image(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)), "jpg"))
    return out


def bench_raw(data: list[bytes]) -> float:
    """Images/s decoding in-memory JPEG bytes to uint8 arrays (one core, no I/O, no batching)."""
    t = time.perf_counter()
    for b in data:
        np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
    return len(data) / (time.perf_counter() - t)


def bench_stream(manifest: str, size: int, workers: int, batch: int, epochs: int) -> float:
    """Images/s over ``epochs`` epochs, start-up included (workers start once: the stream is endless)."""
    cfg = ShardOptions(source="shards", shards=manifest, num_workers=workers, shuffle_buffer=1000)
    stream = build_shard_stream(cfg, resolution=size, channels=3, batch_size=batch, seed=0, rank=0,
                                world_size=1, with_labels=False)
    t = time.perf_counter()
    it = iter(stream)
    n = sum(next(it)["image"].shape[0] for _ in range(epochs * stream.batches_per_epoch))
    return n / (time.perf_counter() - t)


class FolderDataset(Dataset):
    """The usual baseline: one file open + decode per __getitem__, collated by the DataLoader."""

    def __init__(self, files: list[str]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.files[i]) as im:
            arr = np.array(im.convert("RGB"))  # [H, W, 3]
        return torch.from_numpy(arr).permute(2, 0, 1).float().div_(127.5).sub_(1.0)  # [3, H, W]


def bench_folder(files: list[str], workers: int, batch: int, epochs: int) -> float:
    """Images/s over ``epochs`` epochs, workers kept alive between epochs (the loader's best setting)."""
    t = time.perf_counter()
    loader = DataLoader(FolderDataset(files), batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    n = sum(x.shape[0] for _ in range(epochs) for x in loader)
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = make_jpegs(a.images, a.size)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, b in enumerate(data):  # the very same bytes as files and in the shards
            files.append(os.path.join(tmp, "img", f"{i:06d}.jpg"))
            os.makedirs(os.path.dirname(files[-1]), exist_ok=True)
            with open(files[-1], "wb") as f:
                f.write(b)
        samples = (Sample(f"{i:06d}", Image.open(io.BytesIO(b))) for i, b in enumerate(data))
        manifest = write_shards(samples, os.path.join(tmp, "shards"), max_count=250, image_format="jpg",
                                progress=False)
        assert manifest.count == a.images
        shards = os.path.join(tmp, "shards", "manifest.json")
        cases = {
            "raw PIL decode (1 core)": lambda: bench_raw(data),
            "ShardStream, num_workers=0": lambda: bench_stream(shards, a.size, 0, a.batch, a.epochs),
            "folder DataLoader, num_workers=0": lambda: bench_folder(files, 0, a.batch, a.epochs),
            f"ShardStream, num_workers={a.workers}": lambda: bench_stream(shards, a.size, a.workers, a.batch, a.epochs),
            f"folder DataLoader, num_workers={a.workers}": lambda: bench_folder(files, a.workers, a.batch, a.epochs),
        }
        # Interleaved rounds, best of each: the machine is shared, and load drifts during a run.
        rates = {name: 0.0 for name in cases}
        for _ in range(a.repeats):
            for name, fn in cases.items():
                rates[name] = max(rates[name], fn())
    names, raw = list(rates), rates["raw PIL decode (1 core)"]
    print(f"{a.images} JPEGs {a.size}x{a.size}, batch {a.batch}, {a.epochs} epochs per run, "
          f"{os.cpu_count()} CPUs visible, best of {a.repeats} interleaved rounds")
    for name, rate in rates.items():
        print(f"  {name:<36} {rate:9.0f} img/s   {rate / raw:6.1%} of raw decode")
    print(f"  ShardStream / folder loader: {rates[names[1]] / rates[names[2]]:.2f}x (0 workers), "
          f"{rates[names[3]] / rates[names[4]]:.2f}x ({a.workers} workers)")

if __name__ == "__main__":
    main()
