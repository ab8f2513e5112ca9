"""The training sources, by the names recipes use (``data.source``); a new source is one file here, added to
the import list below, plus its test. Each owns its options (``Options``), its stream and its reference data
(``base.TrainingSource``)."""

from __future__ import annotations

from acl_dist.data.sources import digits, mnist5k, shards, toy  # noqa: F401  (their @register lines run)
from acl_dist.data.sources.base import TrainingSource, source_class, source_names

__all__ = ["TrainingSource", "open_source", "source_class", "source_names"]


def open_source(options, resolution: int, channels: int) -> TrainingSource:
    """The source ``options.source`` names, for images of ``resolution`` x ``channels``."""
    return source_class(options.source)(options, resolution, channels)
