"""In-memory datasets behind the same stream interface as the sharded WebDataset stream.

The sklearn digits (1,797 real 8x8 handwritten digits that ship with scikit-learn) and the 2-D Gaussian
mixtures make every method trainable offline. Order is a pure function of (seed, epoch), so a run resumed at
a recorded (epoch, batch) sees exactly what an uninterrupted run would have seen.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from acl_dist.priors import mixture_centers

TOY_DATA_SEED = 20190521  # fixed: every run seed trains on the same toy sample


def digits_tensors(resolution: int, channels: int) -> tuple[Tensor, Tensor]:
    """sklearn's digits as images [N, C, R, R] in [-1, 1] and labels [N] (bilinear resize from 8x8)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
    if resolution != 8:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 2 - 1).repeat(1, channels, 1, 1)
    return images.contiguous(), torch.tensor(data.target, dtype=torch.int64)


def toy_tensors(modes: int, radius: float, std: float, samples: int) -> tuple[Tensor, Tensor]:
    """A fixed sample of a k-mode 2-D Gaussian mixture [N, 2] with its mode labels [N]."""
    gen = torch.Generator().manual_seed(TOY_DATA_SEED)
    labels = torch.randint(0, modes, (samples,), generator=gen)
    centers = mixture_centers(modes, 2, radius)
    points = centers[labels] + std * torch.randn(samples, 2, generator=gen)
    return points, labels


class TensorStream:
    """Endless per-rank batches from tensors; every rank gets the same number of batches per epoch.

    Epoch e uses the permutation drawn from (seed, e); batch b of rank r holds the samples at positions
    [(b * world + r) * B, ... + B) of it. The remainder that does not fill a batch on every rank is dropped.
    """

    def __init__(self, data: Tensor, labels: Tensor | None, *, batch_size: int, seed: int, rank: int,
                 world_size: int, with_labels: bool):
        if data.shape[0] < batch_size * world_size:
            raise ValueError(f"train.batch_size: {batch_size} x {world_size} processes is more than the "
                             f"{data.shape[0]} samples of the dataset")
        self.data, self.labels, self.with_labels = data, labels, with_labels
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.batches_per_epoch = data.shape[0] // (batch_size * world_size)
        self._epoch, self._batch = 0, 0
        self.stats: dict[str, int] = {}

    @property
    def position(self) -> tuple[int, int]:
        return self._epoch, self._batch

    @property
    def layout(self) -> dict[str, int]:
        """What the order of batches depends on besides the seed: resuming with other values is not exact."""
        return {"world_size": self.world_size}

    def set_position(self, epoch: int, batch: int) -> None:
        self._epoch, self._batch = epoch, batch

    def _order(self, epoch: int) -> Tensor:
        return torch.randperm(self.data.shape[0], generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        while True:
            order = self._order(self._epoch)
            while self._batch < self.batches_per_epoch:
                start = (self._batch * self.world_size + self.rank) * self.batch_size
                index = order[start:start + self.batch_size]
                self._batch += 1
                batch = {"image": self.data[index]}
                if self.with_labels:
                    batch["label"] = self.labels[index]
                yield batch
            self._epoch, self._batch = self._epoch + 1, 0
