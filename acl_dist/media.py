"""ffmpeg helpers shared by data (video sources) and evaluation (interpolation videos).

Why ffmpeg through pipes: it reads and writes every container/codec users bring, needs no extra Python
codec packages, and streams frames so a long video never sits in memory. The binary is the system
``ffmpeg`` when there is one on PATH (usually the fullest build), else the static build that ships with
``imageio-ffmpeg``; it is resolved once per process. ``ffprobe`` is not required (imageio-ffmpeg does not
ship it): frames are decoded as a PPM stream whose per-frame header carries the size, and counting uses
``ffmpeg -f null``.

Every ffmpeg failure raises :class:`MediaError` carrying ffmpeg's own stderr, so the user sees the real
reason ("moov atom not found", "Invalid data found when processing input") instead of a broken pipe.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from typing import IO

import ffmpeg
import numpy as np

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")
_QUIET = ("-hide_banner", "-nostdin", "-loglevel", "error")


class MediaError(RuntimeError):
    """An ffmpeg call failed; the message ends with ffmpeg's own stderr."""

    def __init__(self, message: str, stderr: str = ""):
        stderr = stderr.strip()
        super().__init__(f"{message}: {stderr}" if stderr else message)
        self.stderr = stderr


@functools.lru_cache(maxsize=None)
def ffmpeg_binary() -> str:
    """Path of the ffmpeg executable: ``ffmpeg`` on PATH, else imageio-ffmpeg's bundled build."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MediaError("no ffmpeg on PATH and imageio-ffmpeg is not installed") from e
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    logger.debug("using imageio-ffmpeg's ffmpeg at %s", exe)
    return exe


class _StderrDrain:
    """Reads a process's stderr on a thread so a chatty ffmpeg never blocks on a full pipe."""

    def __init__(self, stream: IO[bytes]):
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: IO[bytes]) -> None:
        for chunk in iter(lambda: stream.read(4096), b""):
            self._chunks.append(chunk)

    def text(self) -> str:
        self._thread.join(timeout=10)
        return b"".join(self._chunks).decode("utf-8", "replace")


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _read_ppm(stream: IO[bytes]) -> np.ndarray | None:
    """One binary PPM frame (``P6\\n<w> <h>\\n255\\n`` + w*h*3 bytes) or None at the end of the stream."""
    fields: list[bytes] = []
    token = b""
    while len(fields) < 4:  # magic, width, height, maxval; separated by single whitespace bytes
        ch = stream.read(1)
        if not ch:
            return None if not fields and not token else _truncated()
        if ch.isspace():
            if token:
                fields.append(token)
                token = b""
        else:
            token += ch
    if fields[0] != b"P6" or fields[3] != b"255":
        raise MediaError(f"unexpected frame header from ffmpeg: {b' '.join(fields)!r}")
    w, h = int(fields[1]), int(fields[2])
    data = _read_exact(stream, w * h * 3)
    if len(data) != w * h * 3:
        _truncated()
    return np.frombuffer(data, np.uint8).reshape(h, w, 3)  # [H, W, 3]


def _truncated() -> None:
    raise MediaError("ffmpeg frame stream ended inside a frame")


def _decode_graph(path: str, fps: float | None, size: int | None):
    stream = ffmpeg.input(path).video
    if fps:
        stream = stream.filter("fps", fps=fps)
    if size:
        # Center square crop, then resize: the same geometry the image pipeline uses.
        stream = stream.filter("crop", "min(iw,ih)", "min(iw,ih)")
        stream = stream.filter("scale", size, size, flags="area")
    return stream.output("pipe:", format="image2pipe", vcodec="ppm", pix_fmt="rgb24").global_args(*_QUIET)


def decode_video(path: str | os.PathLike, fps: float | None = None, size: int | None = None) -> Iterator[np.ndarray]:
    """Frames of a video's first video stream as uint8 [H, W, 3] RGB arrays, streamed.

    Args:
        fps: resample to this frame rate (ffmpeg's ``fps`` filter); None keeps every frame.
        size: center-crop to a square and resize to ``size`` x ``size``; None keeps the native size.

    Raises:
        MediaError: the file is missing, not a video, or ffmpeg fails mid-way (message has ffmpeg's stderr).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MediaError(f"no such video file: {path}")
    proc = _decode_graph(path, fps, size).run_async(cmd=ffmpeg_binary(), pipe_stdout=True, pipe_stderr=True)
    drain = _StderrDrain(proc.stderr)
    finished = False
    try:
        while (frame := _read_ppm(proc.stdout)) is not None:
            yield frame
        finished = True
    finally:
        if not finished:  # the consumer stopped early or we failed: do not leave ffmpeg running
            proc.kill()
        proc.stdout.close()
        code = proc.wait()
        err = drain.text()
    if code != 0:
        raise MediaError(f"ffmpeg could not decode {path} (exit {code})", err)
    if err.strip():
        logger.warning("ffmpeg reported while decoding %s: %s", path, err.strip()[-500:])


def encode_video(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike,
    fps: float = 24.0,
    *,
    crf: int = 18,
    codec: str = "libx264",
) -> int:
    """Write uint8 [H, W, 3] RGB frames as an H.264 (yuv420p) mp4 that every player opens.

    Odd frame sizes are padded by one pixel (yuv420p needs even sides). All frames must share one size.
    Returns the number of frames written.

    Raises:
        MediaError: no frames, mixed sizes, or ffmpeg failed (message has ffmpeg's stderr).
    """
    path = os.fspath(path)
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise MediaError(f"no frames to write to {path}")
    h, w = _check_frame(first, None)
    graph = (
        ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", r=fps)
        .filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")
        .output(path, vcodec=codec, pix_fmt="yuv420p", crf=crf, movflags="+faststart", r=fps)
        .global_args(*_QUIET)
        .overwrite_output()
    )
    proc = graph.run_async(cmd=ffmpeg_binary(), pipe_stdin=True, pipe_stderr=True)
    drain = _StderrDrain(proc.stderr)
    count = 0
    try:
        for frame in _chain(first, it):
            _check_frame(frame, (h, w))
            proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            count += 1
    except BrokenPipeError:
        pass  # ffmpeg died: its exit code and stderr below say why
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
    code = proc.wait()
    err = drain.text()
    if code != 0:
        raise MediaError(f"ffmpeg could not encode {path} (exit {code})", err)
    return count


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _check_frame(frame: np.ndarray, shape: tuple[int, int] | None) -> tuple[int, int]:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise MediaError(f"frames must be uint8 [H, W, 3], got {frame.dtype} {tuple(frame.shape)}")
    if shape is not None and frame.shape[:2] != shape:
        raise MediaError(f"all frames must be {shape[0]}x{shape[1]}, got {frame.shape[0]}x{frame.shape[1]}")
    return frame.shape[0], frame.shape[1]
