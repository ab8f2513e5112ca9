"""FID during training: one object the trainer calls every ``eval.every`` steps on every rank.

It builds the extractor at construction (so missing weights stop a run at start-up, not at step 40,000),
computes the reference statistics once (from the on-disk cache when there is one), and on the main rank keeps
``run_dir/fid.csv`` and ``run_dir/fid.png`` up to date. ``best`` and ``is_best`` are the same on every rank
(decided on rank 0 and broadcast), so a trainer may use them to trigger a collective best-FID checkpoint.

Resuming: ``state_dict``/``load_state_dict`` carry the history in checkpoints; without them the CSV already
in the run directory is read back. Either way rows at or after the step being evaluated are dropped (the run
was rewound to an earlier checkpoint), so the curve and ``best`` never mix two histories.
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

from acl_dist.eval.extractors import build_extractor
from acl_dist.eval.fid import (
    FeatureStats,
    broadcast_float,
    compute_fid,
    rank_and_world,
    real_statistics,
    stats_cache_path,
)
from acl_dist.eval.pictures import plot_curve, read_curve

logger = logging.getLogger(__name__)
FIELDS = ("step", "fid", "seconds")


class EvalFields(Protocol):
    """The fields of ``acl_dist.config.EvalConfig`` the tracker reads."""

    num_samples: int
    feature_extractor: str
    feature_extractor_weights_path: str
    batch_size: int


class _Lazy:
    """An iterable that calls ``make()`` when first iterated: the data stream is not opened on a cache hit."""

    def __init__(self, make: Callable[[], Iterable[torch.Tensor]]):
        self.make = make

    def __iter__(self):
        return iter(self.make())


class FIDTracker:
    """Distributed FID at training time, with a CSV history, a curve and the best value so far.

    Args:
        cfg: the recipe's ``eval`` section (num_samples, feature_extractor, its weights path, batch_size).
        run_dir: where ``fid.csv`` and ``fid.png`` are written (main rank only).
        device: where features are extracted.
        real_batches: returns an iterable of this rank's real images ([-1, 1], [B, C, H, W]); called once,
            and only when the reference statistics are not cached.
        cache_dir: directory of cached reference statistics; "" disables the disk cache.
        dataset_key: identifies the real data (dataset name or manifest hash, resolution, channels); the cache
            key together with the extractor and sample count. "" disables the disk cache.
        real_count: real images in the reference statistics (default ``cfg.num_samples``; fewer when the
            dataset is smaller, e.g. the 1,797 digits, so that no image counts twice).
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
    ):
        self.cfg = cfg
        self.run_dir = run_dir
        self.device = torch.device(device)
        self.real_batches = real_batches
        self.real_count = real_count or cfg.num_samples
        self.extractor = build_extractor(cfg.feature_extractor, cfg.feature_extractor_weights_path, self.device)
        self.cache_path = (
            stats_cache_path(cache_dir, dataset_key, cfg.feature_extractor, self.real_count)
            if cache_dir and dataset_key
            else None
        )
        self.dataset_key = dataset_key
        self.csv_path = os.path.join(run_dir, "fid.csv")
        self.png_path = os.path.join(run_dir, "fid.png")
        self.rows: list[dict] = self._read_history()
        self._best = min((r["fid"] for r in self.rows), default=math.inf)
        self._real: FeatureStats | None = None
        self.is_best = False  # whether the latest evaluate() beat every earlier one

    @property
    def is_main(self) -> bool:
        return rank_and_world()[0] == 0

    def _read_history(self) -> list[dict]:
        if self.is_main and os.path.isfile(self.csv_path):
            return read_curve(self.csv_path)
        return []

    @property
    def best(self) -> float:
        """Lowest FID so far, the same on every rank after an evaluation (inf before any)."""
        return self._best

    def state_dict(self) -> dict:
        """History and best (plain data, for checkpoints); rank 0's are the ones that count."""
        return {"rows": [dict(r) for r in self.rows], "best": self._best}

    def load_state_dict(self, state: dict) -> None:
        """Back to a checkpoint's history: the CSV's later rows are dropped at the next evaluate()."""
        self.rows = [dict(r) for r in state.get("rows", [])]
        self._best = float(state.get("best", math.inf))

    def real_stats(self) -> FeatureStats:
        """Reference statistics, computed (or loaded) on the first call; every rank must call it."""
        if self._real is None:
            batches = _Lazy(self.real_batches)  # the data stream is opened only on a cache miss
            self._real = real_statistics(
                batches, self.extractor, self.real_count, self.cache_path, self.dataset_key
            )
        return self._real

    def evaluate(self, step: int, generate: Callable[[int], torch.Tensor]) -> float:
        """FID of the generator at ``step``; every rank must call it and gets the same value.

        ``generate(n)`` returns n images in [-1, 1], [n, C, H, W], from this rank's generator; it is called
        under no_grad, and putting the nets in eval mode (or using the EMA copy) is the caller's business.
        """
        start = time.time()
        fid = compute_fid(
            generate, self.cfg.num_samples, self.real_stats(), self.extractor, self.cfg.batch_size, self.device
        )
        seconds = time.time() - start
        earlier = min((r["fid"] for r in self.rows if r["step"] < step), default=math.inf)
        best_before = broadcast_float(earlier if self.is_main else None)
        self.is_best = fid < best_before
        self._best = min(best_before, fid)
        if self.is_main:
            self._record(step, fid, seconds)
        logger.info("step %d: FID %.4f (%s, %d samples, %.1f s)%s", step, fid, self.cfg.feature_extractor,
                    self.cfg.num_samples, seconds, " best" if self.is_best else "")
        return fid

    def _record(self, step: int, fid: float, seconds: float) -> None:
        """Append to the history (dropping rows a resume rewound past), rewrite the CSV and the curve."""
        self.rows = [r for r in self.rows if r["step"] < step]
        self.rows.append({"step": float(step), "fid": fid, "seconds": seconds})
        os.makedirs(self.run_dir, exist_ok=True)
        tmp = f"{self.csv_path}.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(FIELDS)
            for r in self.rows:
                writer.writerow([int(r["step"]), repr(float(r["fid"])), f"{r['seconds']:.3f}"])
        os.replace(tmp, self.csv_path)
        title = f"FID ({self.cfg.feature_extractor}, {self.cfg.num_samples} samples)"
        plot_curve(self.rows, self.png_path, title=title)
