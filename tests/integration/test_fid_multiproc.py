"""Every metric over 2 real gloo processes: the same values as 1 process (KID, IS, precision/recall bit for
bit; FID to what its float64 sums in another order allow); FID's traffic O(d^2) whatever N is;
KID/PRC features and IS logits gathered to rank 0 only, never to the other ranks."""

import json
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from sklearn.datasets import load_digits

from acl_dist.distributed import gather_rows_to_main
from acl_dist.eval.extractors import build_extractor, extract_layers, feature_layer
from acl_dist.eval.fid import shard_sizes, stats_cache_path
from acl_dist.eval.metrics import MetricOptions, compute_metrics, extractor_layers, reference_set
from tests.numerics import fid_reorder_tolerance

DIM, CLASSES = 64, 10  # digits-cnn features and logits
SIZES = (60, 181)  # two sample counts; 181 is odd, so the ranks' shares differ
# Real and generated images in batches of 16 and 7. Each rank's share is whole batches (shard_sizes), so every
# image goes through the extractor in the same batch on 1 and 2 processes and each feature is the same float32
# number in both runs (batching itself moves features by last bits that differ from one CPU's kernels to
# another's). What the runs may differ in is only the order of FID's float64 sums: fid_reorder_tolerance.
REAL_BATCH, FAKE_BATCH = 16, 7
ALL = MetricOptions(("fid", "kid", "isc", "prc"), kid_subsets=10, kid_subset_size=50)
FID = MetricOptions(("fid",))


def images(n: int, offset: int, noise: float) -> torch.Tensor:
    """n digits as [-1, 1] images [n, 1, 16, 16], with seeded noise for the 'generated' ones."""
    x = torch.tensor(load_digits().images[offset : offset + n], dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    return (x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(offset))).clamp(-1, 1)


def my_slice(pool: torch.Tensor, n: int, rank: int, world: int, batch: int) -> torch.Tensor:
    """This rank's share of the first n images of pool in whole batches (the union over ranks is pool[:n])."""
    sizes = shard_sizes(n, world, batch)
    start = sum(sizes[:rank])
    return pool[start : start + sizes[rank]]


class Traffic:
    """Bytes this rank receives through torch.distributed's collectives, by what each collective delivers.

    all_reduce: the reduced tensor; broadcast: the tensor, except on its source; all_gather: the other ranks'
    tensors; gather: the other ranks' tensors on the destination only, nothing elsewhere.
    """

    WRAPPED = ("all_reduce", "broadcast", "all_gather", "gather", "all_gather_into_tensor", "scatter", "recv",
               "reduce", "all_to_all", "all_to_all_single", "reduce_scatter", "reduce_scatter_tensor")

    def __init__(self):
        self.received, self.calls, self.saved = 0, [], {}

    @staticmethod
    def _bytes(t) -> int:
        return t.numel() * t.element_size()

    def __enter__(self):
        rank, world = dist.get_rank(), dist.get_world_size()
        for name in self.WRAPPED:
            self.saved[name] = getattr(dist, name)

        def wrap(name):
            real = self.saved[name]

            def counted(*args, **kwargs):
                self.calls.append(name)
                tensor = args[0] if name != "all_gather" else args[1]
                if name == "all_reduce":
                    self.received += self._bytes(tensor)
                elif name == "broadcast" and kwargs.get("src", args[1] if len(args) > 1 else 0) != rank:
                    self.received += self._bytes(tensor)
                elif name == "all_gather":
                    self.received += (world - 1) * self._bytes(tensor)
                elif name == "gather" and kwargs.get("dst", 0) == rank:
                    self.received += (world - 1) * self._bytes(tensor)
                elif name not in ("broadcast", "gather"):
                    raise AssertionError(f"unexpected collective {name}: count what it delivers")
                return real(*args, **kwargs)

            return counted

        for name in self.WRAPPED:
            setattr(dist, name, wrap(name))
        return self

    def __exit__(self, *exc):
        for name, real in self.saved.items():
            setattr(dist, name, real)


def run_metrics(rank: int, world: int, cache_dir: str) -> dict:
    """Every metric for each N in SIZES, with the bytes each evaluation received; also a cached-reference rerun."""
    ex = build_extractor("digits-cnn", layers=extractor_layers("digits-cnn", ALL.metrics))
    real_pool, fake_pool = images(400, 0, 0.0), images(400, 800, 0.3)
    out = {}
    for n in SIZES:
        path = stats_cache_path(cache_dir, "digits-test", "digits-cnn", n)
        real = reference_set(my_slice(real_pool, n, rank, world, REAL_BATCH).split(REAL_BATCH), ex, n, True, path,
                             "digits-test", REAL_BATCH)
        row = {}
        for name, options in (("all", ALL), ("fid", FID)):
            fake = iter(my_slice(fake_pool, n, rank, world, FAKE_BATCH).split(FAKE_BATCH))
            if world > 1:
                with Traffic() as traffic:
                    row[name] = compute_metrics(lambda k: next(fake), n, real, ex, options, batch_size=FAKE_BATCH)
                row[f"{name}_received"], row[f"{name}_calls"] = traffic.received, traffic.calls
            else:
                row[name] = compute_metrics(lambda k: next(fake), n, real, ex, options, batch_size=FAKE_BATCH)
        row["feature_max"] = float(max(extract_layers(ex, pool[:n])[feature_layer("digits-cnn")].abs().max()
                                       for pool in (real_pool, fake_pool)))
        # second time round the reference comes from rank 0's cache file: statistics broadcast, features on 0
        cached = reference_set(iter(()), ex, n, True, path, "digits-test", REAL_BATCH)
        row["cached_equal"] = bool(torch.equal(cached.stats.outer, real.stats.outer)
                                   and cached.stats.count == n)
        row["features_here"] = None if real.features is None else list(real.features.shape)
        row["cached_features_equal"] = real.features is None or bool(torch.equal(cached.features, real.features))
        out[n] = row
    return out


def gather_uneven(rank: int) -> list | None:
    """Rank r sends 3 + 5r rows of value r (d = 2) in chunks of 2 rows: rank 0 gets them in rank order."""
    rows = torch.full((3 + 5 * rank, 2), float(rank), dtype=torch.float64)
    got = gather_rows_to_main(rows, chunk_rows=2)
    return None if got is None else got[:, 0].tolist()


def worker(rank: int, world: int, port: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        result = {"metrics": run_metrics(rank, world, f"{tmp}/cache"), "gather": gather_uneven(rank)}
    finally:
        dist.destroy_process_group()
    with open(f"{tmp}/rank{rank}.json", "w") as f:
        json.dump(result, f)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process_and_gather_to_rank_0_only(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    single = run_metrics(0, 1, str(tmp_path / "single_cache"))
    stats_bytes = 8 * (1 + DIM + DIM * DIM)  # FID's one all-reduce: count, sum, outer sums in float64
    for n in SIZES:
        one, a, b = single[n], ranks[0]["metrics"][str(n)], ranks[1]["metrics"][str(n)]
        for name in ("all", "fid"):
            assert a[name] == b[name]  # every rank returns the same values
            for key, value in one[name].items():
                if key == "fid":
                    bound = fid_reorder_tolerance(n, DIM, one["feature_max"])  # (measured: 1e-2 and 2e-7 of it)
                    assert abs(a[name][key] - value) <= bound, (n, key, a[name][key], value, bound)
                else:  # the same float32 features in the same global order, scored by the same function
                    assert a[name][key] == value, (n, key, a[name][key], value)
        # FID only: one all-reduce of 1 + d + d^2 numbers and one broadcast float, the same for every N
        assert a["fid_calls"] == b["fid_calls"] == ["all_reduce", "broadcast"]
        assert b["fid_received"] == stats_bytes + 8
        # all metrics: rank 1 receives the sums, two row counts (features, logits) and the 8 values: O(d^2);
        # rank 0 receives rank 1's features and logits besides
        assert b["all_received"] == stats_bytes + 8 + 8 + 8 * 8
        share1 = shard_sizes(n, 2, FAKE_BATCH)[1]
        assert a["all_received"] >= stats_bytes + share1 * (DIM + CLASSES) * 4
        assert a["cached_equal"] and b["cached_equal"]
        assert a["features_here"] == [n, DIM] and b["features_here"] is None  # the reference's too: rank 0 only
        assert a["cached_features_equal"]
    assert ranks[0]["metrics"]["60"]["all"]["kid_mean"] != ranks[0]["metrics"]["181"]["all"]["kid_mean"]
    assert ranks[0]["gather"] == [0.0] * 3 + [1.0] * 8 and ranks[1]["gather"] is None
