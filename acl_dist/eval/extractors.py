"""Feature extractors: the shipped digits and MNIST CNNs, and torch-fidelity's Inception, DINOv2 and CLIP offline.

Why a digits extractor: Inception-v3 features of 8..32 px grey digits upscaled to 299 px say little, cost
~0.25 s per image on a laptop core, and need a 95 MB download the offline machines cannot make. A small CNN
trained on sklearn's digits (``scripts/train_digits_extractor.py``), or on MNIST-5k's 4,000 training digits
(``scripts/train_mnist_extractor.py``), gives a real Fréchet distance in
features that know what a digit looks like, at thousands of images per second.

Why local weights only: nothing may be downloaded at run time. Inception, DINOv2 (``fd-dinov2``) and CLIP
(``clip``) read a file named by ``eval.feature_extractor_weights_path``, else the file torch's hub cache would
hold; a missing file stops with :class:`MissingWeightsError` saying what to get and where to put it.

Every extractor is a torch-fidelity ``FeatureExtractorBase`` subclass and takes uint8 [B, 3, H, W];
:func:`to_uint8_rgb` is the one place where our [-1, 1] images become that. Importing this module registers
``digits-cnn``, ``mnist-cnn``, ``fd-dinov2`` and ``clip`` with torch-fidelity, so its own ``calculate_metrics``
can use them.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Sequence
from urllib.parse import urlparse

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_clip import MODEL_METADATA as CLIP_MODELS
from torch_fidelity.feature_extractor_clip import MODEL_URLS as CLIP_URLS
from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP
from torch_fidelity.feature_extractor_clip import build_model as build_clip_visual
from torch_fidelity.feature_extractor_dinov2 import FeatureExtractorDinoV2
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from acl_dist.eval.dinov2 import DinoV2
from acl_dist.eval.names import (  # noqa: F401 (re-exported)
    CLIP,
    DIGITS_CNN,
    DINOV2,
    EXTRACTORS,
    INCEPTION,
    MNIST_CNN,
    MNIST_LENET,
)

URL_DINOV2 = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"  # FD-DINOv2's ViT-L/14
URL_CLIP = CLIP_URLS["clip-vit-l-14"]  # the CLIP ViT-L/14 FD_CLIP is usually reported with
DIGITS_WEIGHTS = os.path.join(os.path.dirname(__file__), "weights", "digits_cnn.pt")
MNIST_WEIGHTS = os.path.join(os.path.dirname(__file__), "weights", "mnist_cnn.pt")
MNIST_LENET_WEIGHTS = os.path.join(os.path.dirname(__file__), "weights", "mnist_lenet.pt")
SHIPPED = {DIGITS_CNN: DIGITS_WEIGHTS, MNIST_CNN: MNIST_WEIGHTS, MNIST_LENET: MNIST_LENET_WEIGHTS}  # in the wheel
WEIGHTS_KEY = "eval.feature_extractor_weights_path"


class MissingWeightsError(FileNotFoundError):
    """A feature extractor's weights file is not on disk; the message says which file, where from, which key."""


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float [B, C, H, W] with C in {1, 3} -> uint8 [B, 3, H, W], as a PNG of the image would hold."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [B, 1|3, H, W], got {tuple(images.shape)}")
    x = ((images.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)  # [B, C, H, W]
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # grey repeated, as PIL's convert("RGB")


class TorchFidelityImages(torch.utils.data.Dataset):
    """In-memory images as torch-fidelity's ``calculate_metrics(input1=...)`` takes them: a Dataset of uint8
    [3, H, W] (from [-1, 1] float [B, C, H, W], as ``to_uint8_rgb`` makes them)."""

    def __init__(self, images: torch.Tensor):
        self.x = to_uint8_rgb(images)  # [B, 3, H, W]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


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


class MnistCNN(DigitsCNN):
    """A small classifier of 32x32 grey MNIST digits (28x28 padded, as ``data.source: mnist5k`` gives them);
    its 64-d penultimate layer is the feature space of MNIST-5k's Fréchet distance. Trained on the 4,000
    training digits only (``scripts/train_mnist_extractor.py``), so the held-out 1,000 stay unseen."""

    INPUT_SIZE = 32

    def __init__(self, num_classes: int = 10):
        super().__init__(num_classes)
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),  # [B, 32, 32, 32]
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),  # [B, 64, 16, 16]
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),  # [B, 128, 8, 8]
            nn.Conv2d(128, 128, 3, stride=2, padding=1), nn.ReLU(),  # [B, 128, 4, 4]
            nn.Flatten(),  # [B, 2048]
            nn.Linear(128 * 4 * 4, self.FEATURE_DIM),  # [B, 64]: pre-activation, as DigitsCNN's
        )


class MnistLeNet(MnistCNN):
    """A second feature space on the same 32x32 MNIST digits, independent of :class:`MnistCNN`: another
    architecture (5x5 convolutions with batch norm and max pooling, LeCun's shape, a 128-d feature layer, no
    strided convolutions) trained from another seed on the same 4,000 training digits
    (``scripts/train_mnist_extractor.py --arch lenet``). Why: a verdict between two generators is worth
    something only if it holds in a feature space other than the one it was read in (issue 33 measured two
    8,000-step runs ranked differently by two such spaces)."""

    FEATURE_DIM = 128

    def __init__(self, num_classes: int = 10):
        nn.Module.__init__(self)
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # [B, 32, 16, 16]
            nn.Conv2d(32, 64, 5, padding=2), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),  # [B, 64, 8, 8]
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),  # [B, 64, 4, 4]
            nn.Flatten(),  # [B, 1024]
            nn.Linear(64 * 4 * 4, self.FEATURE_DIM),  # [B, 128]: pre-activation, as the other extractors'
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.3), nn.Linear(self.FEATURE_DIM, num_classes))


class FeatureExtractorDigitsCNN(FeatureExtractorBase):
    """torch-fidelity face of :class:`DigitsCNN`; features '64' (FID/KID/PRC) and 'logits' (IS)."""

    NET, WEIGHTS, SCRIPT = DigitsCNN, DIGITS_WEIGHTS, "scripts/train_digits_extractor.py"
    LAYER = "64"  # the feature layer's name: its size, torch-fidelity's convention ('2048' for Inception)

    def __init__(self, name: str, features_list, feature_extractor_weights_path: str | None = None, **kwargs):
        super().__init__(name, features_list)
        self.net = self.NET()
        path = feature_extractor_weights_path or self.WEIGHTS
        if not os.path.isfile(path):
            raise MissingWeightsError(
                f"{name} weights not found at {path}; run `python {self.SCRIPT}` "
                f"(CPU, a few minutes) or set {WEIGHTS_KEY}"
            )
        blob = torch.load(path, map_location="cpu", weights_only=True)
        self.net.load_state_dict(blob["state_dict"])
        self.meta = blob.get("meta", {})
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor):
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 [B, 3, H, W], got {x.dtype} {tuple(x.shape)}")
        feats = self.net.features(self.net.preprocess(x))  # [B, d]
        out = {self.LAYER: feats}
        if "logits" in self.features_list:
            out["logits"] = self.net.head(feats)  # [B, 10]
        return tuple(out[name] for name in self.features_list)

    @classmethod
    def get_provided_features_list(cls):
        return cls.LAYER, "logits"

    @classmethod
    def get_default_feature_layer_for_metric(cls, metric):
        return "logits" if metric == "isc" else cls.LAYER

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 16, 16, dtype=torch.uint8)


class FeatureExtractorMnistCNN(FeatureExtractorDigitsCNN):
    """torch-fidelity face of :class:`MnistCNN`; the same layers as digits-cnn."""

    NET, WEIGHTS, SCRIPT = MnistCNN, MNIST_WEIGHTS, "scripts/train_mnist_extractor.py"


class FeatureExtractorMnistLeNet(FeatureExtractorDigitsCNN):
    """torch-fidelity face of :class:`MnistLeNet`, the second MNIST feature space (layer '128')."""

    NET, WEIGHTS, SCRIPT = MnistLeNet, MNIST_LENET_WEIGHTS, "scripts/train_mnist_extractor.py --arch lenet"
    LAYER = "128"


class FeatureExtractorDinoV2Local(FeatureExtractorDinoV2):
    """torch-fidelity's DINOv2 extractor (its resizing, normalisation and 'dinov2' feature) on a local file.

    The network is :class:`acl_dist.eval.dinov2.DinoV2`, sized by the file: any of the official
    ``dinov2_vit{s,b,l}14_pretrain.pth`` (FD-DINOv2 uses ViT-L/14, 1024-d).
    """

    def __init__(self, name: str, features_list, feature_extractor_weights_path: str | None = None, **kwargs):
        FeatureExtractorBase.__init__(self, name, features_list)  # not its parent's: that one calls torch.hub
        self.feature_extractor_internal_dtype = torch.float32
        path = weights_file(DINOV2, feature_extractor_weights_path or "")
        self.model = DinoV2.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.requires_grad_(False)
        self.eval()


def _clip_state_dict(path: str) -> dict[str, torch.Tensor]:
    """OpenAI's CLIP files are TorchScript archives; a plain ``torch.save`` of the same state dict works too."""
    scripted = False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            scripted = any(n.endswith("constants.pkl") for n in z.namelist())  # how torch.load tells TorchScript
    if not scripted:
        return torch.load(path, map_location="cpu", weights_only=True)
    with warnings.catch_warnings():  # TorchScript is deprecated; these files will stay TorchScript
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        return dict(torch.jit.load(path, map_location="cpu").state_dict())


class FeatureExtractorCLIPLocal(FeatureExtractorCLIP):
    """torch-fidelity's CLIP extractor (its network, resizing, normalisation and 'clip' feature) on a local file.

    torch-fidelity builds the visual tower from the file's shapes, so any OpenAI CLIP file works (RN50 ...
    ViT-L/14); the name stays ``clip`` whichever it is, and the file decides the feature size.
    """

    def __init__(self, name: str, features_list, feature_extractor_weights_path: str | None = None, **kwargs):
        FeatureExtractorBase.__init__(self, name, features_list)  # not its parent's: that one checks the name
        self.feature_extractor_internal_dtype = torch.float32
        path = weights_file(CLIP, feature_extractor_weights_path or "")
        self.model = build_clip_visual(_clip_state_dict(path), torch.float32)
        self.resolution = self.model.visual.input_resolution
        self.requires_grad_(False)
        self.eval()


for _name, _cls in ((DIGITS_CNN, FeatureExtractorDigitsCNN), (MNIST_CNN, FeatureExtractorMnistCNN),
                    (MNIST_LENET, FeatureExtractorMnistLeNet),
                    (DINOV2, FeatureExtractorDinoV2Local),
                    (CLIP, FeatureExtractorCLIPLocal)):
    if _name not in FEATURE_EXTRACTORS_REGISTRY:  # re-import (reload, spawn) must not register twice
        torch_fidelity.register_feature_extractor(_name, _cls)

_DOWNLOADS = {  # name -> (what, URL, file name in torch's hub cache)
    INCEPTION: ("Inception-v3", URL_INCEPTION_V3, os.path.basename(urlparse(URL_INCEPTION_V3).path)),
    DINOV2: ("DINOv2 ViT-L/14", URL_DINOV2, os.path.basename(urlparse(URL_DINOV2).path)),
    CLIP: ("CLIP ViT-L/14", URL_CLIP, f"clip-vit-l-14-{CLIP_MODELS['clip-vit-l-14']['hash']}.pt"),  # as it saves it
}


def hub_cache_path(name: str) -> str:
    """Where a download by ``torch.hub.load_state_dict_from_url`` would have put extractor ``name``'s file."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", _DOWNLOADS[name][2])


def _missing(name: str, explicit: str) -> MissingWeightsError:
    what, url, _ = _DOWNLOADS[name]
    cache = hub_cache_path(name)
    where = f"{explicit} does not exist" if explicit else f"{WEIGHTS_KEY} is empty and {cache} does not exist"
    return MissingWeightsError(
        f"{what} weights for '{name}' not found ({where}); nothing is downloaded at run time. "
        f"Get {url} on a machine with internet access, then either copy it to {cache} or set "
        f"{WEIGHTS_KEY}=/path/to/{os.path.basename(cache)} (or use feature_extractor=digits-cnn for digits)."
    )


def weights_file(name: str, weights_path: str = "") -> str:
    """The weights file extractor ``name`` reads: ``weights_path`` if given, else the shipped or hub-cache file.

    Raises:
        MissingWeightsError: that file is not on disk (the message says what to get and where to put it).
        ValueError: unknown extractor name.
    """
    if name in SHIPPED:
        path = weights_path or SHIPPED[name]
        if not os.path.isfile(path):
            raise MissingWeightsError(f"{name} weights not found at {path} ({WEIGHTS_KEY})")
        return path
    if name not in _DOWNLOADS:
        raise ValueError(f"unknown feature extractor {name!r} (known: {', '.join(EXTRACTORS)})")
    path = weights_path or hub_cache_path(name)
    if not os.path.isfile(path):
        raise _missing(name, weights_path)
    return path


def resolve_extractor(name: str, weights_path: str = "") -> dict:
    """torch-fidelity keyword arguments for extractor ``name``, with a weights file that exists on disk.

    The path returned is always set (torch-fidelity would download when it is None); see :func:`weights_file`.
    """
    return {"feature_extractor": name, "feature_extractor_weights_path": weights_file(name, weights_path)}


def feature_layer(name: str) -> str:
    """The layer FID, KID and precision/recall use (torch-fidelity's default for FID: '2048', '64', ...)."""
    return FEATURE_EXTRACTORS_REGISTRY[name].get_default_feature_layer_for_metric("fid")


def logits_layer(name: str) -> str | None:
    """The class-logits layer the Inception Score uses, None for extractors without classes (DINOv2, CLIP).

    torch-fidelity maps 'isc' to the feature layer itself for those; a score of softmaxed embeddings means
    nothing, so we say there is none.
    """
    layer = FEATURE_EXTRACTORS_REGISTRY[name].get_default_feature_layer_for_metric("isc")
    return None if layer == feature_layer(name) else layer


def build_extractor(name: str, weights_path: str = "", device: str | torch.device = "cpu",
                    layers: Sequence[str] | None = None) -> FeatureExtractorBase:
    """The extractor ``name`` on ``device``, asked for ``layers`` (default: the FID layer only), one forward for all."""
    kwargs = resolve_extractor(name, weights_path)
    cls = FEATURE_EXTRACTORS_REGISTRY[name]
    extractor = cls(name, list(layers or [feature_layer(name)]),
                    feature_extractor_weights_path=kwargs["feature_extractor_weights_path"])
    return extractor.requires_grad_(False).eval().to(device)


@torch.no_grad()
def extract_layers(extractor: FeatureExtractorBase, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """[-1, 1] images [B, C, H, W] -> {layer: [B, k] float32} for every layer the extractor was asked for."""
    device = next(extractor.parameters()).device
    outputs = extractor(to_uint8_rgb(images.to(device)))
    return {name: out.float() for name, out in zip(extractor.get_requested_features_list(), outputs)}


@torch.no_grad()
def extract_features(extractor: FeatureExtractorBase, images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images [B, C, H, W] -> float64 features [B, d] of the extractor's (first) requested layer."""
    return next(iter(extract_layers(extractor, images).values())).double()
