"""scikit-learn's digits, read from the installed file without importing scikit-learn."""

import numpy as np
import pytest

from acl_dist.data.shard_inputs import builtin_input
from acl_dist.data.sources.digits import digits_arrays, digits_tensors
from tests.images import imports_module


def test_the_digits_are_load_digits_value_for_value():
    from sklearn.datasets import load_digits

    expected = load_digits()
    pixels, labels = digits_arrays()
    assert pixels.dtype == expected.images.dtype and np.array_equal(pixels, expected.images)
    assert np.array_equal(labels, expected.target)
    images, tensor_labels = digits_tensors(8, 1)
    assert images.shape == (1797, 1, 8, 8) and images.min() == -1 and images.max() == 1
    assert np.array_equal(tensor_labels.numpy(), expected.target)
    shard_input = builtin_input("digits")  # what `acl-dist shard builtin:digits` writes
    assert np.array_equal(shard_input.images[..., 0], np.rint(expected.images * (255.0 / 16.0)).astype(np.uint8))
    assert np.array_equal(shard_input.labels, expected.target)


@pytest.mark.slow  # starts a process
def test_reading_the_digits_imports_no_sklearn():
    """Importing scikit-learn costs about 1.7 s of every digits run's start on one thread."""
    assert not imports_module("from acl_dist.data.sources.digits import digits_tensors; digits_tensors(16, 1)",
                              "sklearn")
