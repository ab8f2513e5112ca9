"""Parzen-window log-likelihood against a direct numpy computation."""

import math

import numpy as np
import pytest
import torch

from acl_dist.eval.parzen import log_densities, parzen_evaluate, parzen_log_likelihood, select_sigma


def direct(samples: np.ndarray, test: np.ndarray, sigma: float) -> np.ndarray:
    """log of the mean of Gaussian densities, written out with no tricks (fine where nothing underflows)."""
    d = samples.shape[1]
    sq = ((test[:, None, :] - samples[None, :, :]) ** 2).sum(-1)  # [M, N]
    dens = np.exp(-sq / (2 * sigma**2)) / (2 * math.pi * sigma**2) ** (d / 2)
    return np.log(dens.mean(axis=1))


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    samples = torch.rand(70, 1, 2, 3, generator=g)  # flattened to D = 6, like tiny images
    test = torch.rand(23, 1, 2, 3, generator=g)
    return samples, test


def test_matches_direct_numpy(data):
    samples, test = data
    ref = direct(samples.reshape(70, -1).double().numpy(), test.reshape(23, -1).double().numpy(), 0.3)
    ours = log_densities(samples, test, 0.3, batch=8)  # several test and sample blocks
    # float64 on both sides, logsumexp over 70 samples in blocks vs numpy's direct sum: within 70·u64 ≈ 8e-15 of
    # the log-density's scale (|log p| ~ 10); 1e-10 relative leaves a 10^4 margin for the exp/log conditioning
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10)
    mean, stderr = parzen_log_likelihood(samples, test, 0.3, batch=1000)
    assert mean == pytest.approx(ref.mean(), rel=1e-10)
    assert stderr == pytest.approx(ref.std(ddof=1) / math.sqrt(len(ref)), rel=1e-9)


def test_stable_where_direct_underflows(data):
    samples, test = data
    with np.errstate(divide="ignore"):
        assert np.isinf(direct(samples.reshape(70, -1).numpy(), test.reshape(23, -1).numpy(), 0.005)).any()
    ll = log_densities(samples, test, 0.005, batch=5)
    assert torch.isfinite(ll).all()
    # nearest sample dominates: log p ~ -d_min^2 / (2 s^2) - log N - D/2 log(2 pi s^2)
    d2 = torch.cdist(test.reshape(23, -1).double(), samples.reshape(70, -1).double()).min(1).values ** 2
    approx = -d2 / (2 * 0.005**2) - math.log(70) - 3 * math.log(2 * math.pi * 0.005**2)
    # not rounding but the approximation: the other 69 samples add at most log(1 + 69·exp(-gap)) with a squared-
    # distance gap / (2 s²) in the hundreds here, far below 1e-3 of |log p| ~ 10^3
    assert torch.allclose(ll, approx, rtol=1e-3)


def test_sigma_chosen_on_validation(data):
    samples, test = data
    val = torch.rand(30, 1, 2, 3, generator=torch.Generator().manual_seed(1))
    sigmas = [0.02, 0.08, 0.2, 0.5, 2.0]
    flat = samples.reshape(70, -1).double().numpy()
    best = sigmas[int(np.argmax([direct(flat, val.reshape(30, -1).double().numpy(), s).mean() for s in sigmas]))]
    assert select_sigma(samples, val, sigmas, batch=16) == best
    result = parzen_evaluate(samples, val, test, sigmas)
    assert result.sigma == best
    assert result.mean == pytest.approx(direct(flat, test.reshape(23, -1).double().numpy(), best).mean(), rel=1e-10)
    with pytest.raises(ValueError):
        log_densities(samples, test, 0.0)
