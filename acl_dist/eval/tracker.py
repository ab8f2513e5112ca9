"""Evaluation during training: one object the trainer calls every ``eval.every`` steps on every rank.

It builds the extractor at construction (so missing weights stop a run at start-up, not at step 40,000),
computes the reference set once (from the on-disk cache when there is one), and on the main rank keeps
``run_dir/eval.csv`` (one column per reported value: ``fid``, ``kid_mean``, ...) and ``run_dir/eval.png``
(one panel per metric) up to date: the CSV at every evaluation, the picture at most every ``PLOT_EVERY_S``
seconds and at ``finish()`` (drawing costs 0.3 s, the first one 1.3 s with matplotlib's import: more than a
short run trains, and nothing a person watching a long run would notice). ``best`` and ``is_best`` follow FID,
as the best checkpoint does; they are the same on every rank (decided on rank 0 and broadcast), so a trainer
may use them to trigger a collective best-FID checkpoint.

Resuming: ``state_dict``/``load_state_dict`` carry the history in checkpoints; without them the CSV already
in the run directory is read back (``eval.csv``, or ``fid.csv`` of runs from before it). Either way rows at or
after the step being evaluated are dropped (the run was rewound to an earlier checkpoint), so the curve and
``best`` never mix two histories.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import torch

from acl_dist.distributed import broadcast_float, rank_and_world
from acl_dist.eval.extractors import build_extractor
from acl_dist.eval.fid import stats_cache_path
from acl_dist.eval.metrics import (
    FeatureSet,
    FeatureSpace,
    MetricOptions,
    compute_metrics_in,
    extractor_layers,
    reference_set,
)
from acl_dist.pictures import plot_metrics

logger = logging.getLogger(__name__)
CSV_NAME, PNG_NAME = "eval.csv", "eval.png"
SECOND = "second_"  # the prefix of the values measured in eval.second_extractor's features: second_fid, ...
OLD_CSV_NAME = "fid.csv"  # runs from before eval.csv: columns step, fid, seconds
PLOT_EVERY_S = 60.0  # eval.png is redrawn at an evaluation at most this often, and at finish()


class EvalFields(Protocol):
    """The fields of ``acl_dist.config.EvalConfig`` the tracker reads."""

    num_samples: int
    feature_extractor: str
    feature_extractor_weights_path: str
    second_extractor: str
    batch_size: int
    metrics: list[str]
    kid_subsets: int
    kid_subset_size: int
    prc_neighborhood: int


def read_curve(csv_path: str) -> list[dict]:
    """Rows of a metrics CSV (header row first) as dicts of floats; an empty cell is a value the row lacks."""
    with open(csv_path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def read_history(run_dir: str) -> list[dict]:
    """A run's evaluation rows ({"step": ..., "fid": ..., ...}): ``eval.csv``, else an older run's ``fid.csv``."""
    for name in (CSV_NAME, OLD_CSV_NAME):
        path = os.path.join(run_dir, name)
        if os.path.isfile(path):
            return read_curve(path)
    return []


class _Lazy:
    """An iterable that calls ``make()`` when first iterated: the data stream is not opened on a cache hit."""

    def __init__(self, make: Callable[[], Iterable[torch.Tensor]]):
        self.make = make

    def __iter__(self):
        return iter(self.make())


class EvalTracker:
    """Distributed metrics at training time, with a CSV history, curves and the best FID so far.

    Args:
        cfg: the recipe's ``eval`` section (metrics, num_samples, feature_extractor, its weights path, ...).
        run_dir: where ``eval.csv`` and ``eval.png`` are written (main rank only).
        device: where features are extracted.
        real_batches: returns an iterable of this rank's real images ([-1, 1], [B, C, H, W]); called once,
            and only when the reference set is not cached.
        cache_dir: directory of cached reference sets; "" disables the disk cache.
        dataset_key: identifies the real data (dataset name or manifest hash, resolution, channels); the cache
            key together with the extractor and sample count. "" disables the disk cache.
        real_count: real images in the reference (default ``cfg.num_samples``; fewer when the dataset is
            smaller, e.g. the 1,797 digits, so that no image counts twice).
    """

    def __init__(
        self,
        cfg: EvalFields,
        run_dir: str,
        device: str | torch.device,
        real_batches: Callable[[], Iterable[torch.Tensor]],
        cache_dir: str = "",
        dataset_key: str = "",
        real_count: int | None = None,
        progress: bool = False,
    ):
        self.cfg, self.progress = cfg, progress
        self.options = MetricOptions.from_config(cfg)
        self.run_dir = run_dir
        self.device = torch.device(device)
        self.real_batches = real_batches
        self.real_count = real_count or cfg.num_samples
        layers = extractor_layers(cfg.feature_extractor, self.options.metrics)
        self.extractor = build_extractor(cfg.feature_extractor, cfg.feature_extractor_weights_path, self.device,
                                         layers)
        self.cache_path = (
            stats_cache_path(cache_dir, dataset_key, cfg.feature_extractor, self.real_count)
            if cache_dir and dataset_key
            else None
        )
        self.dataset_key = dataset_key
        self.second = None  # (extractor, options, cache path) of eval.second_extractor's feature space
        second = getattr(cfg, "second_extractor", "")
        if second:
            options = MetricOptions(tuple(m for m in self.options.metrics if m in ("fid", "kid")),
                                    self.options.kid_subsets, self.options.kid_subset_size)
            cache = (stats_cache_path(cache_dir, dataset_key, second, self.real_count) if cache_dir and dataset_key
                     else None)
            self.second = (build_extractor(second, "", self.device, extractor_layers(second, options.metrics)),
                           options, cache)
        self._second_real: FeatureSet | None = None
        self.csv_path = os.path.join(run_dir, CSV_NAME)
        self.png_path = os.path.join(run_dir, PNG_NAME)
        self.rows: list[dict] = read_history(run_dir) if self.is_main else []
        self._best = min((r["fid"] for r in self.rows if "fid" in r), default=math.inf)
        self._real: FeatureSet | None = None
        self.is_best = False  # whether the latest evaluate() beat every earlier FID
        self._plotted_at = time.monotonic()  # the first picture waits PLOT_EVERY_S too: short runs draw once
        self.plotted = False  # whether eval.png shows the latest evaluation (drawn by it, or by finish())

    @property
    def is_main(self) -> bool:
        return rank_and_world()[0] == 0

    @property
    def best(self) -> float:
        """Lowest FID so far, the same on every rank after an evaluation (inf before any, or without FID)."""
        return self._best

    def state_dict(self) -> dict:
        """History and best (plain data, for checkpoints); rank 0's are the ones that count."""
        return {"rows": [dict(r) for r in self.rows], "best": self._best}

    def load_state_dict(self, state: dict) -> None:
        """Back to a checkpoint's history: the CSV's later rows are dropped at the next evaluate()."""
        self.rows = [dict(r) for r in state.get("rows", [])]
        self._best = float(state.get("best", math.inf))

    def reference(self) -> FeatureSet:
        """The real images' statistics (and features, for KID/PRC), made or loaded on the first call; every rank
        must call it."""
        if self._real is None:
            batches = _Lazy(self.real_batches)  # the data stream is opened only on a cache miss
            self._real = reference_set(batches, self.extractor, self.real_count, self.options.needs_features,
                                       self.cache_path, self.dataset_key, self.cfg.batch_size, self.progress)
        return self._real

    def _spaces(self) -> list[FeatureSpace]:
        """The feature spaces scored at each evaluation: the extractor's, then eval.second_extractor's."""
        spaces = [FeatureSpace(self.extractor, self.reference(), self.options)]
        if self.second is not None:
            extractor, options, cache = self.second
            if self._second_real is None:
                self._second_real = reference_set(_Lazy(self.real_batches), extractor, self.real_count,
                                                  options.needs_features, cache, self.dataset_key,
                                                  self.cfg.batch_size, self.progress)
            spaces.append(FeatureSpace(extractor, self._second_real, options))
        return spaces

    def evaluate(self, step: int, generate: Callable[[int], torch.Tensor]) -> dict[str, float]:
        """Every metric of the generator at ``step`` ({"fid": ..., "kid_mean": ...}); every rank must call it and
        gets the same values.

        ``generate(n)`` returns n images in [-1, 1], [n, C, H, W], from this rank's generator; it is called
        under no_grad, and putting the nets in eval mode (or using the EMA copy) is the caller's business.
        """
        start = time.time()
        first, *more = compute_metrics_in(generate, self.cfg.num_samples, self._spaces(), self.cfg.batch_size,
                                          self.device, self.progress)
        values = {**first, **{SECOND + k: v for other in more for k, v in other.items()}}
        seconds = time.time() - start
        self.is_best = False
        if "fid" in values:
            earlier = min((r["fid"] for r in self.rows if r["step"] < step and "fid" in r), default=math.inf)
            best_before = broadcast_float(earlier if self.is_main else None)
            self.is_best = values["fid"] < best_before
            self._best = min(best_before, values["fid"])
        if self.is_main:
            self._record(step, values, seconds)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
        spaces = self.cfg.feature_extractor + (f"; {SECOND}*: {self.cfg.second_extractor}" if self.second else "")
        logger.info("step %d: %s (%s, %d samples, %.1f s)%s", step, shown, spaces, self.cfg.num_samples, seconds,
                    " best FID" if self.is_best else "")
        return values

    def _record(self, step: int, values: dict[str, float], seconds: float) -> None:
        """Append to the history (dropping rows a resume rewound past), rewrite the CSV and the curves."""
        self.rows = [r for r in self.rows if r["step"] < step]
        self.rows.append({"step": float(step), **values, "seconds": seconds})
        columns = ["step"]  # then every value any row has, in order of first appearance, then seconds
        for row in self.rows:
            columns += [k for k in row if k not in columns and k != "seconds"]
        columns.append("seconds")
        os.makedirs(self.run_dir, exist_ok=True)
        tmp = f"{self.csv_path}.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for r in self.rows:  # exact floats (repr); a value a row lacks (metrics changed on resume) is empty
                cells = {k: repr(float(v)) for k, v in r.items()}
                cells.update(step=str(int(r["step"])), seconds=f"{r['seconds']:.3f}")
                writer.writerow([cells.get(c, "") for c in columns])
        os.replace(tmp, self.csv_path)
        self.plotted = False
        if time.monotonic() - self._plotted_at >= PLOT_EVERY_S:
            self._plot()

    def _plot(self) -> None:
        title = f"{self.cfg.feature_extractor}, {self.cfg.num_samples} samples"
        plot_metrics(self.rows, self.png_path, title=title)
        self._plotted_at, self.plotted = time.monotonic(), True

    def finish(self) -> str | None:
        """Draw eval.png if it lags the history (call it when the evaluations end: the run's end or a stop).
        Returns the picture's path when it drew one (main rank), else None."""
        if not self.is_main or not self.rows or self.plotted:
            return None
        self._plot()
        return self.png_path
