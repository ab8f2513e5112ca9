"""Feature extractors for FID: the shipped digits CNN, and resolving torch-fidelity's Inception offline.

Why a digits extractor: Inception-v3 features of 8..32 px grey digits upscaled to 299 px say little, cost
~0.25 s per image on a laptop core, and need a 95 MB download the offline machines cannot make. A small CNN
trained on sklearn's digits (``scripts/train_digits_extractor.py``) gives a real Fréchet distance in
features that know what a digit looks like, at thousands of images per second.

Both extractors are torch-fidelity ``FeatureExtractorBase`` subclasses and take uint8 [B, 3, H, W];
:func:`to_uint8_rgb` is the one place where our [-1, 1] images become that. Importing this module registers
``digits-cnn`` with torch-fidelity, so its own ``calculate_metrics`` can use it too.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

DIGITS_CNN = "digits-cnn"
INCEPTION = "inception-v3-compat"
EXTRACTORS = (DIGITS_CNN, INCEPTION)
DIGITS_WEIGHTS = os.path.join(os.path.dirname(__file__), "weights", "digits_cnn.pt")
WEIGHTS_KEY = "eval.feature_extractor_weights_path"


class MissingWeightsError(FileNotFoundError):
    """A feature extractor's weights file is not on disk; the message says which file, where from, which key."""


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float [B, C, H, W] with C in {1, 3} -> uint8 [B, 3, H, W], as a PNG of the image would hold."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [B, 1|3, H, W], got {tuple(images.shape)}")
    x = ((images.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)  # [B, C, H, W]
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # grey repeated, as PIL's convert("RGB")


class DigitsCNN(nn.Module):
    """A small classifier of 16x16 grey digits; its 64-d penultimate layer is the FID feature space."""

    INPUT_SIZE = 16
    FEATURE_DIM = 64

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),  # [B, 32, 16, 16]
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),  # [B, 64, 8, 8]
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),  # [B, 64, 4, 4]
            nn.Flatten(),  # [B, 1024]
            nn.Linear(64 * 4 * 4, self.FEATURE_DIM),  # [B, 64]: pre-activation, closer to Gaussian than ReLU
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.3), nn.Linear(self.FEATURE_DIM, num_classes))

    @classmethod
    def preprocess(cls, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] (any H, W) -> float [B, 1, 16, 16] in [-1, 1]: grey, resized with antialiasing."""
        x = images.float().mean(dim=1, keepdim=True) / 255.0  # [B, 1, H, W]
        if x.shape[-2:] != (cls.INPUT_SIZE, cls.INPUT_SIZE):
            size = (cls.INPUT_SIZE, cls.INPUT_SIZE)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return x * 2.0 - 1.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # [B, 1, 16, 16] -> [B, 64]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # [B, 10] logits


class FeatureExtractorDigitsCNN(FeatureExtractorBase):
    """torch-fidelity face of :class:`DigitsCNN`; features '64' (FID/KID/PRC) and 'logits' (IS)."""

    def __init__(self, name: str, features_list, feature_extractor_weights_path: str | None = None, **kwargs):
        super().__init__(name, features_list)
        self.net = DigitsCNN()
        path = feature_extractor_weights_path or DIGITS_WEIGHTS
        if not os.path.isfile(path):
            raise MissingWeightsError(
                f"digits-cnn weights not found at {path}; run `python scripts/train_digits_extractor.py` "
                f"(CPU, under 2 minutes) or set {WEIGHTS_KEY}"
            )
        blob = torch.load(path, map_location="cpu", weights_only=True)
        self.net.load_state_dict(blob["state_dict"])
        self.meta = blob.get("meta", {})
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor):
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 [B, 3, H, W], got {x.dtype} {tuple(x.shape)}")
        feats = self.net.features(self.net.preprocess(x))  # [B, 64]
        out = {"64": feats}
        if "logits" in self.features_list:
            out["logits"] = self.net.head(feats)  # [B, 10]
        return tuple(out[name] for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "64", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "64", "kid": "64", "prc": "64"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 16, 16, dtype=torch.uint8)


if DIGITS_CNN not in FEATURE_EXTRACTORS_REGISTRY:  # re-import (reload, spawn) must not register twice
    torch_fidelity.register_feature_extractor(DIGITS_CNN, FeatureExtractorDigitsCNN)


def inception_cache_path() -> str:
    """Where torch-fidelity's ``load_state_dict_from_url`` would keep the Inception file (torch's hub cache)."""
    filename = os.path.basename(urlparse(URL_INCEPTION_V3).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def _missing_inception(explicit: str) -> MissingWeightsError:
    cache = inception_cache_path()
    where = f"{explicit} does not exist" if explicit else f"{WEIGHTS_KEY} is empty and {cache} does not exist"
    return MissingWeightsError(
        f"Inception-v3 weights for '{INCEPTION}' not found ({where}); nothing is downloaded at run time. "
        f"Get {URL_INCEPTION_V3} on a machine with internet access, then either copy it to {cache} or set "
        f"{WEIGHTS_KEY}=/path/to/{os.path.basename(cache)} (or use feature_extractor=digits-cnn for digits)."
    )


def resolve_extractor(name: str, weights_path: str = "") -> dict:
    """torch-fidelity keyword arguments for extractor ``name``, with a weights file that exists on disk.

    ``inception-v3-compat`` takes ``weights_path`` when given, else torch's hub cache; never a download
    (torch-fidelity would download when its path is None, so the path returned is always set).

    Raises:
        MissingWeightsError: the weights file is not on disk (the message says what to get and where to put it).
        ValueError: unknown extractor name.
    """
    if name == DIGITS_CNN:
        path = weights_path or DIGITS_WEIGHTS
        if not os.path.isfile(path):
            raise MissingWeightsError(f"digits-cnn weights not found at {path} ({WEIGHTS_KEY})")
    elif name == INCEPTION:
        path = weights_path or inception_cache_path()
        if not os.path.isfile(path):
            raise _missing_inception(weights_path)
    else:
        raise ValueError(f"unknown feature extractor {name!r} (known: {', '.join(EXTRACTORS)})")
    return {"feature_extractor": name, "feature_extractor_weights_path": path}


def build_extractor(name: str, weights_path: str = "", device: str | torch.device = "cpu") -> FeatureExtractorBase:
    """The extractor ``name`` on ``device``, asked for its FID layer only (the layer FID is defined on)."""
    kwargs = resolve_extractor(name, weights_path)
    cls = FEATURE_EXTRACTORS_REGISTRY[name]
    layer = cls.get_default_feature_layer_for_metric("fid")
    extractor = cls(name, [layer], feature_extractor_weights_path=kwargs["feature_extractor_weights_path"])
    return extractor.requires_grad_(False).eval().to(device)


@torch.no_grad()
def extract_features(extractor: FeatureExtractorBase, images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images [B, C, H, W] -> float64 features [B, d] of the extractor's (first) requested layer."""
    device = next(extractor.parameters()).device
    feats = extractor(to_uint8_rgb(images.to(device)))[0]  # [B, d]
    return feats.double()
