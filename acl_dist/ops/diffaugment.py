"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for every image a critic sees.

Why: with little data (MNIST-5k's 4,000 digits, a few thousand faces) the critic memorises the training set
and its feedback to the generator degrades. DiffAugment applies the same family of random transformations to
real and generated images alike, each image its own draw, and keeps them differentiable, so the generator is
trained through them and never learns to produce the augmentations themselves.

The three policies of the paper, on images in [-1, 1] [B, C, H, W]:

- ``color``: brightness + U(-0.5, 0.5), saturation x U(0, 2) (about the per-pixel channel mean; nothing for
  grey images), contrast x U(0.5, 1.5) (about the image mean);
- ``translation``: an integer shift of up to 1/8 of the size in each direction, zero padding;
- ``cutout``: a square of half the size, at a random centre, set to 0.

Random numbers come from torch's generator on the images' device (graph-safe Philox on CUDA), so an augmented
step can be captured as a CUDA graph. ``augment_ref`` is the plain reference each fast op is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

POLICIES = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _uniform(x: Tensor, low: float, high: float) -> Tensor:
    """One draw per image in [low, high), shaped [B, 1, 1, 1] to broadcast over its pixels."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * (high - low) + low


def color(x: Tensor) -> Tensor:
    x = x + _uniform(x, -0.5, 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)  # [B, 1, H, W]
    x = (x - mean) * _uniform(x, 0.0, 2.0) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # [B, 1, 1, 1]
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean  # contrast


def _shifts(x: Tensor, limit: int) -> tuple[Tensor, Tensor]:
    """Per-image integer shifts in [-limit, limit] along H and W, [B, 1, 1] each."""
    size = (x.shape[0], 1, 1)
    return (torch.randint(-limit, limit + 1, size, device=x.device),
            torch.randint(-limit, limit + 1, size, device=x.device))


def translation(x: Tensor, ratio: float = TRANSLATION_RATIO) -> Tensor:
    """Shift each image by whole pixels, up to ``ratio`` of its size, filling with zeros (a gather, so the
    gradient flows back to the pixels that moved)."""
    b, _, h, w = x.shape
    dy, dx = _shifts(x, int(h * ratio + 0.5))
    rows = torch.arange(h, device=x.device).view(1, h, 1) - dy  # [B, H, 1]: source row of each output row
    cols = torch.arange(w, device=x.device).view(1, 1, w) - dx  # [B, 1, W]
    inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1)  # [B, 1, H, W]
    index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).reshape(b, 1, h * w)  # [B, 1, H*W]
    flat = x.reshape(b, x.shape[1], h * w).gather(2, index.expand(-1, x.shape[1], -1))  # [B, C, H*W]
    return flat.reshape(x.shape) * inside


def cutout(x: Tensor, ratio: float = CUTOUT_RATIO) -> Tensor:
    """Zero a square of ``ratio`` of the image size at a random centre per image (clipped at the borders)."""
    b, _, h, w = x.shape
    half_h, half_w = int(h * ratio + 0.5) // 2, int(w * ratio + 0.5) // 2
    cy = torch.randint(0, h + (1 - h % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - w % 2), (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    hole = (rows >= cy - half_h) & (rows < cy + half_h) & (cols >= cx - half_w) & (cols < cx + half_w)  # [B, H, W]
    return x * (~hole).unsqueeze(1).to(x.dtype)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


def augment(x: Tensor, policies: Sequence[str]) -> Tensor:
    """``x`` [B, C, H, W] through each policy in order (the paper's order: color, translation, cutout)."""
    for name in policies:
        x = _OPS[name](x)
    return x


def augment_ref(x: Tensor, policies: Sequence[str]) -> Tensor:
    """The reference: the same draws as :func:`augment` (same generator calls in the same order), each op written
    per image with padding and slicing. Slow; for tests."""
    out = x
    for name in policies:
        if name == "color":
            out = color(out)  # already per image and elementwise
            continue
        b, _, h, w = out.shape
        if name == "translation":
            dy, dx = _shifts(out, int(h * TRANSLATION_RATIO + 0.5))
            pad = int(h * TRANSLATION_RATIO + 0.5)
            padded = F.pad(out, (pad, pad, pad, pad))
            out = torch.stack([padded[i, :, pad - int(dy[i]):pad - int(dy[i]) + h,
                                      pad - int(dx[i]):pad - int(dx[i]) + w] for i in range(b)])
        else:
            half_h, half_w = int(h * CUTOUT_RATIO + 0.5) // 2, int(w * CUTOUT_RATIO + 0.5) // 2
            cy = torch.randint(0, h + (1 - h % 2), (b, 1, 1), device=out.device)
            cx = torch.randint(0, w + (1 - w % 2), (b, 1, 1), device=out.device)
            out = out.clone()
            for i in range(b):
                y0, y1 = max(0, int(cy[i]) - half_h), min(h, int(cy[i]) + half_h)
                x0, x1 = max(0, int(cx[i]) - half_w), min(w, int(cx[i]) + half_w)
                out[i, :, y0:y1, x0:x1] = 0
    return out
