"""What rank 0 writes while training: the metrics log (JSONL, and the trackers of ``log.trackers``) and sample
pictures."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

from torch import Tensor

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


def save_samples(samples: Tensor, path: str, reference: Tensor | None = None) -> str:
    """Images [B, C, H, W] in [-1, 1] as a PNG grid; 2-D points [B, 2] as a scatter over the data."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if samples.dim() == 4:
        from torchvision.utils import save_image

        nrow = max(1, int(round(samples.shape[0] ** 0.5)))
        save_image((samples.clamp(-1, 1) + 1) / 2, path, nrow=nrow, padding=1)
        return path
    return save_scatter(samples, path, reference)


def save_scatter(points: Tensor, path: str, reference: Tensor | None = None, title: str = "") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        ax.scatter(*reference[:, :2].T.cpu().numpy(), s=2, c="tab:red", alpha=0.3, label="data")
    ax.scatter(*points[:, :2].T.cpu().numpy(), s=4, c="tab:cyan", label="generated")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
