"""The paper's pictures from a trained method: interpolations through codes, InfoGAN traversals, latent walks.

Each function returns tensors in [-1, 1] and leaves drawing to ``acl_dist.pictures`` (PNG strips, MP4),
so what is computed can be tested apart from how it is drawn.
"""

from __future__ import annotations

from typing import Iterator, Mapping

import torch
from torch import Tensor, nn

from acl_dist.methods.base import Method


def lerp_path(a: Tensor, b: Tensor, steps: int) -> Tensor:
    """[steps, *a.shape]: a, ..., b along the straight line (codes: the paper's Fig. 10 interpolation)."""
    t = torch.linspace(0, 1, steps, device=a.device, dtype=a.dtype).view(-1, *([1] * a.dim()))
    return a.unsqueeze(0) * (1 - t) + b.unsqueeze(0) * t


def slerp_path(a: Tensor, b: Tensor, steps: int) -> Tensor:
    """Great-circle path between Gaussian noise vectors (per row), which keeps the norm typical of the prior.

    Linear paths between two Gaussian draws pass through low-norm points the generator never saw in training.
    Rows that are (anti)parallel fall back to the straight line.
    """
    t = torch.linspace(0, 1, steps, device=a.device, dtype=a.dtype).view(-1, *([1] * a.dim()))
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-6, 1 - 1e-6))
    sin = torch.sin(omega)
    path = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / sin
    straight = lerp_path(a, b, steps)
    return torch.where(sin.abs() < 1e-4, straight, path)


def noise_path(method: Method, a: Tensor, b: Tensor, steps: int) -> Tensor:
    """Great circles for pure Gaussian noise; straight lines otherwise (mixtures, uniform, InfoGAN's one-hot
    and uniform codes appended to z), where a great circle has no meaning."""
    pure_gaussian = method.prior.kind == "gaussian" and a.shape[-1] == method.noise_dim()
    return slerp_path(a, b, steps) if pure_gaussian else lerp_path(a, b, steps)


@torch.no_grad()
def code_interpolations(method: Method, nets: Mapping[str, nn.Module], x_a: Tensor, x_b: Tensor,
                        steps: int) -> Tensor:
    """Reconstructions along the line between the encoder's codes of two image batches (paper Fig. 10).

    Args:
        x_a, x_b: [R, C, H, W] real images in [-1, 1]; row r interpolates x_a[r] -> x_b[r].
    Returns:
        [R, steps + 2, C, H, W]: x_a, decode(code path) (``steps`` images), x_b.
    """
    codes = lerp_path(method.encode(x_a, nets), method.encode(x_b, nets), steps)  # [T, R, d]
    t, r = codes.shape[:2]
    decoded = method.decode(codes.reshape(t * r, -1), nets).float().reshape(t, r, *x_a.shape[1:])
    return torch.cat([x_a.float().unsqueeze(1), decoded.transpose(0, 1), x_b.float().unsqueeze(1)], dim=1)


@torch.no_grad()
def noise_interpolations(method: Method, nets: Mapping[str, nn.Module], rows: int, steps: int,
                         device: torch.device) -> Tensor:
    """[rows, steps, ...] samples along paths between two prior draws (methods without an encoder)."""
    path = noise_path(method, method.sample_noise(rows, device), method.sample_noise(rows, device), steps)
    out = method.generate(path.reshape(steps * rows, -1), nets).float()
    return out.reshape(steps, rows, *out.shape[1:]).transpose(0, 1)


@torch.no_grad()
def infogan_traversals(method: Method, nets: Mapping[str, nn.Module], rows: int, steps: int,
                       device: torch.device) -> dict[str, Tensor]:
    """For each InfoGAN code, [rows, columns, C, H, W]: each row keeps z and the other codes fixed and sweeps
    one code: a categorical code through its categories, a continuous one through [-2, 2] (beyond the
    training range [-1, 1], as InfoGAN's Fig. 2 does, to show extrapolation)."""
    base = method.sample_noise(rows, device)  # [rows, d + sum(K) + n_cont]
    start = method.noise_dim()
    out: dict[str, Tensor] = {}
    for i, k in enumerate(method.categories):
        noise = base.unsqueeze(1).repeat(1, k, 1)  # [rows, k, D]
        noise[:, :, start:start + k] = torch.eye(k, device=device)
        out[f"categorical{i}"] = _generate_grid(method, nets, noise)
        start += k
    for j in range(method.n_continuous):
        noise = base.unsqueeze(1).repeat(1, steps, 1)
        noise[:, :, start + j] = torch.linspace(-2, 2, steps, device=device)
        out[f"continuous{j}"] = _generate_grid(method, nets, noise)
    return out


def _generate_grid(method: Method, nets: Mapping[str, nn.Module], noise: Tensor) -> Tensor:
    rows, cols = noise.shape[:2]
    images = method.generate(noise.reshape(rows * cols, -1), nets).float()
    return images.reshape(rows, cols, *images.shape[1:])


@torch.no_grad()
def latent_walk(method: Method, nets: Mapping[str, nn.Module], count: int, keypoints: int,
                frames_between: int, device: torch.device) -> Iterator[Tensor]:
    """Frames ([count, C, H, W] each) of a loop through ``keypoints`` prior draws: a walk through the latent
    space that a video shows far better than a grid (smoothness, mode hopping, dead regions)."""
    keys = [method.sample_noise(count, device) for _ in range(keypoints)]
    keys.append(keys[0])  # a loop: the video can repeat without a jump
    for a, b in zip(keys[:-1], keys[1:]):
        for noise in noise_path(method, a, b, frames_between + 1)[:-1]:
            yield method.generate(noise, nets).float()
