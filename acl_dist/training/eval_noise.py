"""The noise evaluation draws: its own, seeded from the run's seed, the step and the rank.

Why: priors draw from torch's global RNG, which is also training's noise. An evaluation that drew from it
would move every later training draw, so ``eval.every`` would change the weights, a densely evaluated run
would not be the exact prefix of a longer one, and budgets could not be read off one long curve. Forking
the global RNG around an evaluation and seeding it from (seed, step, rank) keeps training's stream untouched
and gives every evaluation reproducible noise of its own (other on every rank: the ranks' samples add up
to ``eval.num_samples`` distinct images).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

SEED_OFFSET = 70_001  # added to run.seed; other offsets: recalibration's 90,001, the grids' fixed noise 4,242


def evaluation_seed(seed: int, step: int, rank: int) -> int:
    """A seed per (run seed, step, rank); distinct for every step and rank of a run (rank < 1,000)."""
    return ((seed + SEED_OFFSET) * 1_000_003 + step) * 1_000 + rank


@contextlib.contextmanager
def evaluation_noise(seed: int, step: int, rank: int, device: torch.device) -> Iterator[None]:
    """Within the block the global RNG (and the CUDA one on ``device``) is seeded for this evaluation; after
    it, the RNG states are those of before the block."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(evaluation_seed(seed, step, rank))
        yield
