"""Distributed FID over 2 real gloo processes: same value as 1 process, O(d^2) traffic whatever N is."""

import json
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from sklearn.datasets import load_digits

from acl_dist.eval.extractors import build_extractor
from acl_dist.eval.fid import compute_fid, real_statistics, shard_sizes, stats_cache_path

SIZES = (60, 181)  # two sample counts; 181 is odd, so the ranks' shares differ
DIM = 64  # digits-cnn features


def images(n: int, offset: int, noise: float) -> torch.Tensor:
    """n digits as [-1, 1] images [n, 1, 16, 16], with seeded noise for the 'generated' ones."""
    x = torch.tensor(load_digits().images[offset : offset + n], dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    return (x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(offset))).clamp(-1, 1)


def my_slice(pool: torch.Tensor, n: int, rank: int, world: int) -> torch.Tensor:
    """This rank's share of the first n images of pool (the union over ranks is pool[:n])."""
    sizes = shard_sizes(n, world)
    start = sum(sizes[:rank])
    return pool[start : start + sizes[rank]]


def run_fids(rank: int, world: int, cache_dir: str) -> dict:
    """FID for each N in SIZES, with the elements every all_reduce call carried; also a cached-stats rerun."""
    ex = build_extractor("digits-cnn")
    real_pool, fake_pool = images(400, 0, 0.0), images(400, 800, 0.3)
    reduced = []
    real_all_reduce = dist.all_reduce if dist.is_initialized() else None

    def counting_all_reduce(tensor, *args, **kwargs):
        reduced.append(tensor.numel())
        return real_all_reduce(tensor, *args, **kwargs)

    if real_all_reduce is not None:
        dist.all_reduce = counting_all_reduce
    out = {}
    for n in SIZES:
        path = stats_cache_path(cache_dir, "digits-test", "digits-cnn", n)
        real = real_statistics(my_slice(real_pool, n, rank, world).split(16), ex, n, path, "digits-test")
        fake = iter(my_slice(fake_pool, n, rank, world).split(7))
        reduced.clear()
        out[n] = {"fid": compute_fid(lambda k: next(fake), n, real, ex, batch_size=7), "reduced": list(reduced)}
        # second time round the reference statistics come from rank 0's cache file, broadcast
        cached = real_statistics(iter(()), ex, n, path, "digits-test")
        out[n]["cached_equal"] = bool(torch.equal(cached.outer, real.outer.cpu()) and cached.count == n)
    if real_all_reduce is not None:
        dist.all_reduce = real_all_reduce
    return out


def worker(rank: int, world: int, port: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        result = run_fids(rank, world, f"{tmp}/cache")
    finally:
        dist.destroy_process_group()
    with open(f"{tmp}/rank{rank}.json", "w") as f:
        json.dump(result, f)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process_with_constant_traffic(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    single = run_fids(0, 1, str(tmp_path / "single_cache"))
    for n in SIZES:
        one, two_a, two_b = single[n], ranks[0][str(n)], ranks[1][str(n)]
        assert two_a["fid"] == two_b["fid"]  # every rank returns the same value
        # float32 features of differently batched images and float64 sums in another order: ~1e-9 apart
        assert abs(two_a["fid"] - one["fid"]) <= 1e-7 * one["fid"], (n, two_a["fid"], one["fid"])
        # one all-reduce per FID, of count + sum + outer sums: 1 + d + d^2 numbers, the same for every N
        assert two_a["reduced"] == two_b["reduced"] == [1 + DIM + DIM * DIM]
        assert two_a["cached_equal"] and two_b["cached_equal"]
    assert ranks[0]["60"]["fid"] != ranks[0]["181"]["fid"]
