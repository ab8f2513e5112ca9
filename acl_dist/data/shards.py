"""WebDataset tar shard writer and the manifest that describes a shard set.

A shard set is ``shard-000000.tar, shard-000001.tar, ...`` holding ``{key}.{png|jpg|webp}`` plus optional
``{key}.cls`` (the integer label as text) and ``{key}.json`` (free metadata), and a ``manifest.json`` beside
them. The manifest exists so the stream knows the sample count without reading every tar (equal batch counts
on every rank are computed from it), and so a copy can be checked (sha256 per shard).

Output is deterministic: the same samples give byte-identical tars (fixed mtime, owner and mode; members in
sample order), so re-sharding a dataset does not change its checksums.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
SHARD_PATTERN = "shard-{:06d}.tar"
IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "ppm", "pgm", "tif", "tiff", "gif")


@dataclass
class Sample:
    """One image to shard. ``key`` must be unique in the set; dots are replaced (webdataset splits on them)."""

    key: str
    image: Image.Image | np.ndarray  # PIL image, or uint8 [H, W], [H, W, 1] or [H, W, 3]
    label: int | None = None
    meta: dict[str, Any] | None = None


@dataclass
class ShardInfo:
    name: str  # file name, relative to the manifest's folder
    count: int  # samples in this shard
    bytes: int
    sha256: str


@dataclass
class Manifest:
    """What ``manifest.json`` holds; :meth:`load` reads it back."""

    count: int = 0  # samples in all shards
    shards: list[ShardInfo] = field(default_factory=list)
    image_format: str = "png"
    resolution: int | None = None  # side of every image when cropped/resized at write time, else None
    modes: list[str] = field(default_factory=list)  # PIL modes stored ("L", "RGB")
    classes: list[int] | None = None  # sorted labels present; None when no sample has a label
    class_names: list[str] | None = None  # class_names[label] when the source named its classes
    source: str = ""  # what the shards were written from, for the record
    version: int = 1

    def save(self, out_dir: str | os.PathLike) -> str:
        path = os.path.join(out_dir, MANIFEST_NAME)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dataclasses.asdict(self), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Manifest:
        with open(path) as f:
            data = json.load(f)
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["shards"] = [ShardInfo(**s) for s in data.get("shards", [])]
        return cls(**data)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """Center square crop to the short side, then resize to ``size`` x ``size`` (no-op if already there).

    Shared by the writer and the stream so both use the same geometry. LANCZOS when shrinking keeps
    small digits and faces from aliasing; BICUBIC when enlarging.
    """
    w, h = image.size
    if (w, h) == (size, size):
        return image
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    if side != w or side != h:
        image = image.crop((left, top, left + side, top + side))
    resample = Image.Resampling.LANCZOS if side > size else Image.Resampling.BICUBIC
    return image.resize((size, size), resample)


def to_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """A PIL image in mode ``L`` (grayscale) or ``RGB``; uint8 arrays [H, W], [H, W, 1|3|4] accepted."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"image arrays must be uint8, got {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"image arrays must be [H, W] or [H, W, 3], got {image.shape}")
        return Image.fromarray(np.ascontiguousarray(image))
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in ("1", "I;16", "I", "F") or (image.mode == "LA"):
        return image.convert("L")
    return image.convert("RGB")  # P, RGBA, CMYK, YCbCr, ...


def encode_image(image: Image.Image, image_format: str, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    fmt = IMAGE_FORMATS[image_format]
    if fmt == "PNG":
        image.save(buf, format=fmt, optimize=False, compress_level=6)
    elif fmt == "WEBP":
        image.save(buf, format=fmt, quality=quality, method=4)
    else:
        image.save(buf, format=fmt, quality=quality, subsampling=0 if quality >= 90 else 2)
    return buf.getvalue()


def clean_key(key: str) -> str:
    """A tar-safe webdataset key: no dots (they start the extension), no path separators, no spaces."""
    out = "".join(c if (c.isalnum() or c in "-_") else "_" for c in key)
    if not out:
        raise ValueError(f"empty sample key from {key!r}")
    return out


class _TarRoller:
    """Appends samples to ``shard-NNNNNN.tar`` files, starting a new one at max_count or max_bytes."""

    def __init__(self, out_dir: str, max_count: int, max_bytes: int):
        self.out_dir, self.max_count, self.max_bytes = out_dir, max_count, max_bytes
        self.infos: list[ShardInfo] = []
        self._tar: tarfile.TarFile | None = None
        self._count = 0
        self._bytes = 0

    def add(self, files: list[tuple[str, bytes]]) -> None:
        size = sum(len(d) + 1024 for _, d in files)  # tar header + padding, roughly
        if self._tar is not None and (self._count >= self.max_count or self._bytes + size > self.max_bytes):
            self.close()
        if self._tar is None:
            name = SHARD_PATTERN.format(len(self.infos))
            self._tar = tarfile.open(os.path.join(self.out_dir, name), "w", format=tarfile.USTAR_FORMAT)
            self._count, self._bytes = 0, 0
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed: deterministic bytes
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
        self._count += 1
        self._bytes += size

    def close(self) -> None:
        if self._tar is None:
            return
        path = self._tar.name
        self._tar.close()
        self._tar = None
        name = os.path.basename(path)
        self.infos.append(ShardInfo(name, self._count, os.path.getsize(path), sha256_file(path)))


def write_shards(
    samples: Iterable[Sample],
    out_dir: str | os.PathLike,
    *,
    max_count: int = 10000,
    max_bytes: int = 256 << 20,
    image_format: str = "png",
    resolution: int | None = None,
    quality: int = 95,
    class_names: list[str] | None = None,
    source: str = "",
    total: int | None = None,
    progress: bool = True,
) -> Manifest:
    """Write samples into WebDataset tar shards under ``out_dir`` and return (and save) their manifest.

    Args:
        max_count: samples per shard at most. max_bytes: shard size at most (a single larger sample still
            gets its own shard).
        image_format: png (lossless), jpg or webp (lossy, ``quality``).
        resolution: center-crop and resize every image to this side at write time; None keeps sizes.
        class_names: names of the integer labels, stored in the manifest.
        total: expected sample count, only for the progress bar.

    Raises:
        ValueError: unknown format, duplicate key, or an image that cannot be stored.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}")
    if max_count < 1 or max_bytes < 1:
        raise ValueError("max_count and max_bytes must be positive")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    _remove_old_shards(out_dir)
    roller = _TarRoller(out_dir, max_count, max_bytes)
    seen: set[str] = set()
    labels: set[int] = set()
    modes: set[str] = set()
    try:
        for sample in tqdm(samples, total=total, desc="shard", unit="img", disable=not progress):
            key = clean_key(sample.key)
            if key in seen:
                raise ValueError(f"duplicate sample key {key!r} (from {sample.key!r})")
            seen.add(key)
            image = to_pil(sample.image)
            if resolution:
                image = center_crop_resize(image, resolution)
            modes.add(image.mode)
            files = [(f"{key}.{image_format}", encode_image(image, image_format, quality))]
            if sample.label is not None:
                labels.add(int(sample.label))
                files.append((f"{key}.cls", str(int(sample.label)).encode()))
            if sample.meta is not None:
                files.append((f"{key}.json", json.dumps(sample.meta, sort_keys=True).encode()))
            roller.add(files)
    finally:
        roller.close()
    manifest = Manifest(
        count=len(seen), shards=roller.infos, image_format=image_format, resolution=resolution,
        modes=sorted(modes), classes=sorted(labels) or None, class_names=class_names, source=source,
    )
    manifest.save(out_dir)
    logger.info("wrote %d samples into %d shards in %s", manifest.count, len(manifest.shards), out_dir)
    return manifest


def _remove_old_shards(out_dir: str) -> None:
    """A re-run must not leave stale shards of a previous, larger run next to the new manifest."""
    stale = [n for n in os.listdir(out_dir) if n.startswith("shard-") and n.endswith(".tar")]
    for name in stale:
        os.remove(os.path.join(out_dir, name))
    if stale:
        logger.warning("removed %d old shard files from %s", len(stale), out_dir)


def verify_shards(manifest_path: str | os.PathLike) -> list[str]:
    """Names of shards whose size or sha256 differs from the manifest (empty list: all intact)."""
    manifest = Manifest.load(manifest_path)
    root = os.path.dirname(os.path.abspath(manifest_path))
    bad = []
    for info in manifest.shards:
        path = os.path.join(root, info.name)
        if not os.path.isfile(path) or os.path.getsize(path) != info.bytes or sha256_file(path) != info.sha256:
            bad.append(info.name)
    return bad
