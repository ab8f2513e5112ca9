"""Distributed FID from sufficient statistics, scored by torch-fidelity's own Fréchet distance.

Why sufficient statistics: FID needs only the mean and covariance of each feature set, and those follow
from (count, sum [d], sum of outer products [d, d]). Each rank extracts features of its own samples, adds
them into these sums in float64, and one all-reduce of 1 + d + d*d numbers combines every rank, however
many samples there are. Nothing of size N ever crosses the network, so FID costs the same per rank on 1 or
1000 ranks, and the result equals single-process torch-fidelity on the union of the samples (float64 sums
vs. its numpy mean/cov: equal to ~1e-10 relative).

KID and precision/recall are not offered here: torch-fidelity computes both from the full feature sets
(random subsets, k-nearest neighbours), which have no O(d^2) summary; gathering N x d features defeats the
point of this module.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

from acl_dist.eval.extractors import extract_features

logger = logging.getLogger(__name__)


@dataclass
class FeatureStats:
    """Sufficient statistics of a feature set: count, sum [d], sum of outer products [d, d], float64."""

    count: int
    total: torch.Tensor  # [d] float64
    outer: torch.Tensor  # [d, d] float64

    @classmethod
    def empty(cls, dim: int, device: str | torch.device = "cpu") -> FeatureStats:
        zeros = dict(dtype=torch.float64, device=device)
        return cls(0, torch.zeros(dim, **zeros), torch.zeros(dim, dim, **zeros))

    @classmethod
    def from_features(cls, features: torch.Tensor) -> FeatureStats:
        stats = cls.empty(features.shape[1], features.device)
        stats.add(features)
        return stats

    @property
    def dim(self) -> int:
        return self.total.shape[0]

    def add(self, features: torch.Tensor) -> None:
        """Accumulate a batch of features [B, d] (any float dtype; summed in float64)."""
        f = features.to(device=self.total.device, dtype=torch.float64)  # [B, d]
        self.count += f.shape[0]
        self.total += f.sum(dim=0)
        self.outer += f.T @ f  # [d, d]

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu [d], sigma [d, d]) as numpy float64; sigma is the unbiased covariance (numpy's np.cov)."""
        if self.count < 2:
            raise ValueError(f"need at least 2 samples for a covariance, have {self.count}")
        mu = self.total / self.count
        sigma = (self.outer - self.count * torch.outer(mu, mu)) / (self.count - 1)
        sigma = (sigma + sigma.T) / 2  # exact symmetry; the sums are symmetric up to rounding
        return mu.cpu().numpy(), sigma.cpu().numpy()

    def save(self, path: str, **meta: str | int) -> None:
        """Write atomically (temp file + rename) as .npz, with ``meta`` beside the arrays."""
        tmp = f"{path}.tmp{os.getpid()}.npz"
        arrays = {"count": np.int64(self.count), "total": self.total.cpu().numpy(), "outer": self.outer.cpu().numpy()}
        np.savez(tmp, **arrays, **{f"meta_{k}": np.asarray(v) for k, v in meta.items()})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> tuple[FeatureStats, dict]:
        with np.load(path) as z:
            meta = {k[5:]: z[k].item() for k in z.files if k.startswith("meta_")}
            stats = cls(int(z["count"]), torch.from_numpy(z["total"]), torch.from_numpy(z["outer"]))
        return stats, meta


def _dist_on() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) when there is none."""
    return (dist.get_rank(), dist.get_world_size()) if _dist_on() else (0, 1)


def _comm_device() -> torch.device:
    """NCCL moves CUDA tensors only; gloo takes CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _flatten(stats: FeatureStats) -> torch.Tensor:
    """[1 + d + d*d] float64 on the communication device: count, sum, outer sums."""
    count = torch.tensor([float(stats.count)], dtype=torch.float64, device=stats.total.device)
    return torch.cat([count, stats.total, stats.outer.flatten()]).to(_comm_device())


def _unflatten(flat: torch.Tensor, dim: int) -> FeatureStats:
    flat = flat.cpu()
    count = int(round(flat[0].item()))  # exact: float64 holds integers up to 2^53
    return FeatureStats(count, flat[1 : 1 + dim].clone(), flat[1 + dim :].reshape(dim, dim).clone())


def reduce_stats(stats: FeatureStats) -> FeatureStats:
    """Sum statistics over all ranks (identity without a process group): one all-reduce of 1 + d + d^2 numbers.

    The result lives on the CPU (it is used once, by the float64 numpy maths of the Fréchet distance).
    """
    if not _dist_on():
        return stats
    flat = _flatten(stats)  # [1 + d + d*d]
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    return _unflatten(flat, stats.dim)


def broadcast_stats(stats: FeatureStats | None, dim: int, src: int = 0) -> FeatureStats:
    """Rank ``src``'s statistics on every rank (identity without a process group)."""
    if not _dist_on():
        assert stats is not None
        return stats
    if dist.get_rank() == src:
        flat = _flatten(stats)
    else:
        flat = torch.zeros(1 + dim + dim * dim, dtype=torch.float64, device=_comm_device())
    dist.broadcast(flat, src=src)
    return _unflatten(flat, dim)


def broadcast_float(value: float | None, src: int = 0) -> float:
    """Rank ``src``'s float on every rank (identity without a process group)."""
    if not _dist_on():
        assert value is not None
        return float(value)
    t = torch.tensor([value if dist.get_rank() == src else 0.0], dtype=torch.float64, device=_comm_device())
    dist.broadcast(t, src=src)
    return float(t.item())


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance between two statistics, by torch-fidelity's ``fid_statistics_to_metric``."""
    if a.dim != b.dim:
        raise ValueError(f"feature dims differ: {a.dim} vs {b.dim}")
    (mu1, s1), (mu2, s2) = a.mean_cov(), b.mean_cov()
    out = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, verbose=False)
    return float(out[KEY_METRIC_FID])


def shard_sizes(num_samples: int, world: int) -> list[int]:
    """Split ``num_samples`` across ``world`` ranks exactly: the first ``num_samples % world`` get one more."""
    base, extra = divmod(num_samples, world)
    return [base + (1 if r < extra else 0) for r in range(world)]


def feature_dim(extractor: FeatureExtractorBase) -> int:
    """Feature dimension, from one tiny dummy batch the first time (extractors do not all declare it)."""
    if not hasattr(extractor, "_acl_feature_dim"):
        device = next(extractor.parameters()).device
        extractor._acl_feature_dim = extract_features(extractor, torch.zeros(2, 3, 16, 16, device=device)).shape[1]
    return extractor._acl_feature_dim


@torch.no_grad()
def local_stats(
    batches: Iterable[torch.Tensor], extractor: FeatureExtractorBase, count: int, dim: int
) -> FeatureStats:
    """Statistics of the first ``count`` images of ``batches`` ([-1, 1], [B, C, H, W]) on this rank."""
    device = next(extractor.parameters()).device
    stats = FeatureStats.empty(dim, device)
    it = iter(batches)
    while stats.count < count:
        images = next(it, None)
        if images is None:
            raise ValueError(f"image source ran out after {stats.count} of {count} images")
        stats.add(extract_features(extractor, images[: count - stats.count]))
    return stats


def compute_fid(
    generate: Callable[[int], torch.Tensor],
    num_samples: int,
    real_stats: FeatureStats,
    extractor: FeatureExtractorBase,
    batch_size: int,
    device: str | torch.device | None = None,
) -> float:
    """FID of ``num_samples`` generated images against ``real_stats``; every rank must call it.

    Each rank calls ``generate(n)`` (-> [-1, 1] images [n, C, H, W]) for its exact share of ``num_samples``
    in batches of at most ``batch_size``; statistics are summed over ranks, and every rank returns the same
    FID (computed on rank 0 and broadcast). ``device`` is where generated images are moved for extraction
    (default: the extractor's).
    """
    rank, world = rank_and_world()
    share = shard_sizes(num_samples, world)[rank]
    sizes = [min(batch_size, share - i) for i in range(0, share, batch_size)]
    dev = device if device is not None else next(extractor.parameters()).device
    fake = local_stats((generate(n).to(dev) for n in sizes), extractor, share, real_stats.dim)
    fake = reduce_stats(fake)
    if fake.count != num_samples:
        raise RuntimeError(f"reduced {fake.count} samples, expected {num_samples}")
    # The eigendecomposition (d = 2048: seconds on a CPU) runs once, on rank 0, not on every rank at once.
    return broadcast_float(fid_from_stats(fake, real_stats) if rank == 0 else None)


def stats_cache_path(cache_dir: str, dataset_key: str, extractor_name: str, num_samples: int) -> str:
    """Cache file of reference statistics, keyed by (dataset key, extractor name, sample count)."""
    digest = hashlib.sha1(dataset_key.encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"real-{extractor_name}-n{num_samples}-{digest}.npz")


def _cache_hit(cache_path: str | None, meta: dict) -> FeatureStats | None:
    """Rank 0's cached statistics if the file exists and its metadata matches ``meta``, else None."""
    if cache_path is None or not os.path.isfile(cache_path):
        return None
    stats, stored = FeatureStats.load(cache_path)
    if {k: str(v) for k, v in stored.items()} != {k: str(v) for k, v in meta.items()}:
        logger.warning("reference statistics %s were made for %s, not %s; recomputing", cache_path, stored, meta)
        return None
    return stats


def real_statistics(
    batches: Iterable[torch.Tensor],
    extractor: FeatureExtractorBase,
    num_samples: int,
    cache_path: str | None = None,
    dataset_key: str = "",
) -> FeatureStats:
    """Reference statistics of ``num_samples`` real images over all ranks, cached on disk by rank 0.

    Every rank must call it. On a cache miss each rank takes its share of ``num_samples`` from its own
    ``batches`` ([-1, 1], [B, C, H, W]) and the sums are reduced; rank 0 writes ``cache_path`` (see
    :func:`stats_cache_path`). On a hit (decided by rank 0, so nodes without a shared disk agree), rank 0's
    file is broadcast and ``batches`` is never iterated.
    """
    rank, world = rank_and_world()
    dim = feature_dim(extractor)
    meta = {"extractor": extractor.get_name(), "num_samples": num_samples, "dataset": dataset_key}
    cached = _cache_hit(cache_path, meta) if rank == 0 else None
    hit = torch.tensor([1.0 if cached is not None else 0.0])
    if _dist_on():
        hit = hit.to(_comm_device())
        dist.broadcast(hit, src=0)
    if hit.item() > 0:
        logger.info("reference statistics from %s", cache_path)
        return broadcast_stats(cached, dim)
    share = shard_sizes(num_samples, world)[rank]
    stats = reduce_stats(local_stats(batches, extractor, share, dim))
    if rank == 0 and cache_path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
        stats.save(cache_path, **meta)
        logger.info("reference statistics of %d images written to %s", stats.count, cache_path)
    return stats
