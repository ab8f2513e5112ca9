"""What a training source is: its options, its per-rank stream, and the real images evaluation compares with.

A source class is registered under the name recipes use (``data.source``) and declares, without building
anything, its ``Options`` and whether it yields vectors (``data_dim``) or images. Built from its own section and
the image size (``model.resolution``, ``model.channels``), it gives the trainer a resumable stream of
``{"image": [B, C, H, W] in [-1, 1], "label": [B]}`` per rank, and evaluation its reference: an in-memory set of
real images (``reference_images``), or a stream of them with another seed (``reference_stream``), named for the
statistics cache (``dataset_key``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from torch import Tensor

from acl_dist.data.options import DataOptions

_SOURCES: dict[str, type[TrainingSource]] = {}


def register(name: str):
    """Class decorator: make a training source available as ``data.source: name``."""
    def add(cls: type[TrainingSource]) -> type[TrainingSource]:
        _SOURCES[name] = cls
        cls.name = name
        return cls
    return add


class TrainingSource:
    """Base class; subclasses set ``Options`` and implement ``stream`` (and the reference methods they have)."""

    name = ""
    Options: type[DataOptions] = DataOptions
    data_dim: int | None = None  # vector size of vector data (the 2-D toys); None for images
    labelled = True  # batches can carry labels (the toys' mode labels are not classes: no)

    def __init__(self, options: DataOptions, resolution: int, channels: int):
        self.options, self.resolution, self.channels = options, resolution, channels

    @classmethod
    def check(cls, options: DataOptions, resolution: int, channels: int) -> None:
        """Raise ConfigError (naming the key) for what this source cannot read; the options' own ``check`` ran."""

    def stream(self, *, batch_size: int, seed: int, rank: int, world_size: int, with_labels: bool) -> Iterable:
        """This rank's endless batches, with ``position`` / ``set_position`` for exact resume."""
        raise NotImplementedError

    def reference_images(self) -> Tensor | None:
        """The real images evaluation compares against, [N, C, R, R] in [-1, 1]; None when they come as a stream."""
        return None

    def reference_stream(self, *, batch_size: int, seed: int, rank: int, world_size: int) -> Iterator[Tensor]:
        """This rank's real images for evaluation when there is no in-memory set: the training stream with
        another seed (so the reference is not the next training batches)."""
        stream = self.stream(batch_size=batch_size, seed=seed + 7919, rank=rank, world_size=world_size,
                             with_labels=False)
        return (b["image"] for b in stream)

    def real_points(self, count: int, seed: int, batch_size: int = 100) -> Tensor:
        """At least ``count`` real samples where there are that many (images, or vectors for vector data), for
        the Parzen estimate: the reference set, or the first batches of the reference stream."""
        import torch

        images = self.reference_images()
        if images is not None:
            return images
        batches, got = self.reference_stream(batch_size=batch_size, seed=seed, rank=0, world_size=1), []
        while sum(len(x) for x in got) < count:
            got.append(next(batches))
        return torch.cat(got)

    def dataset_key(self) -> str:
        """Names the reference data for the statistics cache (with the image size)."""
        return f"{self.name}|{self.resolution}px|{self.channels}ch"


def source_names() -> list[str]:
    return sorted(_SOURCES)


def source_class(name: str) -> type[TrainingSource]:
    if name not in _SOURCES:
        raise KeyError(f"unknown data source {name!r}; known: {', '.join(sorted(_SOURCES))}")
    return _SOURCES[name]
