"""FIDTracker: FID history in run_dir/fid.csv, the curve, best/is_best, cache reuse and resume."""

import csv
import math

import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from acl_dist.config import EvalConfig
from acl_dist.eval.extractors import MissingWeightsError
from acl_dist.eval.tracker import FIDTracker


def digits(n: int, offset: int = 0) -> torch.Tensor:
    x = torch.tensor(load_digits().images[offset : offset + n], dtype=torch.float32) / 8.0 - 1.0
    return x.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2).unsqueeze(1)  # [n, 1, 16, 16]


def generator(noise: float):
    g = torch.Generator().manual_seed(0)
    pool = iter(digits(100, offset=500).split(25))
    return lambda n: (next(pool)[:n] + noise * torch.randn(n, 1, 16, 16, generator=g)).clamp(-1, 1)


def rows(run_dir):
    with open(run_dir / "fid.csv", newline="") as f:
        return [(int(r["step"]), float(r["fid"])) for r in csv.DictReader(f)]


def test_tracker_writes_history_curve_and_best(tmp_path):
    cfg = EvalConfig(every=1, num_samples=100, batch_size=25)
    run_dir, cache = tmp_path / "run", str(tmp_path / "cache")
    calls = []

    def real_batches():
        calls.append(1)
        return digits(100).split(40)

    tracker = FIDTracker(cfg, str(run_dir), "cpu", real_batches, cache_dir=cache, dataset_key="digits:16")
    assert tracker.best == math.inf
    bad = tracker.evaluate(100, generator(0.8))
    assert tracker.is_best and tracker.best == bad
    good = tracker.evaluate(200, generator(0.0))
    assert good < bad and tracker.is_best and tracker.best == good
    worse = tracker.evaluate(300, generator(0.5))
    assert not tracker.is_best and tracker.best == good
    assert rows(run_dir) == [(100, bad), (200, good), (300, worse)]
    with Image.open(run_dir / "fid.png") as im:
        assert im.format == "PNG"

    # resumed from the step-200 checkpoint: the reference statistics come from the cache, and the rows
    # from step 200 on are replaced, so 'best' forgets the rewound history
    resumed = FIDTracker(cfg, str(run_dir), "cpu", real_batches, cache_dir=cache, dataset_key="digits:16")
    again = resumed.evaluate(200, generator(0.5))
    assert len(calls) == 1
    assert rows(run_dir) == [(100, bad), (200, again)]
    assert resumed.best == min(bad, again)


def test_tracker_fails_at_construction_without_inception_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = EvalConfig(feature_extractor="inception-v3-compat")
    with pytest.raises(MissingWeightsError, match="eval.feature_extractor_weights_path"):
        FIDTracker(cfg, str(tmp_path / "run"), "cpu", lambda: iter(()))


def test_tracker_state_round_trips_through_a_checkpoint(tmp_path):
    cfg = EvalConfig(every=1, num_samples=100, batch_size=25)
    first = FIDTracker(cfg, str(tmp_path / "run"), "cpu", lambda: digits(100).split(50))
    a = first.evaluate(1, generator(0.8))
    state = first.state_dict()
    first.evaluate(2, generator(0.0))
    # another run dir, so the CSV cannot help: the checkpoint's state alone restores history and best
    second = FIDTracker(cfg, str(tmp_path / "other"), "cpu", lambda: digits(100).split(50))
    second.load_state_dict(state)
    assert second.best == a
    b = second.evaluate(2, generator(0.5))
    assert rows(tmp_path / "other") == [(1, a), (2, b)]
    assert second.is_best == (b < a)
