"""Feature extractors: the shipped digits CNN, the uint8 conversion, and Inception, DINOv2, CLIP offline."""

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
    hub_cache_path,
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
    assert hub_cache_path("inception-v3-compat") in msg and str(offline) in hub_cache_path("inception-v3-compat")
    assert "eval.feature_extractor_weights_path" in msg
    with pytest.raises(MissingWeightsError, match="nowhere.pth does not exist"):
        resolve_extractor("inception-v3-compat", str(offline / "nowhere.pth"))
    with pytest.raises(ValueError, match="unknown feature extractor"):
        resolve_extractor("inception", "")


def test_inception_weights_found_in_torch_hub_cache(offline):
    path = hub_cache_path("inception-v3-compat")
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


def dinov2_state(dim: int = 384, depth: int = 12, patch: int = 14, grid: int = 37) -> dict:
    """A state dict with the names and shapes of the official dinov2_vits14_pretrain.pth (ViT-S/14 at 518 px:
    37 x 37 patches), random values; written out here, not from our module, so a wrong name fails the load."""
    g = torch.Generator().manual_seed(0)
    rand, hidden = (lambda *shape: 0.02 * torch.randn(*shape, generator=g)), 4 * dim
    state = {"cls_token": rand(1, 1, dim), "pos_embed": rand(1, 1 + grid * grid, dim), "mask_token": rand(1, dim),
             "patch_embed.proj.weight": rand(dim, 3, patch, patch), "patch_embed.proj.bias": rand(dim),
             "norm.weight": 1 + rand(dim), "norm.bias": rand(dim)}
    for i in range(depth):
        for name, shape in (("norm1.weight", (dim,)), ("norm1.bias", (dim,)), ("attn.qkv.weight", (3 * dim, dim)),
                            ("attn.qkv.bias", (3 * dim,)), ("attn.proj.weight", (dim, dim)),
                            ("attn.proj.bias", (dim,)), ("ls1.gamma", (dim,)), ("norm2.weight", (dim,)),
                            ("norm2.bias", (dim,)), ("mlp.fc1.weight", (hidden, dim)), ("mlp.fc1.bias", (hidden,)),
                            ("mlp.fc2.weight", (dim, hidden)), ("mlp.fc2.bias", (dim,)), ("ls2.gamma", (dim,))):
            state[f"blocks.{i}.{name}"] = (1 + rand(*shape)) if name.endswith(("norm1.weight", "norm2.weight")) \
                else rand(*shape) * (50 if "gamma" in name else 1)
    return state


class _TinyCLIP(torch.nn.Module):
    """The parameter names an OpenAI CLIP file holds (a small ViT visual tower, the text projection and a text
    key torch-fidelity drops), in torch-fidelity's own modules; OpenAI's files are TorchScript archives."""

    def __init__(self):
        super().__init__()
        from torch_fidelity.feature_extractor_clip import CLIPVisual

        torch.manual_seed(0)
        self.visual = CLIPVisual(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64,
                                 vision_patch_size=8).visual
        self.text_projection = torch.nn.Parameter(torch.randn(16, 32))
        self.ln_final = torch.nn.LayerNorm(16)

    def forward(self, x):
        return x


@pytest.mark.parametrize("name", ["fd-dinov2", "clip"])
def test_missing_dinov2_and_clip_weights_say_what_to_get_and_where(offline, name):
    with pytest.raises(MissingWeightsError) as err:
        build_extractor(name, "")
    msg = str(err.value)
    assert "nothing is downloaded at run time" in msg and "eval.feature_extractor_weights_path" in msg
    assert hub_cache_path(name) in msg and str(offline) in hub_cache_path(name)
    assert ("dinov2_vitl14_pretrain.pth" if name == "fd-dinov2" else "ViT-L-14.pt") in msg  # the URL to get
    with pytest.raises(MissingWeightsError, match="nowhere.pth does not exist"):
        build_extractor(name, str(offline / "nowhere.pth"))


def test_fd_dinov2_runs_on_a_vit_s14_weights_file_made_here(offline):
    weights = offline / "dinov2_vits14_pretrain.pth"
    torch.save(dinov2_state(), weights)
    ex = build_extractor("fd-dinov2", str(weights))
    assert FEATURE_EXTRACTORS_REGISTRY["fd-dinov2"] is type(ex)  # torch-fidelity can use it by name too
    assert ex.get_requested_features_list() == ["dinov2"]
    images = torch.rand(3, 1, 16, 16) * 2 - 1  # resized to 224 px inside: 16 x 16 patches, not the file's 37
    feats = extract_features(ex, images)
    assert feats.shape == (3, 384) and torch.isfinite(feats).all()
    assert feats.std(0).sum() > 0  # different images, different features


def test_fd_dinov2_refuses_variants_it_does_not_build(offline):
    state = dinov2_state(dim=64, depth=1, grid=4)
    state["register_tokens"] = torch.zeros(1, 4, 64)
    torch.save(state, offline / "reg.pth")
    with pytest.raises(ValueError, match="register"):
        build_extractor("fd-dinov2", str(offline / "reg.pth"))


@pytest.mark.parametrize("scripted", [True, False], ids=["torchscript", "state-dict"])
def test_clip_runs_on_a_weights_file_made_here(offline, scripted):
    model, weights = _TinyCLIP(), offline / "clip.pt"
    if scripted:
        torch.jit.script(model).save(str(weights))
    else:
        torch.save(model.state_dict(), weights)
    ex = build_extractor("clip", str(weights))
    assert ex.get_requested_features_list() == ["clip"] and ex.resolution == 32
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    feats = extract_features(ex, images)
    assert feats.shape == (3, 32) and torch.isfinite(feats).all() and feats.std(0).sum() > 0
    # the visual tower holds the file's weights (torch-fidelity's loader dropped the text keys and, as with
    # OpenAI's fp16 files, rounds the weights through fp16)
    assert torch.equal(ex.model.visual.conv1.weight, model.visual.conv1.weight.detach().half().float())


def test_the_light_name_registry_says_what_the_extractors_can_do():
    """acl_dist.eval.names (what validation reads) agrees with the extractors themselves."""
    from acl_dist.eval import names
    from acl_dist.eval.extractors import FEATURE_EXTRACTORS_REGISTRY, logits_layer

    assert set(names.EXTRACTORS) <= set(FEATURE_EXTRACTORS_REGISTRY)
    assert {n for n in names.EXTRACTORS if logits_layer(n) is not None} == set(names.WITH_CLASS_LOGITS)


@pytest.mark.slow  # starts processes
def test_loading_a_recipe_imports_no_metric_library():
    import subprocess

    from tests.conftest import PYTHON, REPO

    code = ("import sys; from acl_dist.config import load_recipe; load_recipe('recipes/mnist/gan.yaml'); "
            "print(sorted(m for m in ('torch_fidelity', 'acl_dist.eval.extractors', 'acl_dist.eval.metrics') "
            "if m in sys.modules))")
    out = subprocess.run([PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:] + out.stdout
