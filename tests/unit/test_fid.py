"""FID from sufficient statistics: equal to torch-fidelity's own, exact sharding, reference-stats cache."""

import os

import numpy as np
import pytest
import torch
import torch_fidelity
from PIL import Image

from acl_dist.eval.extractors import TorchFidelityImages, build_extractor, extract_features, to_uint8_rgb
from acl_dist.eval.fid import FeatureStats, fid_from_stats, shard_sizes, stats_cache_path
from acl_dist.eval.metrics import FeatureSet, MetricOptions, compute_metrics, reference_set
from tests.images import digits, fakes
from tests.numerics import U64, fid_reorder_tolerance, fid_vs_float32_means_tolerance, reordered_sum_bound


def real_statistics(batches, extractor, num_samples, cache_path=None, dataset_key=""):
    """FID's reference statistics alone (no features), as the FID-only path makes them."""
    return reference_set(batches, extractor, num_samples, False, cache_path, dataset_key).stats


def compute_fid(generate, num_samples, real_stats, extractor, batch_size):
    reference = FeatureSet(real_stats)
    return compute_metrics(generate, num_samples, reference, extractor, MetricOptions(), batch_size)["fid"]





def batches(images: torch.Tensor, size: int):
    yield from images.split(size)


def sequential(images: torch.Tensor):
    """A generate(n) callable handing out the next n images, and the list of the n asked for."""
    asked, pos = [], [0]

    def generate(n: int) -> torch.Tensor:
        asked.append(n)
        out = images[pos[0] : pos[0] + n]
        pos[0] += n
        return out

    return generate, asked



def test_stats_equal_numpy_mean_and_cov():
    f = torch.randn(300, 7, dtype=torch.float64) * 3 + 5
    stats = FeatureStats.empty(7)
    for part in f.split(64):
        stats.add(part.float())  # float32 features, as extractors give, summed in float64
    mu, sigma = stats.mean_cov()
    ref = f.float().double().numpy()
    assert stats.count == 300
    # float64 on both sides, 300 terms of |x| < 25 summed in other orders and formulas: each side's mean within
    # 300·u64·25 of the exact one, each covariance entry within 300·u64·25² (sums of x_i x_j, divided by n - 1)
    assert f.abs().max() < 25
    np.testing.assert_allclose(mu, ref.mean(0), rtol=0, atol=2 * reordered_sum_bound(300, 25, U64))
    np.testing.assert_allclose(sigma, np.cov(ref, rowvar=False), rtol=0, atol=2 * reordered_sum_bound(300, 25**2, U64))


def test_fid_equals_torch_fidelity_calculate_metrics(tmp_path):
    """Ours from float64 sums, theirs from numpy's mean and covariance of the same features (batches of 50 on
    both sides, so each feature is the same float32 number): equal to what their float32 means allow."""
    real, fake = digits(240), fakes(200)
    ex = build_extractor("digits-cnn")
    real_stats = real_statistics(batches(real, 50), ex, len(real))
    generate, asked = sequential(fake)
    ours = compute_fid(generate, len(fake), real_stats, ex, batch_size=50)
    assert asked == [50, 50, 50, 50]

    folder = tmp_path / "fake"  # one side as a PNG folder, the other as a Dataset: both inputs it accepts
    folder.mkdir()
    for i, img in enumerate(to_uint8_rgb(fake)):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    theirs = torch_fidelity.calculate_metrics(
        input1=str(folder), input2=TorchFidelityImages(real), fid=True, feature_extractor="digits-cnn",
        cuda=False, save_cpu_ram=True, cache=False, verbose=False, batch_size=50,
    )["frechet_inception_distance"]
    assert ours > 1.0
    bound = fid_vs_float32_means_tolerance(features(ex, fake, 50), features(ex, real, 50))
    assert abs(ours - theirs) <= bound, (ours, theirs, bound)


def features(extractor, images: torch.Tensor, batch: int) -> torch.Tensor:
    """digits-cnn features [n, 64] of images extracted in batches of ``batch``."""
    return torch.cat([extract_features(extractor, b) for b in images.split(batch)])


def test_fid_of_a_set_with_itself_is_zero_and_order_free():
    """The same features summed in another order and other chunks: FID within what float64 reordering allows
    (features are extracted once: re-extracting in other batches moves them by float32 last bits, which differ
    from one CPU's kernels to another's)."""
    f = features(build_extractor("digits-cnn"), digits(150), 50)
    a, b = FeatureStats.empty(f.shape[1]), FeatureStats.empty(f.shape[1])
    for part in f.split(32):
        a.add(part)
    for part in f.flip(0).split(50):
        b.add(part)
    assert a.count == b.count == 150 and not torch.equal(a.outer, b.outer)  # really another order
    assert abs(fid_from_stats(a, b)) <= fid_reorder_tolerance(150, f.shape[1], float(f.abs().max()))


def test_shard_sizes_split_exactly():
    assert shard_sizes(10, 3) == [4, 3, 3]
    assert shard_sizes(2, 4) == [1, 1, 0, 0]
    for n, w in [(2000, 8), (1, 1), (999, 16)]:
        sizes = shard_sizes(n, w)
        assert sum(sizes) == n and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("n, world, batch", [(201, 2, 64), (181, 2, 7), (60, 2, 16), (10, 4, 4), (3, 4, 2),
                                             (2000, 8, 250), (999, 3, 1)])
def test_shard_sizes_are_whole_batches_of_one_process(n, world, batch):
    """Every rank's batches are batches one process would make (same first image, same size), so features
    computed batch by batch are the same numbers on any number of processes; shares differ by one batch at most."""
    sizes = shard_sizes(n, world, batch)
    assert sum(sizes) == n and all(s >= 0 for s in sizes)
    one_process = [(i, min(batch, n - i)) for i in range(0, n, batch)]
    ranks, start = [], 0
    for size in sizes:
        ranks += [(start + i, min(batch, size - i)) for i in range(0, size, batch)]
        start += size
    assert ranks == one_process
    assert max(sizes) - min(sizes) <= batch


def test_real_statistics_cached_by_dataset_extractor_and_count(tmp_path):
    ex = build_extractor("digits-cnn")
    path = stats_cache_path(str(tmp_path), "digits:16x16x1", "digits-cnn", 100)
    assert path != stats_cache_path(str(tmp_path), "digits:16x16x1", "digits-cnn", 200)
    assert path != stats_cache_path(str(tmp_path), "digits:32x32x1", "digits-cnn", 100)
    first = real_statistics(batches(digits(100), 30), ex, 100, path, "digits:16x16x1")
    assert os.path.isfile(path)

    def untouchable():
        raise AssertionError("the cache was not used")
        yield

    second = real_statistics(untouchable(), ex, 100, path, "digits:16x16x1")
    assert second.count == first.count and torch.equal(second.outer, first.outer.cpu())
    # a file whose metadata does not match is recomputed, not trusted
    third = real_statistics(batches(digits(100, offset=100), 30), ex, 100, path, "other-dataset")
    assert not torch.equal(third.total, first.total)


def test_too_few_real_images_is_an_error():
    ex = build_extractor("digits-cnn")
    with pytest.raises(ValueError, match="ran out after 20 of 50"):
        real_statistics(batches(digits(20), 8), ex, 50)
