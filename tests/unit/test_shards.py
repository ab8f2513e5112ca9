"""Shard writer + sources: every source kind is written to real tars and read back with webdataset."""

import hashlib
import io
import json
import os

import numpy as np
import pytest
from PIL import Image
from webdataset import tariterators

from acl_dist import media
from acl_dist.data.shard_inputs import FolderInput, NumpyInput, VideoInput, builtin_input, open_input
from acl_dist.data.shards import Manifest, Sample, verify_shards, write_shards


def read_back(out_dir):
    """{key: {"image": uint8 array, "cls": int|None, "json": dict|None}} from the manifest's shards."""
    manifest = Manifest.load(os.path.join(out_dir, "manifest.json"))
    urls = [os.path.join(out_dir, s.name) for s in manifest.shards]
    out = {}
    files = tariterators.tar_file_expander(tariterators.url_opener({"url": u} for u in urls))
    for s in tariterators.group_by_keys(files):
        ext = next(e for e in ("png", "jpg", "webp") if e in s)
        out[s["__key__"]] = {
            "image": np.asarray(Image.open(io.BytesIO(s[ext]))),
            "cls": int(s["cls"]) if "cls" in s else None,
            "json": json.loads(s["json"]) if "json" in s else None,
        }
    return manifest, out


def _rand_image(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def image_folder(tmp_path):
    """cats/ (2 PNG), dogs/ (1 PNG + 1 JPEG), a truncated JPEG and a text file named .png."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    arrays = {}
    for rel in ["cats/a.png", "cats/b.v2.png", "dogs/c.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        arrays[rel] = _rand_image(rng, 12, 10)
        Image.fromarray(arrays[rel]).save(root / rel)
    smooth = np.tile(np.linspace(0, 255, 16, dtype=np.uint8)[None, :, None], (16, 1, 3))  # JPEG-friendly
    Image.fromarray(smooth).save(root / "dogs/d.jpg", quality=95)
    arrays["dogs/d.jpg"] = smooth
    good = (root / "dogs/d.jpg").read_bytes()
    (root / "dogs/broken.jpg").write_bytes(good[: len(good) // 2])
    (root / "dogs/notes.png").write_text("not an image")
    return root, arrays


def test_folder_source_png_exact(image_folder, tmp_path):
    root, arrays = image_folder
    src = FolderInput(root)
    write_shards(src, tmp_path / "out", max_count=2, progress=False, class_names=src.class_names)
    assert sorted(os.path.basename(s.path) for s in src.skipped) == ["broken.jpg", "notes.png"]
    m, got = read_back(tmp_path / "out")
    assert m.count == 4 and [s.count for s in m.shards] == [2, 2]
    assert m.class_names == ["cats", "dogs"] and m.classes == [0, 1]
    assert sorted(got) == ["cats_a", "cats_b_v2", "dogs_c", "dogs_d"]
    for key, rel in [("cats_a", "cats/a.png"), ("cats_b_v2", "cats/b.v2.png"), ("dogs_c", "dogs/c.png")]:
        np.testing.assert_array_equal(got[key]["image"], arrays[rel])  # PNG: lossless
    assert [got[k]["cls"] for k in sorted(got)] == [0, 0, 1, 1]
    assert got["dogs_d"]["json"] == {"path": os.path.join("dogs", "d.jpg")}
    assert np.abs(got["dogs_d"]["image"].astype(int) - arrays["dogs/d.jpg"]).max() <= 8  # JPEG source


def test_jpeg_output_and_resolution(image_folder, tmp_path):
    root, arrays = image_folder
    write_shards(FolderInput(root), tmp_path / "out", image_format="jpg", resolution=8, progress=False)
    m, got = read_back(tmp_path / "out")
    assert m.image_format == "jpg" and m.resolution == 8
    assert all(v["image"].shape == (8, 8, 3) for v in got.values())
    # 16x16 horizontal ramp -> 8x8 keeps the ramp: left dark, right bright (within JPEG tolerance)
    ramp = got["dogs_d"]["image"].astype(int)
    assert ramp[:, 0].mean() < 30 and ramp[:, -1].mean() > 225


def test_manifest_sha256_and_determinism(image_folder, tmp_path):
    root, _ = image_folder
    m1 = write_shards(FolderInput(root), tmp_path / "a", max_count=3, progress=False)
    m2 = write_shards(FolderInput(root), tmp_path / "b", max_count=3, progress=False)
    for info in m1.shards:
        data = (tmp_path / "a" / info.name).read_bytes()
        assert info.sha256 == hashlib.sha256(data).hexdigest() and info.bytes == len(data)
    assert [s.sha256 for s in m1.shards] == [s.sha256 for s in m2.shards]  # byte-identical re-run
    assert verify_shards(tmp_path / "a" / "manifest.json") == []
    with open(tmp_path / "a" / m1.shards[0].name, "r+b") as f:
        f.seek(600)
        f.write(b"X")
    assert verify_shards(tmp_path / "a" / "manifest.json") == [m1.shards[0].name]


def test_numpy_chw_float(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (5, 3, 6, 7)).astype(np.float32) / 255.0  # [N, C, H, W] in [0, 1]
    y = np.array([3, 1, 4, 1, 5])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    write_shards(NumpyInput(tmp_path / "d.npz"), tmp_path / "out", progress=False)
    m, got = read_back(tmp_path / "out")
    assert sorted(got) == [f"{i:06d}" for i in range(5)] and m.classes == [1, 3, 4, 5]
    for i in range(5):
        np.testing.assert_array_equal(got[f"{i:06d}"]["image"], np.rint(x[i].transpose(1, 2, 0) * 255))
        assert got[f"{i:06d}"]["cls"] == y[i]


def test_numpy_gray_npy(tmp_path):
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)  # [N, H, W] grayscale
    np.save(tmp_path / "g.npy", x)
    write_shards(open_input(str(tmp_path / "g.npy")), tmp_path / "out", progress=False)
    m, got = read_back(tmp_path / "out")
    assert m.modes == ["L"] and m.classes is None
    np.testing.assert_array_equal(got["000001"]["image"], x[1])


def test_builtin_digits(tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    m = write_shards(builtin_input("digits"), tmp_path / "out", max_count=1000, progress=False)
    assert m.count == 1797 and [s.count for s in m.shards] == [1000, 797] and m.classes == list(range(10))
    _, got = read_back(tmp_path / "out")
    np.testing.assert_array_equal(got["digits_000042"]["image"], np.rint(d.images[42] * 255 / 16))
    assert got["digits_000042"]["cls"] == d.target[42]


def test_builtin_lfw_is_offline():
    src = builtin_input("lfw")
    samples = list(src)
    assert len(samples) == 100 and samples[0].image.shape == (25, 25, 1)


def test_video_source(tmp_path):
    frames = [np.full((20, 28, 3), 40 * i, np.uint8) for i in range(5)]
    media.encode_video(frames, tmp_path / "clip.mp4", fps=5)
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 500)
    src = VideoInput(tmp_path, size=16)
    write_shards(src, tmp_path / "out", progress=False)
    assert [os.path.basename(s.path) for s in src.skipped] == ["broken.mp4"]
    m, got = read_back(tmp_path / "out")
    assert sorted(got) == [f"clip_{i:06d}" for i in range(5)]
    assert got["clip_000003"]["image"].shape == (16, 16, 3)
    assert abs(got["clip_000003"]["image"].mean() - 120) < 10
    assert got["clip_000004"]["json"]["frame"] == 4


def test_duplicate_keys_rejected(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="duplicate"):
        write_shards([Sample("a.b", img), Sample("a_b", img)], tmp_path, progress=False)
