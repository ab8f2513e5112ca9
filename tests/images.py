"""Images and videos the tests share: real sklearn digits and worse 'generated' ones, and an ffmpeg frame count."""

from __future__ import annotations

import os
import re
import subprocess

import torch
from sklearn.datasets import load_digits


def digits(n: int, offset: int = 0) -> torch.Tensor:
    """n sklearn digits as [-1, 1] images [n, 1, 16, 16] (nearest upsampling of the 8x8 originals)."""
    x = torch.tensor(load_digits().images[offset : offset + n], dtype=torch.float32) / 8.0 - 1.0
    return x.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2).unsqueeze(1)


def fakes(n: int) -> torch.Tensor:
    """Worse 'generated' digits: noisy and shifted, so FID is clearly non-zero."""
    g = torch.Generator().manual_seed(1)
    x = digits(n, offset=900) + 0.4 * torch.randn(n, 1, 16, 16, generator=g)
    return torch.roll(x, shifts=2, dims=3).clamp(-1, 1)


def frame_count(path: str | os.PathLike, fps: float | None = None) -> int:
    """Frames ffmpeg decodes from ``path`` (at ``fps``), read independently of the writer under test
    (``ffmpeg -f null``: imageio-ffmpeg ships no ffprobe)."""
    from acl_dist.media import ffmpeg_binary

    vf = ["-vf", f"fps={fps}"] if fps else []
    proc = subprocess.run([ffmpeg_binary(), "-hide_banner", "-nostdin", "-stats", "-i", os.fspath(path), *vf,
                           "-f", "null", "-"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(re.findall(r"frame=\s*(\d+)", proc.stderr)[-1])


def imports_module(code: str, module: str) -> bool:
    """Whether running ``code`` in a fresh interpreter imports ``module`` (start-up cost checks)."""
    import sys

    probe = f"import sys\n{code}\nprint({module!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1] == "True"
