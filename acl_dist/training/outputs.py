"""What rank 0 writes while training: the metrics log (JSONL, and the trackers of ``log.trackers``). Pictures are
drawn by ``acl_dist.pictures``, which the tools use too."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

from acl_dist.training.trackers import Tracker


class MetricsLog:
    """Appends one JSON object per logging tick to ``RUN/metrics.jsonl`` and sends it to the trackers (rank 0:
    ``enabled``; the others write nothing)."""

    def __init__(self, run_dir: str, enabled: bool, trackers: Sequence[Tracker] = ()):
        self.enabled, self.file, self.trackers = enabled, None, list(trackers) if enabled else []
        if not enabled:
            return
        os.makedirs(run_dir, exist_ok=True)
        self.file = open(os.path.join(run_dir, "metrics.jsonl"), "a")

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")
        self.file.flush()
        for tracker in self.trackers:
            tracker.scalars(step, values)

    def image(self, step: int, key: str, path: str) -> None:
        """A picture the run wrote (``path``) to every tracker, as ``key`` at ``step``."""
        for tracker in self.trackers:
            tracker.image(step, key, path)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        for tracker in self.trackers:
            tracker.close()
