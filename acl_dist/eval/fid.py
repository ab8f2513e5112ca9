"""Distributed FID from sufficient statistics, scored by torch-fidelity's own Fréchet distance.

Why sufficient statistics: FID needs only the mean and covariance of each feature set, and those follow
from (count, sum [d], sum of outer products [d, d]). Each rank extracts features of its own samples, adds
them into these sums in float64, and one all-reduce of 1 + d + d*d numbers combines every rank, however
many samples there are. Nothing of size N ever crosses the network, so FID costs the same per rank on 1 or
1000 ranks, and the result equals single-process torch-fidelity on the union of the samples (float64 sums
vs. its numpy mean/cov: equal to ~1e-10 relative).

KID and precision/recall have no O(d^2) summary (random subsets, k-nearest neighbours of the full feature
sets); :mod:`acl_dist.eval.metrics` gathers their features to rank 0 and leaves FID on these statistics.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

from acl_dist.distributed import broadcast_tensor, is_distributed, sum_across_ranks
from acl_dist.eval.extractors import extract_features


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

    def save(self, path: str, features: torch.Tensor | None = None, **meta: str | int) -> None:
        """Write atomically (temp file + rename) as .npz, with ``meta`` beside the arrays.

        ``features`` [count, d] float32, when given, are stored too: KID and precision/recall need them.
        """
        tmp = f"{path}.tmp{os.getpid()}.npz"
        arrays = {"count": np.int64(self.count), "total": self.total.cpu().numpy(), "outer": self.outer.cpu().numpy()}
        if features is not None:
            arrays["features"] = features.float().cpu().numpy()
        np.savez(tmp, **arrays, **{f"meta_{k}": np.asarray(v) for k, v in meta.items()})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> tuple[FeatureStats, dict]:
        with np.load(path) as z:
            meta = {k[5:]: z[k].item() for k in z.files if k.startswith("meta_")}
            stats = cls(int(z["count"]), torch.from_numpy(z["total"]), torch.from_numpy(z["outer"]))
        return stats, meta


def _flatten(stats: FeatureStats) -> torch.Tensor:
    """[1 + d + d*d] float64: count, sum, outer sums."""
    count = torch.tensor([float(stats.count)], dtype=torch.float64, device=stats.total.device)
    return torch.cat([count, stats.total, stats.outer.flatten()])


def _unflatten(flat: torch.Tensor, dim: int) -> FeatureStats:
    flat = flat.cpu()
    count = int(round(flat[0].item()))  # exact: float64 holds integers up to 2^53
    return FeatureStats(count, flat[1 : 1 + dim].clone(), flat[1 + dim :].reshape(dim, dim).clone())


def reduce_stats(stats: FeatureStats) -> FeatureStats:
    """Sum statistics over all ranks (identity without a process group): one all-reduce of 1 + d + d^2 numbers.

    The result lives on the CPU (it is used once, by the float64 numpy maths of the Fréchet distance).
    """
    if not is_distributed():
        return stats
    return _unflatten(sum_across_ranks(_flatten(stats)), stats.dim)  # [1 + d + d*d]


def broadcast_stats(stats: FeatureStats | None, dim: int, src: int = 0) -> FeatureStats:
    """Rank ``src``'s statistics on every rank (identity without a process group)."""
    if not is_distributed():
        assert stats is not None
        return stats
    flat = _flatten(stats) if stats is not None else None
    return _unflatten(broadcast_tensor(flat, (1 + dim + dim * dim,), torch.float64, src), dim)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance between two statistics, by torch-fidelity's ``fid_statistics_to_metric``."""
    if a.dim != b.dim:
        raise ValueError(f"feature dims differ: {a.dim} vs {b.dim}")
    (mu1, s1), (mu2, s2) = a.mean_cov(), b.mean_cov()
    out = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, verbose=False)
    return float(out[KEY_METRIC_FID])


def shard_sizes(num_samples: int, world: int, batch: int = 1) -> list[int]:
    """Split ``num_samples`` across ``world`` ranks exactly, in whole batches of ``batch``: the samples make
    ceil(N / batch) batches (the last one short), and the first ``batches % world`` ranks get one batch more.

    Why whole batches: rank r's share then starts at a multiple of ``batch``, so every batch a rank extracts
    (or generates) is one of the batches one process would have made, image for image. Float32 kernels round a
    sample's result differently in batches of other sizes, so only aligned batches give every metric the same
    features on 1 and N processes. ``batch = 1`` is the plain split (the first ``N % world`` get one more).
    """
    batches = -(-num_samples // batch)
    base, extra = divmod(batches, world)
    counts = [base + (1 if r < extra else 0) for r in range(world)]  # batches per rank
    sizes = [c * batch for c in counts]
    last = max((r for r in range(world) if counts[r]), default=0)  # the rank holding the short last batch
    sizes[last] -= batches * batch - num_samples
    return sizes


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


def stats_cache_path(cache_dir: str, dataset_key: str, extractor_name: str, num_samples: int) -> str:
    """Cache file of reference statistics, keyed by (dataset key, extractor name, sample count)."""
    digest = hashlib.sha1(dataset_key.encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"real-{extractor_name}-n{num_samples}-{digest}.npz")
