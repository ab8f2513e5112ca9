"""A fixed sample of a k-mode 2-D Gaussian mixture, for the ACL paper's prior analysis (Fig. 11): vector data.

The sample is the same for every run seed (``TOY_DATA_SEED``), so runs differ in their training only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from acl_dist.data.memory import TensorStream
from acl_dist.data.options import DataOptions
from acl_dist.data.sources.base import TrainingSource, register
from acl_dist.errors import ConfigError
from acl_dist.priors import mixture_centers

TOY_DATA_SEED = 20190521  # fixed: every run seed trains on the same toy sample


@dataclass
class ToyOptions(DataOptions):
    """The mixture: its modes on a circle, their spread, and the size of the fixed training set."""

    toy_modes: int = 4  # Gaussian modes placed evenly on a circle
    toy_radius: float = 2.0  # radius of that circle
    toy_std: float = 0.1  # standard deviation of each mode
    toy_samples: int = 20000  # size of the fixed training set

    def check(self) -> None:
        super().check()
        if self.augment:
            raise ConfigError("data.augment", "DiffAugment transforms images; toy data are 2-D points")
        if self.augment_ops:
            raise ConfigError("data.augment_ops", "stylegan2-ada's operations transform images; toy data are 2-D "
                              "points")
        for key in ("toy_modes", "toy_samples"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"data.{key}", f"must be positive, got {getattr(self, key)}")


def toy_tensors(modes: int, radius: float, std: float, samples: int) -> tuple[Tensor, Tensor]:
    """A fixed sample of a k-mode 2-D Gaussian mixture [N, 2] with its mode labels [N]."""
    gen = torch.Generator().manual_seed(TOY_DATA_SEED)
    labels = torch.randint(0, modes, (samples,), generator=gen)
    centers = mixture_centers(modes, 2, radius)
    points = centers[labels] + std * torch.randn(samples, 2, generator=gen)
    return points, labels


@register("toy")
class ToySource(TrainingSource):
    Options = ToyOptions
    data_dim = 2
    labelled = False

    def points(self) -> tuple[Tensor, Tensor]:
        o = self.options
        return toy_tensors(o.toy_modes, o.toy_radius, o.toy_std, o.toy_samples)

    def real_points(self, count: int, seed: int, batch_size: int = 100) -> Tensor:
        return self.points()[0]  # [N, 2]: the whole fixed sample

    def stream(self, *, batch_size: int, seed: int, rank: int, world_size: int, with_labels: bool) -> TensorStream:
        return TensorStream(*self.points(), batch_size=batch_size, seed=seed, rank=rank, world_size=world_size,
                            with_labels=with_labels)
