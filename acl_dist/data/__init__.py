"""Data: the stream every recipe reads (in-memory digits, MNIST-5k, toys or WebDataset shards), shard writing,
video."""

from __future__ import annotations

from acl_dist.config import Recipe

SOURCES = ("digits", "mnist5k", "toy", "shards")


def data_dim(recipe: Recipe) -> int | None:
    """Vector size for vector data (the 2-D toys); None for images."""
    return 2 if recipe.data.source == "toy" else None


def build_stream(recipe: Recipe, *, rank: int, world_size: int, with_labels: bool, batch_size: int | None = None,
                 seed: int | None = None):
    """The per-rank batch stream for a recipe: iterable of {"image", ["label"]}, with set_position()."""
    from acl_dist.data.memory import TensorStream, digits_tensors, toy_tensors

    d, m = recipe.data, recipe.model
    batch_size = batch_size or recipe.train.batch_size
    seed = recipe.run.seed if seed is None else seed
    common = dict(batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, with_labels=with_labels)
    if d.source == "digits":
        return TensorStream(*digits_tensors(m.resolution, m.channels), **common)
    if d.source == "mnist5k":
        from acl_dist.data.mnist5k import mnist5k_tensors

        return TensorStream(*mnist5k_tensors(m.resolution, m.channels, "train"), **common)
    if d.source == "toy":
        return TensorStream(*toy_tensors(d.toy_modes, d.toy_radius, d.toy_std, d.toy_samples), **common)
    from acl_dist.data.stream import build_shard_stream

    return build_shard_stream(d, resolution=m.resolution, channels=m.channels, **common)
