"""In-memory data behind the same stream interface as the sharded WebDataset stream (the digits, MNIST-5k and
toy sources use it). Order is a pure function of (seed, epoch), so a run resumed at a recorded (epoch, batch)
sees exactly what an uninterrupted run would have seen.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor


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
