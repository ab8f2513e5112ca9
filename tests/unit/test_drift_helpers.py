"""The drift diagnosis's code transforms (repro/drift.py): what each one keeps and what it changes."""

from __future__ import annotations

import torch

from repro.drift import gaussian_like, moment_matched


def test_moved_codes_take_the_targets_mean_and_std_and_keep_their_own_shape():
    g = torch.Generator().manual_seed(0)
    codes = torch.rand(4000, 3, generator=g, dtype=torch.float64) * 0.5 + 2.0  # uniform: not Gaussian
    target = torch.randn(3000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 3.0, 0.1]) - 1.0
    moved = moment_matched(codes, target)
    torch.testing.assert_close(moved.mean(0), target.mean(0))
    torch.testing.assert_close(moved.std(0), target.std(0))
    ranks = codes.argsort(0)
    assert torch.equal(moved.argsort(0), ranks)  # an affine map per dimension: the order of codes is kept
    torch.testing.assert_close(moment_matched(target, target), target)  # codes already there stay


def test_gaussian_draws_have_the_codes_mean_and_covariance_and_depend_on_the_seed_alone():
    g = torch.Generator().manual_seed(1)
    mixing = torch.tensor([[1.0, 0.0], [0.8, 0.3]], dtype=torch.float64)
    codes = torch.randn(5000, 2, generator=g, dtype=torch.float64) @ mixing.T + torch.tensor([2.0, -1.0])
    draws = gaussian_like(codes, 200_000, seed=3)
    # sampling error of a mean/covariance from 200,000 draws: about 3 / sqrt(200,000) of the scale, < 0.01
    torch.testing.assert_close(draws.mean(0), codes.mean(0), atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), torch.cov(codes.T), atol=0.01, rtol=0)
    assert torch.equal(gaussian_like(codes, 10, seed=3), gaussian_like(codes, 10, seed=3))
    assert not torch.equal(gaussian_like(codes, 10, seed=3), gaussian_like(codes, 10, seed=4))
