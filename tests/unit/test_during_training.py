"""The trainer's evaluator built from a recipe: FID against all digits once, Parzen, toy data."""

import math
import os

import torch

from acl_dist.config import Recipe
from acl_dist.data.memory import digits_tensors
from acl_dist.eval.during_training import build_tracker, dataset_key


def recipe(tmp_path, source="digits", parzen=True) -> Recipe:
    r = Recipe()
    r.run.out_dir, r.run.name = str(tmp_path), "run"
    r.data.source = source
    r.model.resolution, r.model.channels = 16, 1
    r.eval.every, r.eval.num_samples, r.eval.batch_size, r.eval.parzen = 1, 120, 50, parzen
    return r


def noisy_digits():
    images, _ = digits_tensors(16, 1)
    g = torch.Generator().manual_seed(0)
    return lambda n: (images[:n] + 0.3 * torch.randn(n, 1, 16, 16, generator=g)).clamp(-1, 1)


def test_digits_evaluator_reports_fid_and_parzen(tmp_path):
    r = recipe(tmp_path)
    ev = build_tracker(r, torch.device("cpu"), 0, 1)
    assert ev.tracker.real_count == 120
    out = ev.evaluate(10, noisy_digits())
    assert set(out) == {"fid", "fid_best", "parzen_ll"}
    assert out["fid"] > 0 and out["fid_best"] == out["fid"] and ev.is_best
    assert math.isfinite(out["parzen_ll"])
    assert os.path.isfile(os.path.join(r.run_dir, "eval.csv"))
    cached = os.listdir(os.path.join(r.run.out_dir, ".fid_cache"))
    assert len(cached) == 1 and "digits-cnn-n120" in cached[0]


def test_reference_uses_each_digit_once_when_asked_for_more(tmp_path):
    r = recipe(tmp_path, parzen=False)
    r.eval.num_samples = 5000
    ev = build_tracker(r, torch.device("cpu"), 0, 1)
    assert ev.tracker.real_count == 1797
    assert dataset_key(r) == "digits|16px|1ch"


def test_toy_data_gets_parzen_only_or_nothing(tmp_path):
    assert build_tracker(recipe(tmp_path, "toy", parzen=False), torch.device("cpu"), 0, 1) is None
    ev = build_tracker(recipe(tmp_path, "toy", parzen=True), torch.device("cpu"), 0, 1)
    g = torch.Generator().manual_seed(0)
    out = ev.evaluate(1, lambda n: torch.randn(n, 2, generator=g))
    assert set(out) == {"parzen_ll"} and math.isfinite(out["parzen_ll"]) and not ev.is_best


def test_evaluator_reports_every_metric_and_fid_best(tmp_path):
    r = recipe(tmp_path, parzen=False)
    r.eval.metrics, r.eval.kid_subset_size = ["kid", "fid", "isc"], 60
    out = build_tracker(r, torch.device("cpu"), 0, 1).evaluate(10, noisy_digits())
    assert list(out) == ["kid_mean", "kid_std", "fid", "isc_mean", "isc_std", "fid_best"]
    r.eval.metrics = ["prc"]
    assert set(build_tracker(r, torch.device("cpu"), 0, 1).evaluate(10, noisy_digits())) == {
        "precision", "recall", "f_score"}


def test_digit_references_are_contiguous_shares_in_order():
    """Gathered in rank order, the ranks' real digits are the first N digits in order, as on one process, in
    shares of whole batches (101 digits in batches of 20: 3 batches to rank 0, 2 and the short one to rank 1)."""
    from acl_dist.eval.during_training import _memory_real

    r = Recipe()
    r.model.resolution, r.eval.num_samples, r.eval.batch_size = 16, 101, 20
    images, _ = digits_tensors(16, 1)
    shares = [torch.cat(list(_memory_real(r, rank, 2)[1]())) for rank in range(2)]
    assert [len(s) for s in shares] == [60, 41]
    assert torch.equal(torch.cat(shares), images[:101])
