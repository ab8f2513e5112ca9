"""FID, KID, Inception Score and precision/recall on any number of processes, scored by torch-fidelity itself.

One pass over the images extracts, batch by batch, the layers the requested metrics need; then each metric
moves only what it must across processes (N samples, d feature dimensions, C classes):

| metric | needs | what crosses processes |
| --- | --- | --- |
| ``fid`` | mean and covariance | 1 + d + d^2 float64 sums, one all-reduce (:mod:`acl_dist.eval.fid`): O(d^2) |
| ``kid``, ``prc`` | the feature vectors | N·d float32 numbers, gathered to rank 0 only, in chunks |
| ``isc`` | the generated images' class logits | N·C float32 numbers, gathered to rank 0 only |

Rank 0 scores with torch-fidelity's ``*_featuresdict_to_metric`` and ``fid_statistics_to_metric`` (so the
values are theirs, with their defaults: rng seed 2020, 10 IS splits, shuffled) and broadcasts the few floats.
Each rank takes a contiguous share of the samples made of whole batches (:func:`~acl_dist.eval.fid.shard_sizes`)
and the gather concatenates in rank order, so rank 0 holds the features in global sample order, each computed in
the same batch as one process would have: KID, IS and precision/recall are bit for bit those of one process, FID
equal up to the order of its float64 sums (``tests/integration/test_fid_multiproc.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_featuresdict_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_featuresdict_to_metric
from torch_fidelity.metric_prc import (
    KEY_METRIC_F_SCORE,
    KEY_METRIC_PRECISION,
    KEY_METRIC_RECALL,
    prc_featuresdict_to_metric,
)

from acl_dist.distributed import broadcast_float, broadcast_floats, gather_rows_to_main, rank_and_world
from acl_dist.eval.extractors import extract_layers, feature_layer, logits_layer
from acl_dist.eval.fid import FeatureStats, broadcast_stats, fid_from_stats, reduce_stats, shard_sizes
from acl_dist.eval.names import METRICS, metric_problem  # noqa: F401 (METRICS re-exported)

logger = logging.getLogger(__name__)

KEYS = {  # metric -> the values it reports (metrics.jsonl: eval/<key>; eval.csv: one column each)
    "fid": ("fid",),
    "kid": ("kid_mean", "kid_std"),
    "isc": ("isc_mean", "isc_std"),
    "prc": ("precision", "recall", "f_score"),
}
_THEIR_KEYS = {"kid_mean": KEY_METRIC_KID_MEAN, "kid_std": KEY_METRIC_KID_STD, "isc_mean": KEY_METRIC_ISC_MEAN,
               "isc_std": KEY_METRIC_ISC_STD, "precision": KEY_METRIC_PRECISION, "recall": KEY_METRIC_RECALL,
               "f_score": KEY_METRIC_F_SCORE}


@dataclass(frozen=True)
class MetricOptions:
    """Which metrics, and the settings torch-fidelity's KID and precision/recall take (its defaults here)."""

    metrics: tuple[str, ...] = ("fid",)
    kid_subsets: int = 100
    kid_subset_size: int = 1000  # capped at the smaller sample count (torch-fidelity would refuse)
    prc_neighborhood: int = 3

    @classmethod
    def from_config(cls, cfg) -> MetricOptions:
        """From the recipe's ``eval`` section (``acl_dist.config.EvalConfig``)."""
        return cls(tuple(cfg.metrics), cfg.kid_subsets, cfg.kid_subset_size, cfg.prc_neighborhood)

    @property
    def keys(self) -> list[str]:
        return [key for name in self.metrics for key in KEYS[name]]

    @property
    def needs_features(self) -> bool:
        return "kid" in self.metrics or "prc" in self.metrics

    def subset_size(self, fake: int, real: int) -> int:
        """KID's subset size for ``fake`` and ``real`` samples: the configured one, or fewer if there are fewer."""
        return min(self.kid_subset_size, fake, real)


def extractor_layers(name: str, metrics: Sequence[str]) -> list[str]:
    """The layers extractor ``name`` is asked for: the feature layer first, then class logits if IS is asked.

    Raises:
        ValueError: IS asked of an extractor without class logits.
    """
    layers = [feature_layer(name)]
    if "isc" in metrics:
        problem = metric_problem("isc", name)
        if problem:
            raise ValueError(problem)
        layers.append(logits_layer(name))
    return layers


def layer_dims(extractor: FeatureExtractorBase) -> dict[str, int]:
    """{layer: size} of the requested layers, from one tiny dummy batch the first time."""
    if not hasattr(extractor, "_acl_layer_dims"):
        device = next(extractor.parameters()).device
        out = extract_layers(extractor, torch.zeros(2, 3, 16, 16, device=device))
        extractor._acl_layer_dims = {name: t.shape[1] for name, t in out.items()}
    return extractor._acl_layer_dims


def describe_layers(extractor: FeatureExtractorBase, metrics: Sequence[str]) -> dict[str, str]:
    """Which extractor layer each metric used, for people: {"fid": "digits-cnn '64' (64-d features)", ...}."""
    name, dims = extractor.get_name(), layer_dims(extractor)
    feats, logits = feature_layer(name), logits_layer(name)
    out = {m: f"{name} '{feats}' ({dims[feats]}-d features)" for m in metrics if m != "isc"}
    if "isc" in metrics and logits in dims:
        out["isc"] = f"{name} '{logits}' ({dims[logits]}-class logits)"
    return out


@dataclass
class FeatureSet:
    """One side of a comparison: what each metric needs of a set of images, after the collectives."""

    stats: FeatureStats | None = None  # FID's sums over every rank, on every rank
    features: torch.Tensor | None = None  # [N, d] float32 in global sample order, rank 0 only (KID, PRC)
    logits: torch.Tensor | None = None  # [N, C] float32 in global sample order, rank 0 only (IS)

    @property
    def count(self) -> int:
        if self.stats is not None:
            return self.stats.count
        return len(self.features if self.features is not None else self.logits)


@dataclass(frozen=True)
class _Wanted:
    """What one extractor keeps of each batch: FID's sums, feature rows (KID, PRC), logit rows (IS)."""

    extractor: FeatureExtractorBase
    stats: bool
    features: bool
    logits: bool


@torch.no_grad()
def _extract(batches: Iterable[torch.Tensor], extractor: FeatureExtractorBase, count: int, stats: bool,
             features: bool, logits: bool, progress: str = "") -> FeatureSet:
    """This rank's part: the first ``count`` images of ``batches`` ([-1, 1], [B, C, H, W]), through the
    extractor once; FID's sums in float64, and the feature / logit rows in float32 when asked. ``progress``: a
    progress bar with that label on rank 0 (none when empty, or when stderr is not a terminal)."""
    return _extract_many(batches, [_Wanted(extractor, stats, features, logits)], count, progress)[0]


@torch.no_grad()
def _extract_many(batches: Iterable[torch.Tensor], wanted: Sequence[_Wanted], count: int,
                  progress: str = "") -> list[FeatureSet]:
    """:func:`_extract` for several extractors in one pass: each batch is made once and goes through each."""
    from tqdm import tqdm

    bar = tqdm(total=count, desc=progress, unit="img", disable=None if progress and rank_and_world()[0] == 0 else True,
               leave=False)
    parts = [_Part(w) for w in wanted]
    seen, it = 0, iter(batches)
    while seen < count:
        images = next(it, None)
        if images is None:
            raise ValueError(f"image source ran out after {seen} of {count} images")
        images = images[: count - seen]
        for part in parts:
            part.add(images)
        seen += len(images)
        bar.update(len(images))
    bar.close()
    return [part.result() for part in parts]


class _Part:
    """One extractor's running share of :func:`_extract_many`."""

    def __init__(self, wanted: _Wanted):
        self.wanted = wanted
        name, self.dims = wanted.extractor.get_name(), layer_dims(wanted.extractor)
        self.feats_layer, self.logits_layer = feature_layer(name), logits_layer(name)
        device = next(wanted.extractor.parameters()).device
        self.sums = FeatureStats.empty(self.dims[self.feats_layer], device) if wanted.stats else None
        self.kept_features: list[torch.Tensor] = []
        self.kept_logits: list[torch.Tensor] = []

    def add(self, images: torch.Tensor) -> None:
        out = extract_layers(self.wanted.extractor, images)
        f = out[self.feats_layer]  # [B, d]
        if self.sums is not None:
            self.sums.add(f)
        if self.wanted.features:
            self.kept_features.append(f.cpu())
        if self.wanted.logits:
            self.kept_logits.append(out[self.logits_layer].cpu())  # [B, C]

    def rows(self, kept: list[torch.Tensor], layer: str) -> torch.Tensor:  # [n, k]; a rank without images: 0 rows
        return torch.cat(kept) if kept else torch.zeros(0, self.dims[layer])

    def result(self) -> FeatureSet:
        w = self.wanted
        return FeatureSet(self.sums, self.rows(self.kept_features, self.feats_layer) if w.features else None,
                          self.rows(self.kept_logits, self.logits_layer) if w.logits else None)


def _across_ranks(local: FeatureSet) -> FeatureSet:
    """Sums all-reduced to every rank; feature and logit rows gathered to rank 0 only."""
    return FeatureSet(
        reduce_stats(local.stats) if local.stats is not None else None,
        gather_rows_to_main(local.features) if local.features is not None else None,
        gather_rows_to_main(local.logits) if local.logits is not None else None,
    )


def score(fake: FeatureSet, real: FeatureSet, options: MetricOptions) -> dict[str, float]:
    """Every metric of ``options`` from gathered sets (rank 0), each by torch-fidelity's own function."""
    out: dict[str, float] = {}
    if "fid" in options.metrics:
        out["fid"] = fid_from_stats(fake.stats, real.stats)
    layer = "features"  # a name for torch-fidelity's featuresdicts; the values are the feature layer's
    fake_f, real_f = {layer: fake.features}, {layer: real.features}
    if "kid" in options.metrics:
        size = options.subset_size(len(fake.features), len(real.features))
        out.update(kid_featuresdict_to_metric(fake_f, real_f, layer, kid_subsets=options.kid_subsets,
                                              kid_subset_size=size, verbose=False))
    if "isc" in options.metrics:
        out.update(isc_featuresdict_to_metric({"logits": fake.logits}, "logits", verbose=False))
    if "prc" in options.metrics:  # features_1 generated, features_2 real: torch-fidelity's convention
        out.update(prc_featuresdict_to_metric(fake_f, real_f, layer, prc_neighborhood=options.prc_neighborhood,
                                              save_cpu_ram=True, verbose=False))
    return {key: float(out[_THEIR_KEYS.get(key, key)]) for key in options.keys}


@dataclass(frozen=True)
class FeatureSpace:
    """One extractor, its reference set, and the metrics scored in its features."""

    extractor: FeatureExtractorBase
    reference: FeatureSet
    options: MetricOptions


def compute_metrics(
    generate: Callable[[int], torch.Tensor],
    num_samples: int,
    reference: FeatureSet,
    extractor: FeatureExtractorBase,
    options: MetricOptions,
    batch_size: int,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """``options.metrics`` of ``num_samples`` generated images against ``reference``; every rank must call it.

    Each rank calls ``generate(n)`` (-> [-1, 1] images [n, C, H, W]) for its exact contiguous share, in batches
    of at most ``batch_size``; ``device`` is where images are moved for extraction (default: the extractor's).
    Returns {key: value} (see :data:`KEYS`), the same on every rank.
    """
    return compute_metrics_in(generate, num_samples, [FeatureSpace(extractor, reference, options)], batch_size,
                              device, progress)[0]


def compute_metrics_in(
    generate: Callable[[int], torch.Tensor],
    num_samples: int,
    spaces: Sequence[FeatureSpace],
    batch_size: int,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> list[dict[str, float]]:
    """:func:`compute_metrics` in several feature spaces from the same generated images (made once): one dict
    per space, in order, the same on every rank."""
    rank, world = rank_and_world()
    share = shard_sizes(num_samples, world, batch_size)[rank]
    sizes = [min(batch_size, share - i) for i in range(0, share, batch_size)]
    dev = device if device is not None else next(spaces[0].extractor.parameters()).device
    wanted = [_Wanted(sp.extractor, stats="fid" in sp.options.metrics, features=sp.options.needs_features,
                      logits="isc" in sp.options.metrics) for sp in spaces]
    local = _extract_many((generate(n).to(dev) for n in sizes), wanted, share,
                          progress="generated images" if progress else "")
    results = []
    for space, mine in zip(spaces, local):
        fake, options = _across_ranks(mine), space.options
        values = None
        if rank == 0:
            size = options.subset_size(num_samples, space.reference.count)
            if "kid" in options.metrics and size < options.kid_subset_size:
                logger.warning("KID subsets of %d samples, not %d: there are only %d generated and %d real", size,
                               options.kid_subset_size, num_samples, space.reference.count)
            scores = score(fake, space.reference, options)  # eigendecomposition, kernels, k-NN: once, on rank 0
            values = [scores[k] for k in options.keys]
        results.append(dict(zip(options.keys, broadcast_floats(values, len(options.keys)))))
    return results


def _cache_hit(cache_path: str | None, meta: dict, with_features: bool) -> FeatureSet | None:
    """Rank 0's cached reference if the file exists, its metadata matches ``meta`` and it holds what is needed."""
    if cache_path is None or not os.path.isfile(cache_path):
        return None
    stats, stored = FeatureStats.load(cache_path)
    if {k: str(v) for k, v in stored.items()} != {k: str(v) for k, v in meta.items()}:
        logger.warning("reference statistics %s were made for %s, not %s; recomputing", cache_path, stored, meta)
        return None
    if not with_features:
        return FeatureSet(stats)
    with np.load(cache_path) as z:
        if "features" not in z.files:
            logger.info("reference statistics %s hold no features (KID and PRC need them); recomputing", cache_path)
            return None
        return FeatureSet(stats, torch.from_numpy(z["features"]))


def reference_set(
    batches: Iterable[torch.Tensor],
    extractor: FeatureExtractorBase,
    num_samples: int,
    with_features: bool = False,
    cache_path: str | None = None,
    dataset_key: str = "",
    batch_size: int = 1,
    progress: bool = False,
) -> FeatureSet:
    """FID statistics (every rank) and, ``with_features``, the features (rank 0) of ``num_samples`` real images.

    Every rank must call it. On a cache miss each rank takes its contiguous share of ``num_samples`` from its own
    ``batches`` ([-1, 1], [B, C, H, W]), the share ``shard_sizes(num_samples, world, batch_size)`` gives (callers
    that batch the real images by ``batch_size`` pass it, so that shares are whole batches); sums are reduced,
    features gathered to rank 0, which writes
    ``cache_path`` (see :func:`~acl_dist.eval.fid.stats_cache_path`). On a hit (decided by rank 0, so nodes
    without a shared disk agree), rank 0's statistics are broadcast, its features stay on it, and ``batches``
    is never iterated.
    """
    rank, world = rank_and_world()
    dim = layer_dims(extractor)[feature_layer(extractor.get_name())]
    meta = {"extractor": extractor.get_name(), "num_samples": num_samples, "dataset": dataset_key}
    cached = _cache_hit(cache_path, meta, with_features) if rank == 0 else None
    if broadcast_float(float(cached is not None) if rank == 0 else None) > 0:
        logger.info("reference statistics from %s", cache_path)
        stats = broadcast_stats(cached.stats if cached is not None else None, dim)
        return FeatureSet(stats, cached.features if cached is not None else None)
    share = shard_sizes(num_samples, world, batch_size)[rank]
    ref = _across_ranks(_extract(batches, extractor, share, stats=True, features=with_features, logits=False,
                                 progress="real images" if progress else ""))
    if rank == 0 and cache_path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
        ref.stats.save(cache_path, features=ref.features, **meta)
        logger.info("reference statistics of %d images written to %s", ref.stats.count, cache_path)
    return ref
