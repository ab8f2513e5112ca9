"""stylegan2-ada's augmentation operations (Karras et al. 2020), differentiable, each applied to each image with
probability ``p`` times the op's weight (``WEIGHTS``: R3GAN's, the colour operations at half) — the pipe R3GAN
trains with (ops/augment_pipe.py schedules or adapts ``p``).

Why our own and not kornia's: the published pipe composes every geometric operation into one 3x3 matrix per
image and resamples once, and every colour operation into one 4x4 matrix, with its own distributions (log-normal
scale, anisotropy and contrast, hue as a rotation about the luma axis, luma flip as a reflection across it);
kornia's per-op augmentations resample once per operation and draw from other distributions, and reproducing
the composition from them would cost more code than the matrices. The operations, on images in [-1, 1]
[B, C, H, W], in the published order and with its default strengths:

| op | what | draw |
| --- | --- | --- |
| ``xflip`` | mirror left-right | 0 or 1 |
| ``rotate90`` | rotate by k x 90 degrees | k in {0, 1, 2, 3} |
| ``xint`` | integer translation | uniform in ±0.125 of the size, rounded to pixels |
| ``scale`` | isotropic scaling | log2-normal, std 0.2 |
| ``rotate`` | arbitrary rotation (before and after ``aniso``, each with p_rot = 1 - sqrt(1 - p)) | uniform ±180 deg |
| ``aniso`` | anisotropic scaling | log2-normal, std 0.2, x and 1/x |
| ``xfrac`` | fractional translation | normal, std 0.125 of the size |
| ``brightness`` | add | normal, std 0.2 |
| ``contrast`` | multiply about 0 | log2-normal, std 0.5 |
| ``lumaflip`` | reflect across the luma axis | 0 or 1 |
| ``hue`` | rotate about the luma axis | uniform ±180 deg |
| ``saturation`` | scale off the luma axis | log2-normal, std 1 |
| ``cutout`` | zero a square of half the size | centre uniform |

Geometric resampling (``resample``): ``wavelet``, as published: the image is padded by reflection, upsampled
2x through the symlet-6 wavelet's low-pass filter, resampled bilinearly at the 2x rate and brought back down
through the same filter, so rotations and down-scalings do not alias. The published pipe pads by the margin the
batch's transforms reach, capped at the image size less one; we always pad by that cap, so shapes do not
depend on the draws (a step stays graph-capturable), which changes nothing the published pipe samples inside its
margin. ``bilinear``: one bilinear resampling with reflection padding at the image's own rate (cheaper, aliases;
what acl_dist did before, the default so that recipes written before keep computing what they did). Grey
images take the colour matrix's mean over RGB, as the published pipe does for one channel. Random numbers come
from torch's generator on the images' device, so a step stays graph-capturable and a resumed run continues the
same draws.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
OPS = GEOMETRIC + COLOR + ("cutout",)
XINT_MAX, SCALE_STD, ROTATE_MAX, ANISO_STD, XFRAC_STD = 0.125, 0.2, 1.0, 0.2, 0.125
BRIGHTNESS_STD, CONTRAST_STD, HUE_MAX, SATURATION_STD, CUTOUT_SIZE = 0.2, 0.5, 1.0, 1.0, 0.5
WEIGHTS = {op: 0.5 if op in COLOR else 1.0 for op in OPS}  # each op's probability is p x its weight: R3GAN's
# train.py builds the pipe with the colour operations at 0.5, every other at 1
LUMA = torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3)  # the luma axis of the colour matrices
RESAMPLE = ("bilinear", "wavelet")
# The symlet-6 wavelet's decomposition low-pass filter (Daubechies' least asymmetric wavelet with 6 vanishing
# moments; the coefficients PyWavelets and stylegan2-ada use): orthonormal, sum sqrt(2)
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)
WAVELET_CENTRE = 5  # 2x sample 2i + 5 holds pixel i: where the published pipe's padding and coordinates put it


def _gate(b: int, p: Tensor, device: torch.device) -> Tensor:
    """[B] booleans: which images an op with probability ``p`` applies to."""
    return torch.rand(b, device=device) < p


def _where(apply: Tensor, value: Tensor, identity: float) -> Tensor:
    return torch.where(apply, value, torch.full_like(value, identity))


def _translate(tx: Tensor, ty: Tensor) -> Tensor:
    m = torch.eye(3, device=tx.device).repeat(len(tx), 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale(sx: Tensor, sy: Tensor) -> Tensor:
    m = torch.eye(3, device=sx.device).repeat(len(sx), 1, 1)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate(theta: Tensor) -> Tensor:
    m = torch.eye(3, device=theta.device).repeat(len(theta), 1, 1)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def geometric_matrix(ops: Sequence[str], b: int, p: Tensor, device: torch.device, size: tuple[int, int]) -> Tensor:
    """[B, 3, 3]: the inverse geometric transform of each image (output pixel -> input pixel), in coordinates
    where the image spans [-1, 1] (one pixel is 2 / size), composed as the published pipe composes it."""
    g = torch.eye(3, device=device).repeat(b, 1, 1)
    if "xflip" in ops:
        flip = torch.randint(2, (b,), device=device) * _gate(b, p * WEIGHTS["xflip"], device)
        g = g @ _scale(1 - 2.0 * flip, torch.ones(b, device=device))
    if "rotate90" in ops:
        k = torch.randint(4, (b,), device=device) * _gate(b, p * WEIGHTS["rotate90"], device)
        g = g @ _rotate(-math.pi / 2 * k)
    if "xint" in ops:
        u = (torch.rand(b, 2, device=device) * 2 - 1) * XINT_MAX
        tx = torch.round(u[:, 0] * size[1]) * 2 / size[1]  # whole pixels (2 / size is one pixel)
        ty = torch.round(u[:, 1] * size[0]) * 2 / size[0]
        apply = _gate(b, p * WEIGHTS["xint"], device)
        g = g @ _translate(_where(apply, tx, 0.0), _where(apply, ty, 0.0))
    if "scale" in ops:
        s = _where(_gate(b, p * WEIGHTS["scale"], device), torch.exp2(torch.randn(b, device=device) * SCALE_STD), 1.0)
        g = g @ _scale(s, s)
    p_rot = 1 - torch.sqrt((1 - p * WEIGHTS["rotate"]).clamp(min=0))
    if "rotate" in ops:
        theta = _where(_gate(b, p_rot, device), (torch.rand(b, device=device) * 2 - 1) * math.pi * ROTATE_MAX, 0.0)
        g = g @ _rotate(-theta)
    if "aniso" in ops:
        s = _where(_gate(b, p * WEIGHTS["aniso"], device), torch.exp2(torch.randn(b, device=device) * ANISO_STD), 1.0)
        g = g @ _scale(s, 1 / s)
    if "rotate" in ops:
        theta = _where(_gate(b, p_rot, device), (torch.rand(b, device=device) * 2 - 1) * math.pi * ROTATE_MAX, 0.0)
        g = g @ _rotate(-theta)
    if "xfrac" in ops:
        t = _where(_gate(b, p * WEIGHTS["xfrac"], device)[:, None], torch.randn(b, 2, device=device) * XFRAC_STD * 2,
                   0.0)
        g = g @ _translate(t[:, 0], t[:, 1])
    return g


def color_matrix(ops: Sequence[str], b: int, p: Tensor, device: torch.device) -> Tensor:
    """[B, 4, 4]: each image's colour transform in homogeneous RGB, composed as the published pipe does."""
    c = torch.eye(4, device=device).repeat(b, 1, 1)
    v = LUMA.to(device)
    if "brightness" in ops:
        add = _where(_gate(b, p * WEIGHTS["brightness"], device), torch.randn(b, device=device) * BRIGHTNESS_STD, 0.0)
        c = _translate3(add) @ c
    if "contrast" in ops:
        mul = torch.exp2(torch.randn(b, device=device) * CONTRAST_STD)
        mul = _where(_gate(b, p * WEIGHTS["contrast"], device), mul, 1.0)
        c = _scale3(mul) @ c
    if "lumaflip" in ops:
        flip = (torch.randint(2, (b,), device=device) * _gate(b, p * WEIGHTS["lumaflip"], device)).float()
        c = (torch.eye(4, device=device) - 2 * torch.outer(v, v) * flip[:, None, None]) @ c  # Householder
    if "hue" in ops:
        theta = _where(_gate(b, p * WEIGHTS["hue"], device), (torch.rand(b, device=device) * 2 - 1) * math.pi * HUE_MAX,
                       0.0)
        c = _rotate_about(v, theta) @ c
    if "saturation" in ops:
        s = _where(_gate(b, p * WEIGHTS["saturation"], device), torch.exp2(torch.randn(b, device=device) *
                                                                             SATURATION_STD), 1.0)
        vv = torch.outer(v, v)
        c = (vv + (torch.eye(4, device=device) - vv) * s[:, None, None]) @ c
    return c


def _translate3(t: Tensor) -> Tensor:
    m = torch.eye(4, device=t.device).repeat(len(t), 1, 1)
    m[:, :3, 3] = t[:, None]
    return m


def _scale3(s: Tensor) -> Tensor:
    m = torch.eye(4, device=s.device).repeat(len(s), 1, 1)
    m[:, 0, 0] = m[:, 1, 1] = m[:, 2, 2] = s
    return m


def _rotate_about(axis: Tensor, theta: Tensor) -> Tensor:
    """[B, 4, 4] rotations by ``theta`` about the unit vector ``axis`` (its first 3 of 4 entries; Rodrigues),
    homogeneous. The cross-product matrix is built by indexing, so no value is read back to the host."""
    a = axis[:3].to(theta.device)
    zero = a.new_zeros(())
    k = torch.stack([torch.stack([zero, -a[2], a[1]]), torch.stack([a[2], zero, -a[0]]),
                     torch.stack([-a[1], a[0], zero])])  # [3, 3]: k @ v = a x v
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    r = torch.eye(3, device=theta.device) * c + s * k + (1 - c) * torch.outer(a, a)
    m = torch.eye(4, device=theta.device).repeat(len(theta), 1, 1)
    m[:, :3, :3] = r
    return m


def augment_geometric(images: Tensor, g: Tensor, resample: str = "bilinear") -> Tensor:
    """Resample ``images`` [B, C, H, W] through the inverse transforms ``g`` [B, 3, 3]: ``bilinear`` (reflection
    padding) or ``wavelet`` (2x supersampled, as published; see the module's docstring)."""
    if resample == "wavelet":
        return _resample_wavelet(images, g)
    if resample != "bilinear":
        raise ValueError(f"unknown resampling {resample!r}; known: {', '.join(RESAMPLE)}")
    grid = F.affine_grid(g[:, :2, :].to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@functools.lru_cache(maxsize=32)
def _resampling_matrices(n: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """(up [2(3n - 2) + L - 2, n], down [n, 2n + L - 2]) for one axis of n pixels: ``up`` pads by reflection by
    n - 1 a side and applies sqrt(2) D^T (pixel i adds sqrt(2) h[k] to 2x sample 2i + k); ``down`` is D / sqrt(2)
    (output j sums h[k] / sqrt(2) times 2x sample 2j + k). As matrices, because a small dense matrix product is
    what every device does fastest (for a batch of 32 px images on a CPU thread, several times faster than
    shifted sums or a 1-channel transposed convolution: benchmarks/augment.py), and every order of derivative
    is a product again. Made once per size, dtype and device (not inside a captured step)."""
    h, length, pad = torch.tensor(SYM6, dtype=torch.float64), len(SYM6), n - 1
    source = (torch.arange(n + 2 * pad) - pad).abs()  # reflection about pixel 0 ...
    source = torch.where(source > n - 1, 2 * (n - 1) - source, source)  # ... and about pixel n - 1
    reflect = torch.zeros(n + 2 * pad, n, dtype=torch.float64)
    reflect[torch.arange(n + 2 * pad), source] = 1.0
    taps_at = torch.arange(length)
    up = torch.zeros(2 * (n + 2 * pad) + length - 2, n + 2 * pad, dtype=torch.float64)
    down = torch.zeros(n, 2 * n + length - 2, dtype=torch.float64)
    for i in range(n + 2 * pad):
        up[2 * i + taps_at, i] = h * math.sqrt(2)
    for j in range(n):
        down[j, 2 * j + taps_at] = h / math.sqrt(2)
    return (up @ reflect).to(device=device, dtype=dtype), down.to(device=device, dtype=dtype)


def _resample_wavelet(images: Tensor, g: Tensor) -> Tensor:
    """The published geometric resampling. With the orthonormal filter h, upsampling is sqrt(2) D^T and
    downsampling D / sqrt(2) per axis, where D correlates with h at stride 2; D D^T = I, so an identity
    transform gives the images back (to rounding), and whole-pixel translations move pixels exactly.
    Coordinates, as the published pipe places them: pixel i of what was upsampled sits on 2x sample 2i + 5
    (``WAVELET_CENTRE``; the filter's centroid is at 5.10, so a mirror or quarter turn also moves the image by
    0.1 px and softens it slightly, in the published pipe as here)."""
    b, c, h, w = images.shape
    length = len(SYM6)
    up_h, down_h = _resampling_matrices(h, images.dtype, images.device)  # padding by the published margin's cap
    up_w, down_w = _resampling_matrices(w, images.dtype, images.device)
    x = up_h @ images @ up_w.T
    out_h, out_w = 2 * h + length - 2, 2 * w + length - 2  # the 2x samples that downsampling reads
    theta = _wavelet_theta(g, (h, w), (out_h, out_w), tuple(x.shape[-2:]), length).to(images.dtype)
    grid = F.affine_grid(theta, [b, c, out_h, out_w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = down_h @ x @ down_w.T
    return x


def _wavelet_theta(g: Tensor, size: tuple[int, int], out: tuple[int, int], up: tuple[int, int], length: int) -> Tensor:
    """[B, 2, 3]: ``g`` (normalised output -> input coordinates of images of ``size``) as a map from the 2x
    output grid's normalised coordinates (``out`` samples a side) to the upsampled images' (``up``), where 2x
    sample m of either sits at pixel (m - WAVELET_CENTRE) / 2 of its images (padded by size - 1, for ``up``).
    Per axis of n pixels, output: x = a_o x_o + b_o; upsampled: x_u = a_u x + b_u (Python numbers: no host
    copy inside a step)."""
    (h, w), c = size, WAVELET_CENTRE

    def affine(n: int, m_out: int, m_up: int) -> tuple[float, float, float, float]:
        return m_out / (2 * n), (m_out / 2 + 0.5 - c) / n - 1, 2 * n / m_up, (2 * c + 1 - length) / m_up

    ax_o, bx_o, ax_u, bx_u = affine(w, out[1], up[1])
    ay_o, by_o, ay_u, by_u = affine(h, out[0], up[0])
    rows = []
    for r, (a_u, b_u) in enumerate(((ax_u, bx_u), (ay_u, by_u))):
        row = g[:, r]
        shifted = row[:, 0] * bx_o + row[:, 1] * by_o + row[:, 2] + b_u / a_u
        rows.append(torch.stack([row[:, 0] * ax_o, row[:, 1] * ay_o, shifted], dim=1) * a_u)
    return torch.stack(rows, dim=1)


def augment_color(images: Tensor, c: Tensor) -> Tensor:
    """Apply the colour transforms ``c`` [B, 4, 4] to ``images`` [B, 1|3, H, W] in [-1, 1]."""
    c = c.to(images.dtype)
    b, ch, h, w = images.shape
    if ch == 3:
        flat = images.reshape(b, 3, h * w)
        return (c[:, :3, :3] @ flat + c[:, :3, 3:]).reshape(b, 3, h, w)
    grey = c[:, :3, :].mean(dim=1)  # [B, 4]: one channel takes the mean row, as the published pipe does
    return images * grey[:, :3].sum(dim=1)[:, None, None, None] + grey[:, 3][:, None, None, None]


def cutout(images: Tensor, p: Tensor) -> Tensor:
    """A square of ``CUTOUT_SIZE`` of the image, at a uniform centre, set to 0, with probability ``p``."""
    b, _, h, w = images.shape
    apply = _gate(b, p * WEIGHTS["cutout"], images.device)
    centre = torch.rand(b, 2, device=images.device)
    ys = (torch.arange(h, device=images.device) + 0.5) / h
    xs = (torch.arange(w, device=images.device) + 0.5) / w
    inside_y = (ys[None, :] - centre[:, :1]).abs() < CUTOUT_SIZE / 2  # [B, H]
    inside_x = (xs[None, :] - centre[:, 1:]).abs() < CUTOUT_SIZE / 2  # [B, W]
    cut = inside_y[:, :, None] & inside_x[:, None, :] & apply[:, None, None]  # [B, H, W]
    return images * (~cut)[:, None].to(images.dtype)


def augment(images: Tensor, ops: Sequence[str], p: Tensor, resample: str = "bilinear") -> Tensor:
    """``images`` [B, C, H, W] through ``ops`` (in the published order), each with probability ``p`` (a 0-d
    tensor on the images' device), differentiably; geometric ops resampled by ``resample``. Outside autocast,
    in the images' precision (float32 at least): under bf16 autocast the resampling's matrix products would run
    in bf16, where the wavelet's up- and downsampling are no longer inverse (0.08 off at p = 0); the critic
    casts the result as it casts any input."""
    with torch.autocast(images.device.type, enabled=False):
        return _augment(images.to(torch.promote_types(images.dtype, torch.float32)), ops, p, resample)


def _augment(images: Tensor, ops: Sequence[str], p: Tensor, resample: str) -> Tensor:
    b, device = images.shape[0], images.device
    if any(o in GEOMETRIC for o in ops):
        images = augment_geometric(images, geometric_matrix(ops, b, p, device, tuple(images.shape[-2:])), resample)
    if any(o in COLOR for o in ops):
        images = augment_color(images, color_matrix(ops, b, p, device))
    if "cutout" in ops:
        images = cutout(images, p)
    return images
