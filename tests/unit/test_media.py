"""media.py against the real ffmpeg binary: encode, decode, resample, crop/resize, errors with ffmpeg's stderr."""

import os
import signal

import numpy as np
import pytest

from acl_dist import media
from tests.images import frame_count


def _frames(n=6, h=24, w=32):
    """Frames whose mean brightness encodes the frame index (robust to H.264 loss)."""
    return [np.full((h, w, 3), 30 + (30 * i) % 210, np.uint8) for i in range(n)]


def test_binary_resolves_once_and_runs():
    assert media.ffmpeg_binary() == media.ffmpeg_binary()
    assert media.ffmpeg_binary().split("/")[-1].startswith("ffmpeg")


def test_encode_decode_roundtrip(tmp_path):
    path = tmp_path / "v.mp4"
    assert media.encode_video(_frames(), path, fps=10) == 6
    frames = list(media.decode_video(path))
    assert len(frames) == 6 == frame_count(path)
    assert frames[0].shape == (24, 32, 3) and frames[0].dtype == np.uint8
    means = np.array([f.mean() for f in frames])
    # lossy H.264 (the codec's rate control, not the CPU, sets the error): frame means within 8 of 255 levels,
    # well inside the 30 levels between frames, so the order is kept
    np.testing.assert_allclose(means, 30 + 30 * np.arange(6), atol=8)


def test_fps_and_size(tmp_path):
    path = tmp_path / "v.mp4"
    frames = _frames(10, 20, 40)
    frames[0][:, :10] = 255  # a bright left band, cut away by the center crop
    media.encode_video(frames, path, fps=10)
    out = list(media.decode_video(path, fps=5, size=16))
    assert len(out) == 5 == frame_count(path, fps=5)
    assert out[0].shape == (16, 16, 3)
    assert out[0].mean() < 60  # the left band (columns 0-9 of 40) lies outside the 20x20 center crop


def test_odd_sizes_are_padded(tmp_path):
    path = tmp_path / "odd.mp4"
    media.encode_video(_frames(3, 15, 21), path, fps=5)
    assert next(media.decode_video(path)).shape == (16, 22, 3)


def test_errors_carry_ffmpeg_stderr(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(media.MediaError, match="Invalid data found"):
        list(media.decode_video(bad))
    with pytest.raises(media.MediaError, match="no such video"):
        list(media.decode_video(tmp_path / "missing.mp4"))
    with pytest.raises(media.MediaError, match="uint8"):
        media.encode_video([np.zeros((4, 4, 3), np.float32)], tmp_path / "x.mp4")
    with pytest.raises(media.MediaError, match="all frames"):
        media.encode_video([np.zeros((4, 4, 3), np.uint8), np.zeros((6, 4, 3), np.uint8)], tmp_path / "y.mp4")


def _ffmpeg_children() -> set[int]:
    """Live (not yet reaped) ffmpeg processes started by this one."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                name, rest = f.read().rsplit(")", 1)
            if int(rest.split()[1]) == me and "ffmpeg" in name:
                found.add(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_early_stop_does_not_hang_and_leaves_no_ffmpeg(tmp_path):
    path = tmp_path / "v.mp4"
    media.encode_video(_frames(300, 64, 64), path, fps=10)  # far more than one pipe buffer of frames
    gen = media.decode_video(path)
    first = next(gen)
    assert first.shape == (64, 64, 3)
    running = _ffmpeg_children()
    assert running, "decoding runs an ffmpeg process"
    old = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("closing the decoder hung"))
    signal.alarm(20)
    try:
        gen.close()  # kills ffmpeg; must return promptly and raise nothing
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert not running & _ffmpeg_children(), "ffmpeg was left running or unreaped"
