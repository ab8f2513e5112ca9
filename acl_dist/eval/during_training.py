"""What the trainer calls every ``eval.every`` steps: ``eval.metrics`` (and, when asked, Parzen).

:func:`build_tracker` turns the recipe's ``eval:`` section and the training source into a
:class:`TrainingEvaluator`: it takes the source's real images for this rank (its in-memory reference set split
across ranks in contiguous shares without repeats: all the digits, or MNIST-5k's 1,000 held-out digits; or this
rank's reference stream), names them for the reference cache (``<run.out_dir>/.fid_cache``, shared by the runs
of one out_dir), and wraps
:class:`~acl_dist.eval.tracker.EvalTracker`. ``evaluate`` returns a dict of metrics (``fid``, ``kid_mean``,
..., ``fid_best``), the same on every rank; the trainer logs each as ``eval/<name>``.

Parzen (``eval.parzen``) follows the GAN paper: images mapped to [0, 1], sigma chosen on a validation split.
Digits have no official test split, so validation and test are drawn from the training data: the number
measures fit to the data, not generalisation. MNIST-5k's come from its held-out 1,000 digits. It runs on
rank 0 with rank 0's samples and is broadcast.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import torch

from acl_dist.data.sources.base import TrainingSource
from acl_dist.distributed import broadcast_float, rank_and_world
from acl_dist.eval.fid import shard_sizes
from acl_dist.eval.parzen import parzen_evaluate
from acl_dist.eval.tracker import EvalTracker
from acl_dist.sections import EvalConfig

logger = logging.getLogger(__name__)
PARZEN_SPLIT = 500  # validation and test points each (GAN paper: 10,000 MNIST test images)


def _memory_real(images: torch.Tensor, cfg: EvalConfig, rank: int, world: int
                 ) -> tuple[int, Callable[[], Iterator[torch.Tensor]]]:
    """(count, batches): every reference image once, split across ranks, so the reference has no repeats.

    Contiguous shares of whole batches, so that the features gathered in rank order are the first ``count``
    images in order, each extracted in the same batch, on any number of processes (KID's random subsets then
    pick the same images)."""
    count = min(cfg.num_samples, len(images))
    sizes = shard_sizes(count, world, cfg.batch_size)
    start = sum(sizes[:rank])
    mine = images[start : start + sizes[rank]]
    return count, lambda: iter(mine.split(cfg.batch_size))


class TrainingEvaluator:
    """``eval.metrics`` (image data) and Parzen log-likelihood (when ``eval.parzen``) at training time."""

    def __init__(self, cfg: EvalConfig, tracker: EvalTracker | None, parzen_data: torch.Tensor | None):
        self.cfg = cfg
        self.tracker = tracker
        self.parzen_data = parzen_data  # [2 * PARZEN_SPLIT, ...] real points on rank 0 (validation, test)

    @property
    def plot_path(self) -> str | None:
        """The evaluation plot (eval.png), when the latest evaluation drew it (at most every PLOT_EVERY_S)."""
        return self.tracker.png_path if self.tracker is not None and self.tracker.plotted else None

    def finish(self) -> str | None:
        """Bring eval.png up to date when evaluations end; its path when it was drawn now (main rank)."""
        return self.tracker.finish() if self.tracker is not None else None

    @property
    def is_best(self) -> bool:
        return self.tracker is not None and self.tracker.is_best

    def state_dict(self) -> dict:  # "fid": the key checkpoints have always used for the tracker's history
        return {"fid": self.tracker.state_dict() if self.tracker is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if self.tracker is not None and state.get("fid"):
            self.tracker.load_state_dict(state["fid"])

    def evaluate(self, step: int, generate: Callable[[int], torch.Tensor]) -> dict[str, float]:
        """Metrics at ``step``; every rank must call it and gets the same values."""
        out = {}
        if self.tracker is not None:
            out.update(self.tracker.evaluate(step, generate))
            if "fid" in out:
                out["fid_best"] = self.tracker.best
        if self.cfg.parzen:
            out["parzen_ll"] = broadcast_float(self._parzen(generate) if rank_and_world()[0] == 0 else None)
        return out

    @torch.no_grad()
    def _parzen(self, generate: Callable[[int], torch.Tensor]) -> float:
        n, b = self.cfg.num_samples, self.cfg.batch_size
        samples = torch.cat([generate(min(b, n - i)).float().cpu() for i in range(0, n, b)])
        real = self.parzen_data
        half = len(real) // 2
        if samples.dim() == 4:  # images: [-1, 1] -> [0, 1], the paper's range and sigma grid
            samples, real = (samples + 1) / 2, (real + 1) / 2
            sigmas = torch.logspace(-1, 0, 10).tolist()
        else:  # vectors (toy data): a wider grid
            sigmas = torch.logspace(-2, 0.5, 12).tolist()
        result = parzen_evaluate(samples, real[:half], real[half:], sigmas)
        logger.info("Parzen log-likelihood %.2f +- %.2f (sigma %.3f)", result.mean, result.stderr, result.sigma)
        return result.mean


def _parzen_data(source: TrainingSource, seed: int) -> torch.Tensor:
    """2 * PARZEN_SPLIT real points (or all there are), shuffled with a fixed seed: validation then test."""
    data = source.real_points(2 * PARZEN_SPLIT, seed)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    return data[order[: 2 * PARZEN_SPLIT]]


def build_tracker(cfg: EvalConfig, source: TrainingSource, seed: int, report_dir: str, cache_dir: str,
                  device: torch.device, rank: int, world: int, progress: bool = False) -> TrainingEvaluator | None:
    """The evaluator of ``cfg`` (the recipe's ``eval:``) for ``source`` (None when there is nothing to evaluate).

    Args:
        seed: the run's seed; the reference stream of a streamed source draws from another one derived from it.
        report_dir: where eval.csv / eval.png go (the run directory; `acl-dist eval` passes its own).
        cache_dir: the reference statistics cache, shared by the runs of one out_dir.
        progress: progress bars while extracting (`acl-dist eval`; not during training, which has its own).
    """
    tracker = None
    if source.data_dim is not None:
        logger.info("eval: %s need images; the %s data gets %s", ", ".join(cfg.metrics), source.name,
                    "Parzen only" if cfg.parzen else "nothing")
    else:
        images = source.reference_images()
        if images is not None:
            count, real = _memory_real(images, cfg, rank, world)
            if count < cfg.num_samples and rank == 0:
                logger.info("eval: %s has %d reference images; reference statistics use all of them", source.name,
                            count)
        else:
            count = cfg.num_samples

            def real() -> Iterator[torch.Tensor]:  # this rank's stream, with a seed of its own
                return source.reference_stream(batch_size=cfg.batch_size, seed=seed, rank=rank, world_size=world)
        tracker = EvalTracker(cfg, report_dir, device, real, cache_dir, source.dataset_key(), real_count=count,
                              progress=progress)
    if tracker is None and not cfg.parzen:
        return None
    parzen = _parzen_data(source, seed) if cfg.parzen and rank == 0 else None
    return TrainingEvaluator(cfg, tracker, parzen)
