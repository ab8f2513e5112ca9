"""Pictures of a run, for training and the tools alike: sample grids (and scatter plots of 2-D samples),
interpolation strips, videos and the evaluation's metric curves.

Images arrive as our [-1, 1] float tensors [B, C, H, W]; :func:`to_uint8_hwc` is where they become the
uint8 [H, W, 3] arrays PNG and video writers take. Videos go through :func:`acl_dist.media.encode_video`
(ffmpeg); curves are drawn on matplotlib's Agg canvas without pyplot, so no display is needed on a cluster node
and no global backend is switched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """[-1, 1] float [C, H, W] (C = 1 or 3) -> uint8 [H, W, 3] numpy."""
    x = ((image.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)  # [C, H, W]
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.permute(1, 2, 0).contiguous().numpy()


def tile(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """[B, C, H, W] -> [C', H', W']: ``nrow`` images a row, ``padding`` pixels of ``pad_value`` around each, grey
    repeated to RGB: torchvision's ``make_grid`` layout (one image alone comes back unpadded, as there), written
    here because importing torchvision.utils costs every process 1.8 s (it imports torchvision's models, and
    those torch._dynamo), and every training run draws grids."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    b, c, h, w = images.shape
    if b == 1:
        return images[0]
    cols = min(nrow, b)
    rows = -(-b // cols)
    cell_h, cell_w = h + padding, w + padding
    grid = images.new_full((c, rows * cell_h + padding, cols * cell_w + padding), pad_value)
    for i in range(b):
        r, k = divmod(i, cols)
        grid[:, r * cell_h + padding : (r + 1) * cell_h, k * cell_w + padding : (k + 1) * cell_w] = images[i]
    return grid


def grid_image(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """[-1, 1] [B, C, H, W] -> one uint8 [H', W', 3] grid, ``nrow`` images per row, black padding."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [B, 1|3, H, W], got {tuple(images.shape)}")
    grid = tile(images.detach().float().cpu(), nrow=nrow, padding=padding, pad_value=-1.0)  # [3, H', W']
    return to_uint8_hwc(grid)


def _as_saved_by_torchvision(grid: torch.Tensor) -> np.ndarray:
    """[-1, 1] [3, H, W] -> uint8 [H, W, 3] with torchvision ``save_image``'s rounding (x * 255 + 0.5, truncated),
    so sample grids keep the bytes they had when torchvision wrote them."""
    x = ((grid + 1) / 2).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().numpy()


def _save_png(array: np.ndarray, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def save_grid(images: torch.Tensor, path: str, nrow: int = 8, padding: int = 2) -> str:
    """Write [-1, 1] images [B, C, H, W] as a PNG grid with ``nrow`` images per row; returns ``path``."""
    return _save_png(grid_image(images, nrow, padding), path)


def interpolation_strip(rows: Sequence[torch.Tensor], path: str, padding: int = 2) -> str:
    """Write interpolation rows (each [T, C, H, W], the same T) as one PNG, one row per interpolation."""
    if not rows:
        raise ValueError("no rows to draw")
    lengths = {r.shape[0] for r in rows}
    if len(lengths) != 1:
        raise ValueError(f"rows differ in length: {sorted(lengths)}")
    return save_grid(torch.cat(list(rows), dim=0), path, nrow=lengths.pop(), padding=padding)


def save_video(frames: Iterable[torch.Tensor], path: str, fps: float = 24.0) -> int:
    """Encode [-1, 1] frames (each [C, H, W], or [B, C, H, W] drawn as a grid) as an mp4; returns frames written."""
    from acl_dist.media import encode_video  # ffmpeg only when a video is asked for

    def as_arrays():
        for frame in frames:
            yield grid_image(frame) if frame.dim() == 4 else to_uint8_hwc(frame)

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return encode_video(as_arrays(), path, fps)


def plot_metrics(rows: Sequence[dict], png_path: str, x: str = "step", title: str = "") -> str:
    """One panel per reported value of ``rows`` (all but ``x``, ``seconds`` and ``*_std``), side by side.

    A ``<name>_mean`` column is drawn with its ``<name>_std`` as error bars (KID, IS); rows lacking a value
    (the metrics changed on a resume) are left out of that panel only.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, no display needed

    names: list[str] = []
    for row in rows:
        names += [k for k in row if k not in names and k not in (x, "seconds") and not k.endswith("_std")]
    fig = Figure(figsize=(4 * max(1, len(names)), 3.2), dpi=100)
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        have = [r for r in rows if name in r]
        spread = name[: -len("_mean")] + "_std" if name.endswith("_mean") else None
        errors = [r.get(spread, 0.0) for r in have] if spread and all(spread in r for r in have) else None
        ax.errorbar([r[x] for r in have], [r[name] for r in have], yerr=errors, marker="o", markersize=3,
                    capsize=2)
        ax.set_xlabel(x)
        ax.set_title(name.upper() if name == "fid" else name)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path)
    return png_path


def save_samples(samples: Tensor, path: str, reference: Tensor | None = None) -> str:
    """Images [B, C, H, W] in [-1, 1] as a PNG grid; 2-D points [B, 2] as a scatter over the data."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if samples.dim() == 4:
        nrow = max(1, int(round(samples.shape[0] ** 0.5)))
        grid = tile(samples.detach().float().cpu().clamp(-1, 1), nrow=nrow, padding=1, pad_value=-1.0)
        return _save_png(_as_saved_by_torchvision(grid), path)
    return save_scatter(samples, path, reference)


def save_scatter(points: Tensor, path: str, reference: Tensor | None = None, title: str = "") -> str:
    """2-D points [B, 2] as a scatter over the data's (``reference``) on matplotlib's Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend switch

    fig = Figure(figsize=(4, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if reference is not None:
        ax.scatter(*reference[:, :2].T.cpu().numpy(), s=2, c="tab:red", alpha=0.3, label="data")
    ax.scatter(*points[:, :2].T.cpu().numpy(), s=4, c="tab:cyan", label="generated")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return path
