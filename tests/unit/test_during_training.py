"""The trainer's evaluator built from the eval section and the training source: FID against all digits once,
Parzen, toy data."""

import math
import os

import torch

from acl_dist.data.options import DataOptions
from acl_dist.data.sources import open_source
from acl_dist.data.sources.digits import digits_tensors
from acl_dist.data.sources.toy import ToyOptions
from acl_dist.eval.during_training import _memory_real, build_tracker
from acl_dist.sections import EvalConfig


class Setup:
    """An eval section and a 16x16 grey source, and where the evaluator writes."""

    def __init__(self, tmp_path, source="digits", parzen=True):
        self.cfg = EvalConfig(every=1, num_samples=120, batch_size=50, parzen=parzen)
        options = ToyOptions(source="toy") if source == "toy" else DataOptions(source=source)
        self.source = open_source(options, 16, 1)
        self.run_dir, self.cache = os.path.join(tmp_path, "run"), os.path.join(tmp_path, ".fid_cache")

    def tracker(self):
        return build_tracker(self.cfg, self.source, 0, self.run_dir, self.cache, torch.device("cpu"), 0, 1)


def recipe(tmp_path, source="digits", parzen=True) -> Setup:
    return Setup(tmp_path, source, parzen)


def noisy_digits():
    images, _ = digits_tensors(16, 1)
    g = torch.Generator().manual_seed(0)
    return lambda n: (images[:n] + 0.3 * torch.randn(n, 1, 16, 16, generator=g)).clamp(-1, 1)


def test_digits_evaluator_reports_fid_and_parzen(tmp_path):
    r = recipe(tmp_path)
    ev = r.tracker()
    assert ev.tracker.real_count == 120
    out = ev.evaluate(10, noisy_digits())
    assert set(out) == {"fid", "fid_best", "parzen_ll"}
    assert out["fid"] > 0 and out["fid_best"] == out["fid"] and ev.is_best
    assert math.isfinite(out["parzen_ll"])
    assert os.path.isfile(os.path.join(r.run_dir, "eval.csv"))
    cached = os.listdir(r.cache)
    assert len(cached) == 1 and "digits-cnn-n120" in cached[0]


def test_reference_uses_each_digit_once_when_asked_for_more(tmp_path):
    r = recipe(tmp_path, parzen=False)
    r.cfg.num_samples = 5000
    ev = r.tracker()
    assert ev.tracker.real_count == 1797
    assert r.source.dataset_key() == "digits|16px|1ch"


def test_toy_data_gets_parzen_only_or_nothing(tmp_path):
    assert recipe(tmp_path, "toy", parzen=False).tracker() is None
    ev = recipe(tmp_path, "toy", parzen=True).tracker()
    g = torch.Generator().manual_seed(0)
    out = ev.evaluate(1, lambda n: torch.randn(n, 2, generator=g))
    assert set(out) == {"parzen_ll"} and math.isfinite(out["parzen_ll"]) and not ev.is_best


def test_evaluator_reports_every_metric_and_fid_best(tmp_path):
    r = recipe(tmp_path, parzen=False)
    r.cfg.metrics, r.cfg.kid_subset_size = ["kid", "fid", "isc"], 60
    out = r.tracker().evaluate(10, noisy_digits())
    assert list(out) == ["kid_mean", "kid_std", "fid", "isc_mean", "isc_std", "fid_best"]
    r.cfg.metrics = ["prc"]
    assert set(r.tracker().evaluate(10, noisy_digits())) == {
        "precision", "recall", "f_score"}


def test_digit_references_are_contiguous_shares_in_order():
    """Gathered in rank order, the ranks' real digits are the first N digits in order, as on one process, in
    shares of whole batches (101 digits in batches of 20: 3 batches to rank 0, 2 and the short one to rank 1)."""
    cfg = EvalConfig(num_samples=101, batch_size=20)
    images, _ = digits_tensors(16, 1)
    shares = [torch.cat(list(_memory_real(images, cfg, rank, 2)[1]())) for rank in range(2)]
    assert [len(s) for s in shares] == [60, 41]
    assert torch.equal(torch.cat(shares), images[:101])
