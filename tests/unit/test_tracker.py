"""EvalTracker: metric history in run_dir/eval.csv, the curves, best/is_best, cache reuse, resume, old fid.csv."""

import csv
import math

import pytest
import torch
from PIL import Image

from acl_dist.config import EvalConfig
from acl_dist.eval.extractors import MissingWeightsError
from acl_dist.eval.tracker import EvalTracker, read_history
from tests.images import digits


def generator(noise: float):
    g = torch.Generator().manual_seed(0)
    pool = iter(digits(100, offset=500).split(25))
    return lambda n: (next(pool)[:n] + noise * torch.randn(n, 1, 16, 16, generator=g)).clamp(-1, 1)


def rows(run_dir):
    with open(run_dir / "eval.csv", newline="") as f:
        return [(int(r["step"]), float(r["fid"])) for r in csv.DictReader(f)]


def test_tracker_writes_history_curve_and_best(tmp_path):
    cfg = EvalConfig(every=1, num_samples=100, batch_size=25)
    run_dir, cache = tmp_path / "run", str(tmp_path / "cache")
    calls = []

    def real_batches():
        calls.append(1)
        return digits(100).split(40)

    tracker = EvalTracker(cfg, str(run_dir), "cpu", real_batches, cache_dir=cache, dataset_key="digits:16")
    assert tracker.best == math.inf
    bad = tracker.evaluate(100, generator(0.8))["fid"]
    assert tracker.is_best and tracker.best == bad
    good = tracker.evaluate(200, generator(0.0))["fid"]
    assert good < bad and tracker.is_best and tracker.best == good
    worse = tracker.evaluate(300, generator(0.5))["fid"]
    assert not tracker.is_best and tracker.best == good
    assert rows(run_dir) == [(100, bad), (200, good), (300, worse)]
    assert tracker.finish() == str(run_dir / "eval.png")
    with Image.open(run_dir / "eval.png") as im:
        assert im.format == "PNG"

    # resumed from the step-200 checkpoint: the reference statistics come from the cache, and the rows
    # from step 200 on are replaced, so 'best' forgets the rewound history
    resumed = EvalTracker(cfg, str(run_dir), "cpu", real_batches, cache_dir=cache, dataset_key="digits:16")
    again = resumed.evaluate(200, generator(0.5))["fid"]
    assert len(calls) == 1
    assert rows(run_dir) == [(100, bad), (200, again)]
    assert resumed.best == min(bad, again)


def test_tracker_fails_at_construction_without_inception_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = EvalConfig(feature_extractor="inception-v3-compat")
    with pytest.raises(MissingWeightsError, match="eval.feature_extractor_weights_path"):
        EvalTracker(cfg, str(tmp_path / "run"), "cpu", lambda: iter(()))


def test_tracker_state_round_trips_through_a_checkpoint(tmp_path):
    cfg = EvalConfig(every=1, num_samples=100, batch_size=25)
    first = EvalTracker(cfg, str(tmp_path / "run"), "cpu", lambda: digits(100).split(50))
    a = first.evaluate(1, generator(0.8))["fid"]
    state = first.state_dict()
    first.evaluate(2, generator(0.0))
    # another run dir, so the CSV cannot help: the checkpoint's state alone restores history and best
    second = EvalTracker(cfg, str(tmp_path / "other"), "cpu", lambda: digits(100).split(50))
    second.load_state_dict(state)
    assert second.best == a
    b = second.evaluate(2, generator(0.5))["fid"]
    assert rows(tmp_path / "other") == [(1, a), (2, b)]
    assert second.is_best == (b < a)


def test_every_metric_gets_a_column_a_panel_and_best_follows_fid(tmp_path):
    cfg = EvalConfig(every=1, num_samples=100, batch_size=25, metrics=["fid", "kid", "isc", "prc"],
                     kid_subsets=5, kid_subset_size=40)
    run_dir = tmp_path / "run"
    tracker = EvalTracker(cfg, str(run_dir), "cpu", lambda: digits(100).split(40))
    first = tracker.evaluate(1, generator(0.8))
    assert list(first) == ["fid", "kid_mean", "kid_std", "isc_mean", "isc_std", "precision", "recall", "f_score"]
    assert tracker.is_best and tracker.best == first["fid"]
    second = tracker.evaluate(2, generator(0.0))
    with open(run_dir / "eval.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["step", *first, "seconds"]
    assert [float(r["kid_mean"]) for r in table] == [first["kid_mean"], second["kid_mean"]]
    assert [float(r["recall"]) for r in table] == [first["recall"], second["recall"]]
    tracker.finish()
    with Image.open(run_dir / "eval.png") as im:
        assert im.size[0] >= 4 * 6 * 100  # six panels (fid, kid, isc, precision, recall, f_score) of 4 inches


def test_without_fid_there_is_no_best(tmp_path):
    cfg = EvalConfig(every=1, num_samples=100, batch_size=25, metrics=["prc"])
    tracker = EvalTracker(cfg, str(tmp_path / "run"), "cpu", lambda: digits(100).split(40))
    out = tracker.evaluate(1, generator(0.0))
    assert set(out) == {"precision", "recall", "f_score"}
    assert not tracker.is_best and tracker.best == math.inf


def test_an_older_runs_fid_csv_is_read_back_and_continued_in_eval_csv(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "fid.csv").write_text("step,fid,seconds\n100,50.5,1.000\n200,40.25,1.000\n")
    cfg = EvalConfig(every=1, num_samples=100, batch_size=25, metrics=["fid", "kid"], kid_subset_size=50)
    tracker = EvalTracker(cfg, str(run_dir), "cpu", lambda: digits(100).split(40))
    assert tracker.best == 40.25
    new = tracker.evaluate(300, generator(0.0))
    with open(run_dir / "eval.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["step"], r["fid"], r["kid_mean"]) for r in table] == [
        ("100", "50.5", ""), ("200", "40.25", ""), ("300", repr(new["fid"]), repr(new["kid_mean"]))]
    assert read_history(str(run_dir))[0] == {"step": 100.0, "fid": 50.5, "seconds": 1.0}


def test_a_second_extractor_scores_the_same_samples_in_its_own_features(tmp_path):
    """eval.second_extractor: each batch is generated once and goes through both extractors; the first space's
    values are those of a tracker without a second one, the second's those of a tracker of that extractor alone
    (bit for bit: the same images, the same arithmetic), logged with the prefix second_."""
    def tracker(run: str, **kw) -> EvalTracker:
        cfg = EvalConfig(every=1, num_samples=100, batch_size=25, metrics=["fid", "kid"], kid_subsets=5,
                         kid_subset_size=50, **kw)
        return EvalTracker(cfg, str(tmp_path / run), "cpu", lambda: digits(100).split(40))

    calls = []
    made = generator(0.3)

    def counted(n: int) -> torch.Tensor:
        calls.append(n)
        return made(n)

    both = tracker("both", feature_extractor="digits-cnn", second_extractor="mnist-lenet").evaluate(1, counted)
    assert calls == [25] * 4  # one pass over the samples, not one per extractor
    first = tracker("first", feature_extractor="digits-cnn").evaluate(1, generator(0.3))
    second = tracker("second", feature_extractor="mnist-lenet").evaluate(1, generator(0.3))
    assert both == {**first, **{f"second_{k}": v for k, v in second.items()}}
    assert both["second_fid"] != both["fid"]  # another feature space measures another distance
    with open(tmp_path / "both" / "eval.csv", newline="") as f:
        assert {"fid", "kid_mean", "second_fid", "second_kid_mean"} <= set(next(csv.DictReader(f)))


def test_the_picture_is_drawn_at_most_every_plot_interval_and_at_finish(tmp_path, monkeypatch):
    """The CSV follows every evaluation; eval.png waits PLOT_EVERY_S after the last drawing (from the tracker's
    start), and finish() draws it only when it lags the history."""
    import acl_dist.eval.tracker as tracker_module

    clock = [1000.0]
    monkeypatch.setattr(tracker_module.time, "monotonic", lambda: clock[0])
    cfg = EvalConfig(every=1, num_samples=100, batch_size=25)
    run_dir = tmp_path / "run"
    tracker = EvalTracker(cfg, str(run_dir), "cpu", lambda: digits(100).split(50))
    tracker.evaluate(1, generator(0.8))
    assert rows(run_dir)[0][0] == 1 and not (run_dir / "eval.png").exists() and not tracker.plotted
    clock[0] += tracker_module.PLOT_EVERY_S
    tracker.evaluate(2, generator(0.0))
    assert tracker.plotted and (run_dir / "eval.png").exists()
    assert tracker.finish() is None  # up to date: nothing to draw
    (run_dir / "eval.png").unlink()
    clock[0] += tracker_module.PLOT_EVERY_S - 1
    tracker.evaluate(3, generator(0.5))
    assert not tracker.plotted and not (run_dir / "eval.png").exists()
    assert tracker.finish() == str(run_dir / "eval.png") and (run_dir / "eval.png").exists() and tracker.plotted
