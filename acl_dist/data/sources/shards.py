"""WebDataset tar shards (``acl-dist shard`` writes them): local files, URLs or ``pipe:`` commands, streamed per
rank with exact resume (:mod:`acl_dist.data.stream`). Evaluation reads the same shards with another seed."""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass

from acl_dist.data.options import DataOptions
from acl_dist.data.sources.base import TrainingSource, register
from acl_dist.errors import ConfigError

REMOTE = ("pipe:", "http://", "https://", "s3://", "gs://")


@dataclass
class ShardOptions(DataOptions):
    """Which shards, how they are read, and what happens to a corrupt sample."""

    shards: str = ""  # brace pattern, manifest.json, or pipe: URL pattern
    num_workers: int = 0  # data-loading worker processes per rank
    shuffle_buffer: int = 1000  # sample shuffle buffer per worker
    flip: bool = False  # random horizontal flip (never for digits: it changes the class)
    corrupt: str = "skip"  # skip: drop and count corrupt samples; raise: stop on the first one
    retries: int = 2  # a failed pipe:/remote shard is opened again this many times before `corrupt` applies

    def check(self) -> None:
        super().check()
        if self.corrupt not in ("skip", "raise"):
            raise ConfigError("data.corrupt", f"{self.corrupt!r} is not one of skip, raise")
        if self.retries < 0:
            raise ConfigError("data.retries", f"{self.retries}: a retry count is 0 or more")
        if self.num_workers < 0:
            raise ConfigError("data.num_workers", f"{self.num_workers}: a worker count is 0 or more")
        if not self.shards:
            raise ConfigError("data.shards", "missing: source 'shards' needs a brace pattern, manifest.json or "
                              "pipe: URL pattern")
        check_local_shards(self.shards)


def check_local_shards(pattern: str) -> None:
    """Local shard paths must exist now; remote ones (pipe:, http) are checked when the stream opens."""
    if pattern.startswith(REMOTE):
        return
    if pattern.endswith(".json"):
        if not os.path.isfile(pattern):
            raise ConfigError("data.shards", f"manifest not found: {pattern}")
        return
    try:
        import braceexpand

        paths = list(braceexpand.braceexpand(pattern))
    except ImportError:  # pragma: no cover - braceexpand comes with webdataset
        paths = glob.glob(pattern)
    missing = [p for p in paths if not os.path.isfile(p)]
    if not paths or missing:
        raise ConfigError("data.shards", f"{len(missing) or 'no'} shard file(s) not found, e.g. "
                          f"{(missing or [pattern])[0]}")


@register("shards")
class ShardSource(TrainingSource):
    Options = ShardOptions

    def stream(self, *, batch_size: int, seed: int, rank: int, world_size: int, with_labels: bool):
        from acl_dist.data.stream import build_shard_stream  # webdataset and its workers, only when streaming

        return build_shard_stream(self.options, resolution=self.resolution, channels=self.channels,
                                  batch_size=batch_size, seed=seed, rank=rank, world_size=world_size,
                                  with_labels=with_labels)

    def dataset_key(self) -> str:
        """The shards by their manifest's content where there is one (a re-written set gets new statistics)."""
        what = f"shards:{self.options.shards}"
        if self.options.shards.endswith(".json") and os.path.isfile(self.options.shards):
            with open(self.options.shards, "rb") as f:
                what = f"shards-manifest:{hashlib.sha1(f.read()).hexdigest()}"
        return f"{what}|{self.resolution}px|{self.channels}ch"
