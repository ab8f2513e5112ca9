"""scikit-learn's 1,797 real 8x8 handwritten digits, in memory, resized to the recipe's resolution.

They have no test split: evaluation compares against all of them (the number measures fit to the data, not
generalisation; MNIST-5k's held-out set does the latter).

The file is read straight from the installed scikit-learn (``sklearn/datasets/data/digits.csv.gz``, what
``load_digits`` reads) without importing scikit-learn: its import costs about 1.7 s of every run's start on one
CPU thread, more than a tiny run trains, and the campaign and the test suite start hundreds of runs.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from acl_dist.data.memory import TensorStream
from acl_dist.data.sources.base import TrainingSource, register
from acl_dist.errors import DataError

COUNT, SIDE, LEVELS = 1797, 8, 16  # images, pixels a side, grey levels 0..16


@functools.lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as float64 [1797, 8, 8] in 0..16 and labels int64 [1797], as ``load_digits`` gives them.

    Raises:
        DataError: scikit-learn is not installed, or its file is not the 1,797 x (64 + 1) table it should be.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data.source digits reads the digits shipped with scikit-learn, and it is not installed: "
                        "pip install scikit-learn")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "datasets", "data", "digits.csv.gz")
    with gzip.open(path, "rt") as text:
        table = np.loadtxt(text, delimiter=",")  # [1797, 65]: 64 pixels, then the label
    if table.shape != (COUNT, SIDE * SIDE + 1) or table[:, :-1].min() < 0 or table[:, :-1].max() > LEVELS:
        raise DataError(f"{path}: expected {COUNT} rows of 64 pixels in 0..16 and a label, got {table.shape}")
    return table[:, :-1].reshape(-1, SIDE, SIDE), table[:, -1].astype(np.int64)


def digits_tensors(resolution: int, channels: int) -> tuple[Tensor, Tensor]:
    """sklearn's digits as images [N, C, R, R] in [-1, 1] and labels [N] (bilinear resize from 8x8)."""
    pixels, labels = digits_arrays()
    images = torch.tensor(pixels, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
    if resolution != 8:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 2 - 1).repeat(1, channels, 1, 1)
    return images.contiguous(), torch.tensor(labels, dtype=torch.int64)


@register("digits")
class DigitsSource(TrainingSource):
    def stream(self, *, batch_size: int, seed: int, rank: int, world_size: int, with_labels: bool) -> TensorStream:
        return TensorStream(*digits_tensors(self.resolution, self.channels), batch_size=batch_size, seed=seed,
                            rank=rank, world_size=world_size, with_labels=with_labels)

    def reference_images(self) -> Tensor:
        return digits_tensors(self.resolution, self.channels)[0]  # [1797, C, R, R]
