"""KID, Inception Score and precision/recall: torch-fidelity's own values on our features, cached references."""

import io
import os
import sys

import numpy as np
import pytest
import torch
import torch_fidelity

from acl_dist.distributed import gather_rows_to_main
from acl_dist.eval.extractors import TorchFidelityImages, build_extractor, extract_features
from acl_dist.eval.fid import stats_cache_path
from acl_dist.eval.metrics import (
    KEYS,
    MetricOptions,
    compute_metrics,
    describe_layers,
    extractor_layers,
    reference_set,
)
from tests.images import digits, fakes
from tests.numerics import fid_vs_float32_means_tolerance

ALL = ("fid", "kid", "isc", "prc")
THEIRS = {"fid": "frechet_inception_distance", "kid_mean": "kernel_inception_distance_mean",
          "kid_std": "kernel_inception_distance_std", "isc_mean": "inception_score_mean",
          "isc_std": "inception_score_std", "precision": "precision", "recall": "recall", "f_score": "f_score"}






THEIR_BATCH = 50  # torch-fidelity's batch size here; ours extracts in the same batches, so each feature is the
# same float32 number on both sides (other batches move features by last bits that differ between CPUs)


def ours(real, fake, options, batch=THEIR_BATCH):
    ex = build_extractor("digits-cnn", layers=extractor_layers("digits-cnn", options.metrics))
    reference = reference_set(real.split(batch), ex, len(real), options.needs_features)
    pool = iter(fake.split(batch))
    return compute_metrics(lambda n: next(pool)[:n], len(fake), reference, ex, options, batch)


def theirs(real, fake, **kwargs):
    return torch_fidelity.calculate_metrics(
        input1=TorchFidelityImages(fake), input2=TorchFidelityImages(real), fid=True, kid=True, isc=True, prc=True,
        feature_extractor="digits-cnn", cuda=False, save_cpu_ram=True, cache=False, verbose=False,
        batch_size=THEIR_BATCH,
        **kwargs,
    )


def fid_bound(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Ours sums in float64; torch-fidelity takes float32 means (tests/numerics.fid_vs_float32_means_tolerance)."""
    ex = build_extractor("digits-cnn")
    feats = [torch.cat([extract_features(ex, b) for b in x.split(THEIR_BATCH)]) for x in (fake, real)]
    return fid_vs_float32_means_tolerance(*feats)


def test_every_metric_equals_torch_fidelity_calculate_metrics():
    real, fake = digits(240), fakes(200)
    options = MetricOptions(ALL, kid_subsets=20, kid_subset_size=50, prc_neighborhood=3)
    got = ours(real, fake, options)
    ref = theirs(real, fake, kid_subsets=20, kid_subset_size=50)  # the same subset seed: their default, 2020
    assert list(got) == ["fid", "kid_mean", "kid_std", "isc_mean", "isc_std", "precision", "recall", "f_score"]
    for key, value in got.items():  # their own functions on the same features: equal, but FID (see fid_bound)
        if key == "fid":
            assert abs(value - ref[THEIRS[key]]) <= fid_bound(real, fake), (value, ref[THEIRS[key]])
        else:
            assert value == ref[THEIRS[key]], (key, value, ref[THEIRS[key]])
    assert got["kid_std"] > 0 and 0 < got["precision"] < 1 and 1 < got["isc_mean"] < 10


def test_kid_subsets_shrink_to_the_samples_there_are():
    """torch-fidelity refuses subsets larger than a side; ours caps the size and matches it at that size."""
    real, fake = digits(150), fakes(120)
    options = MetricOptions(("kid",), kid_subsets=10)  # subset size 1000 asked, 120 possible
    assert options.subset_size(120, 150) == 120
    got = ours(real, fake, options)
    ref = theirs(real, fake, kid_subsets=10, kid_subset_size=120)
    assert list(got) == list(KEYS["kid"])
    assert got["kid_mean"] == ref[THEIRS["kid_mean"]] and got["kid_std"] == ref[THEIRS["kid_std"]]


def test_the_layers_each_metric_uses_are_named():
    ex = build_extractor("digits-cnn", layers=extractor_layers("digits-cnn", ALL))
    said = describe_layers(ex, ALL)
    assert said["fid"] == said["kid"] == said["prc"] == "digits-cnn '64' (64-d features)"
    assert said["isc"] == "digits-cnn 'logits' (10-class logits)"


def test_inception_score_needs_class_logits():
    assert extractor_layers("inception-v3-compat", ["fid", "isc"]) == ["2048", "logits_unbiased"]
    for name in ("fd-dinov2", "clip"):
        with pytest.raises(ValueError, match="isc needs class logits"):
            extractor_layers(name, ["isc"])


def test_reference_features_are_cached_and_an_fid_only_cache_is_upgraded(tmp_path):
    ex = build_extractor("digits-cnn")
    path = stats_cache_path(str(tmp_path), "digits:16", "digits-cnn", 100)
    fid_only = reference_set(digits(100).split(30), ex, 100, False, path, "digits:16")
    assert fid_only.features is None
    with np.load(path) as z:
        assert "features" not in z.files

    def untouchable():
        raise AssertionError("the cache was not used")
        yield

    # KID asked: the FID-only file lacks features, so the images are read again and the file rewritten
    full = reference_set(digits(100).split(30), ex, 100, True, path, "digits:16")
    assert full.features.shape == (100, 64) and full.features.dtype == torch.float32
    again = reference_set(untouchable(), ex, 100, True, path, "digits:16")
    assert torch.equal(again.features, full.features) and torch.equal(again.stats.outer, full.stats.outer)
    assert reference_set(untouchable(), ex, 100, False, path, "digits:16").features is None
    assert os.path.getsize(path) > 100 * 64 * 4


def test_gather_without_a_process_group_is_the_rows_in_float32():
    rows = torch.arange(12, dtype=torch.float64).reshape(4, 3)
    out = gather_rows_to_main(rows, chunk_rows=3)
    assert out.dtype == torch.float32 and torch.equal(out, rows.float())


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("progress, terminal, shown", [(True, True, True), (True, False, False),
                                                        (False, True, False)])
def test_progress_bars_only_when_asked_and_on_a_terminal(monkeypatch, progress, terminal, shown):
    """`acl-dist eval` shows progress while it generates and extracts (--quiet, or a log file, shows none)."""
    stream = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    real, fake = digits(60), fakes(40)
    ex = build_extractor("digits-cnn")
    reference = reference_set(real.split(20), ex, len(real), False, batch_size=20, progress=progress)
    pool = iter(fake.split(20))
    compute_metrics(lambda n: next(pool)[:n], len(fake), reference, ex, MetricOptions(), 20, progress=progress)
    text = stream.getvalue()
    assert ("generated images" in text and "/40 " in text and "real images" in text and "/60 " in text) is shown, text
