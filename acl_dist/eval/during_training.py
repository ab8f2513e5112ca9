"""What the trainer calls every ``eval.every`` steps: ``eval.metrics`` (and, when asked, Parzen) from a recipe.

:func:`build_tracker` turns a recipe into a :class:`TrainingEvaluator`: it picks the real images for this
rank (an in-memory reference set split across ranks in contiguous shares without repeats: all the digits, or
MNIST-5k's 1,000 held-out digits; or this rank's shard stream), names them for the reference cache
(``<run.out_dir>/.fid_cache``, shared by the runs of one out_dir), and wraps
:class:`~acl_dist.eval.tracker.EvalTracker`. ``evaluate`` returns a dict of metrics (``fid``, ``kid_mean``,
..., ``fid_best``), the same on every rank; the trainer logs each as ``eval/<name>``.

Parzen (``eval.parzen``) follows the GAN paper: images mapped to [0, 1], sigma chosen on a validation split.
Digits have no official test split, so validation and test are drawn from the training data: the number
measures fit to the data, not generalisation. MNIST-5k's come from its held-out 1,000 digits. It runs on
rank 0 with rank 0's samples and is broadcast.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator

import torch

from acl_dist.config import Recipe
from acl_dist.distributed import broadcast_float, rank_and_world
from acl_dist.eval.fid import shard_sizes
from acl_dist.eval.parzen import parzen_evaluate
from acl_dist.eval.tracker import EvalTracker

logger = logging.getLogger(__name__)
PARZEN_SPLIT = 500  # validation and test points each (GAN paper: 10,000 MNIST test images)


def dataset_key(recipe: Recipe) -> str:
    """Names the real data for the statistics cache: source, content (manifest hash), resolution, channels."""
    d, m = recipe.data, recipe.model
    what = "mnist5k-heldout" if d.source == "mnist5k" else d.source
    if d.source == "shards":
        what = f"shards:{d.shards}"
        if d.shards.endswith(".json") and os.path.isfile(d.shards):
            with open(d.shards, "rb") as f:
                what = f"shards-manifest:{hashlib.sha1(f.read()).hexdigest()}"
    return f"{what}|{m.resolution}px|{m.channels}ch"


def reference_images(recipe: Recipe) -> torch.Tensor | None:
    """The real images an in-memory source is evaluated against, [N, C, R, R] in [-1, 1]: every digit (sklearn's
    digits have no test split), or MNIST-5k's 1,000 held-out digits; None for shards and toys."""
    m = recipe.model
    if recipe.data.source == "digits":
        from acl_dist.data.memory import digits_tensors

        return digits_tensors(m.resolution, m.channels)[0]  # [1797, C, R, R]
    if recipe.data.source == "mnist5k":
        from acl_dist.data.mnist5k import mnist5k_tensors

        return mnist5k_tensors(m.resolution, m.channels, "heldout")[0]  # [1000, C, R, R]
    return None


def _memory_real(recipe: Recipe, rank: int, world: int) -> tuple[int, Callable[[], Iterator[torch.Tensor]]]:
    """(count, batches): every reference image once, split across ranks, so the reference has no repeats.

    Contiguous shares of whole batches, so that the features gathered in rank order are the first ``count``
    images in order, each extracted in the same batch, on any number of processes (KID's random subsets then
    pick the same images)."""
    images = reference_images(recipe)
    count = min(recipe.eval.num_samples, len(images))
    sizes = shard_sizes(count, world, recipe.eval.batch_size)
    start = sum(sizes[:rank])
    mine = images[start : start + sizes[rank]]
    return count, lambda: iter(mine.split(recipe.eval.batch_size))


def _stream_real(recipe: Recipe, rank: int, world: int) -> Callable[[], Iterator[torch.Tensor]]:
    """This rank's shard stream, with its own seed so the reference is not the next training batches."""
    from acl_dist.data import build_stream

    def batches() -> Iterator[torch.Tensor]:
        stream = build_stream(recipe, rank=rank, world_size=world, with_labels=False,
                              batch_size=recipe.eval.batch_size, seed=recipe.run.seed + 7919)
        return (b["image"] for b in stream)

    return batches


class TrainingEvaluator:
    """``eval.metrics`` (image data) and Parzen log-likelihood (when ``eval.parzen``) at training time."""

    def __init__(self, recipe: Recipe, tracker: EvalTracker | None, parzen_data: torch.Tensor | None):
        self.recipe = recipe
        self.tracker = tracker
        self.parzen_data = parzen_data  # [2 * PARZEN_SPLIT, ...] real points on rank 0 (validation, test)

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
        if self.recipe.eval.parzen:
            out["parzen_ll"] = broadcast_float(self._parzen(generate) if rank_and_world()[0] == 0 else None)
        return out

    @torch.no_grad()
    def _parzen(self, generate: Callable[[int], torch.Tensor]) -> float:
        n, b = self.recipe.eval.num_samples, self.recipe.eval.batch_size
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


def _parzen_data(recipe: Recipe) -> torch.Tensor:
    """2 * PARZEN_SPLIT real points (or all there are), shuffled with a fixed seed: validation then test."""
    from acl_dist.data.memory import toy_tensors

    d = recipe.data
    if d.source in ("digits", "mnist5k"):
        data = reference_images(recipe)
    elif d.source == "toy":
        data, _ = toy_tensors(d.toy_modes, d.toy_radius, d.toy_std, d.toy_samples)
    else:
        batches, data = _stream_real(recipe, 0, 1)(), []
        while sum(len(x) for x in data) < 2 * PARZEN_SPLIT:
            data.append(next(batches))
        data = torch.cat(data)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    return data[order[: 2 * PARZEN_SPLIT]]


def build_tracker(recipe: Recipe, device: torch.device, rank: int, world: int,
                  report_dir: str | None = None) -> TrainingEvaluator | None:
    """The trainer's evaluator for ``recipe`` (None when there is nothing to evaluate).

    ``report_dir``: where eval.csv / eval.png go (default the run directory; `acl-dist eval` passes its own)."""
    e = recipe.eval
    tracker = None
    if recipe.data.source == "toy":
        logger.info("eval: %s need images; the 2-D toy data gets %s", ", ".join(e.metrics),
                    "Parzen only" if e.parzen else "nothing")
    else:
        if recipe.data.source in ("digits", "mnist5k"):
            count, real = _memory_real(recipe, rank, world)
            if count < e.num_samples and rank == 0:
                logger.info("eval: %s has %d reference images; reference statistics use all of them",
                            recipe.data.source, count)
        else:
            count, real = e.num_samples, _stream_real(recipe, rank, world)
        cache_dir = os.path.join(recipe.run.out_dir, ".fid_cache")
        tracker = EvalTracker(e, report_dir or recipe.run_dir, device, real, cache_dir, dataset_key(recipe),
                              real_count=count)
    if tracker is None and not e.parzen:
        return None
    parzen = _parzen_data(recipe) if e.parzen and rank == 0 else None
    return TrainingEvaluator(recipe, tracker, parzen)
