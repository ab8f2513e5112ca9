"""scikit-learn's 1,797 real 8x8 handwritten digits, in memory, resized to the recipe's resolution.

They have no test split: evaluation compares against all of them (the number measures fit to the data, not
generalisation; MNIST-5k's held-out set does the latter).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from acl_dist.data.memory import TensorStream
from acl_dist.data.sources.base import TrainingSource, register


def digits_tensors(resolution: int, channels: int) -> tuple[Tensor, Tensor]:
    """sklearn's digits as images [N, C, R, R] in [-1, 1] and labels [N] (bilinear resize from 8x8)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
    if resolution != 8:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 2 - 1).repeat(1, channels, 1, 1)
    return images.contiguous(), torch.tensor(data.target, dtype=torch.int64)


@register("digits")
class DigitsSource(TrainingSource):
    def stream(self, *, batch_size: int, seed: int, rank: int, world_size: int, with_labels: bool) -> TensorStream:
        return TensorStream(*digits_tensors(self.resolution, self.channels), batch_size=batch_size, seed=seed,
                            rank=rank, world_size=world_size, with_labels=with_labels)

    def reference_images(self) -> Tensor:
        return digits_tensors(self.resolution, self.channels)[0]  # [1797, C, R, R]
