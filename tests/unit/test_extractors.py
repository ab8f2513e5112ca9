"""Feature extractors: the shipped digits CNN, the uint8 conversion, and offline Inception resolution."""

import os
import socket
import urllib.request

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from acl_dist.eval.extractors import (
    DIGITS_WEIGHTS,
    FeatureExtractorDigitsCNN,
    MissingWeightsError,
    build_extractor,
    extract_features,
    inception_cache_path,
    resolve_extractor,
    to_uint8_rgb,
)


def held_out_digits(size: int, seed: int):
    """The split the training script held out, as [-1, 1] images [M, 1, size, size], and labels."""
    data = load_digits()
    _, x_te, _, y_te = train_test_split(
        data.images, data.target, test_size=0.2, stratify=data.target, random_state=seed
    )
    x = torch.tensor(x_te, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # [M, 1, 8, 8]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x, torch.tensor(y_te)


def test_shipped_digits_weights_are_small_and_classify_held_out_digits():
    assert os.path.getsize(DIGITS_WEIGHTS) < 1024 * 1024
    ex = FeatureExtractorDigitsCNN("digits-cnn", ["64", "logits"])
    assert ex.meta["test_accuracy"] > 0.9
    for size in (8, 16, 32):  # the resolutions digits recipes use
        images, labels = held_out_digits(size, ex.meta["seed"])
        feats, logits = ex(to_uint8_rgb(images))  # torch-fidelity's interface: uint8 [B, 3, H, W]
        assert feats.shape == (len(images), 64)
        accuracy = (logits.argmax(1) == labels).float().mean().item()
        assert accuracy > 0.9, (size, accuracy)


def test_digits_cnn_is_registered_with_torch_fidelity():
    assert FEATURE_EXTRACTORS_REGISTRY["digits-cnn"] is FeatureExtractorDigitsCNN
    ex = build_extractor("digits-cnn")
    images = torch.rand(4, 1, 12, 12) * 2 - 1
    feats = extract_features(ex, images)
    assert feats.shape == (4, 64) and feats.dtype == torch.float64
    # grey and its RGB repetition are the same image to the extractor
    assert torch.equal(feats, extract_features(ex, images.expand(-1, 3, -1, -1)))


def test_to_uint8_rgb_maps_range_and_repeats_grey():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 2, 2)
    out = to_uint8_rgb(x)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 2, 2)
    assert out[0, :, 0, 0].tolist() == [0, 0, 0]
    assert out[0, 0].flatten().tolist() == [0, 128, 255, 255]
    with pytest.raises(ValueError):
        to_uint8_rgb(torch.zeros(1, 2, 4, 4))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch cache, and any network access fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return tmp_path


def test_missing_inception_weights_say_what_to_get_and_where(offline):
    with pytest.raises(MissingWeightsError) as err:
        build_extractor("inception-v3-compat", "")
    msg = str(err.value)
    assert URL_INCEPTION_V3 in msg
    assert inception_cache_path() in msg and str(offline) in inception_cache_path()
    assert "eval.feature_extractor_weights_path" in msg
    with pytest.raises(MissingWeightsError, match="nowhere.pth does not exist"):
        resolve_extractor("inception-v3-compat", str(offline / "nowhere.pth"))
    with pytest.raises(ValueError, match="unknown feature extractor"):
        resolve_extractor("inception", "")


def test_inception_weights_found_in_torch_hub_cache(offline):
    path = inception_cache_path()
    os.makedirs(os.path.dirname(path))
    open(path, "wb").close()
    kwargs = resolve_extractor("inception-v3-compat", "")
    assert kwargs == {"feature_extractor": "inception-v3-compat", "feature_extractor_weights_path": path}


class _RandomInception(FeatureExtractorInceptionV3):
    """torch-fidelity's Inception network left at its random initialisation (loads an empty state dict)."""

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return super().load_state_dict(state_dict, strict=False)


def test_inception_path_runs_with_weights_file_made_here(offline):
    empty = offline / "empty.pt"
    torch.save({}, empty)
    torch.manual_seed(0)
    weights = offline / "inception.pth"
    torch.save(_RandomInception("x", ["2048"], feature_extractor_weights_path=str(empty)).state_dict(), weights)

    ex = build_extractor("inception-v3-compat", str(weights))
    assert ex.get_requested_features_list() == ["2048"]
    images = torch.rand(3, 1, 16, 16) * 2 - 1  # grey digits-sized images, resized to 299 inside
    feats = extract_features(ex, images)
    assert feats.shape == (3, 2048) and torch.isfinite(feats).all()
    assert feats.std(0).sum() > 0  # different images, different features
