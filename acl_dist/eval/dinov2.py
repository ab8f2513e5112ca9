"""DINOv2's ViT backbone, built from a weights file alone, for FD-DINOv2 offline.

Why our own copy: torch-fidelity's DINOv2 extractor fetches the model code from GitHub through ``torch.hub``
at run time and takes no local weights; the offline machines can do neither. This is the network
``torch.hub.load("facebookresearch/dinov2", "dinov2_vit{s,b,l}14")`` builds (``DinoVisionTransformer``:
no register tokens, MLP feed-forward, LayerScale, LayerNorm eps 1e-6, position embeddings interpolated
bicubically with the 0.1 offset), with the same parameter names, so the official
``dinov2_vit*14_pretrain.pth`` files load strictly. Its output is the normalised class token, what the hub
model's ``forward`` returns and what FD-DINOv2 (Stein et al., 2023) is computed on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HEAD_DIM = 64  # every DINOv2 ViT (S/14: 384 = 6 x 64, B: 12 heads, L: 16, g: 24)


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, 3, H, W] -> [B, H/p * W/p, dim]


class Attention(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.heads = dim // HEAD_DIM
        self.scale = (dim // self.heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape  # [B, T, dim]
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # [3, B, h, T, c/h]
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)  # [B, h, T, T]: plain attention, as without xFormers
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm1, self.attn, self.ls1 = nn.LayerNorm(dim, eps=1e-6), Attention(dim), LayerScale(dim)
        self.norm2, self.mlp, self.ls2 = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, hidden), LayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2(nn.Module):
    """DINOv2 ViT-S/B/L with patch ``patch``, sized by the arguments; see :meth:`from_state_dict`."""

    def __init__(self, dim: int, depth: int, hidden: int, patch: int, grid: int):
        super().__init__()
        self.patch = patch
        self.patch_embed = PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))  # trained at grid x grid patches
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # used in training only; kept so the file loads
        self.blocks = nn.ModuleList(Block(dim, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> DinoV2:
        """The network a DINOv2 weights file describes, with those weights (loaded strictly).

        Raises:
            ValueError: a variant this copy does not build (register tokens, ViT-g's SwiGLU, chunked blocks).
        """
        unsupported = [k for k in state if "register_tokens" in k or ".w12." in k or k.startswith("blocks.0.0.")]
        if unsupported or "patch_embed.proj.weight" not in state:
            raise ValueError("not a DINOv2 ViT-S/B/L/14 state dict without registers (unexpected keys such as "
                             f"{(unsupported or sorted(state)[:3])})")
        dim = state["cls_token"].shape[-1]
        depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        grid = math.isqrt(state["pos_embed"].shape[1] - 1)
        model = cls(dim, depth, state["blocks.0.mlp.fc1.weight"].shape[0], state["patch_embed.proj.weight"].shape[-1],
                    grid)
        model.load_state_dict(state)
        return model

    def position_embedding(self, h: int, w: int) -> Tensor:
        """[1, 1 + h/p * w/p, dim]: the trained grid's embeddings resized bicubically to this image's patches."""
        n = self.pos_embed.shape[1] - 1
        rows, cols = h // self.patch, w // self.patch
        if rows * cols == n and h == w:
            return self.pos_embed
        side, dim = math.isqrt(n), self.pos_embed.shape[-1]
        grid = self.pos_embed[:, 1:].float().reshape(1, side, side, dim).permute(0, 3, 1, 2)  # [1, dim, s, s]
        # the 0.1 offset avoids floor() rounding the output size down; DINOv2 keeps it for its trained weights
        scale = ((rows + 0.1) / side, (cols + 0.1) / side)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)  # [1, dim, rows, cols]
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat([self.pos_embed[:, :1].float(), grid], dim=1).to(self.pos_embed.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Normalised images [B, 3, H, W] -> the normalised class token [B, dim]."""
        tokens = self.patch_embed(x)  # [B, T, dim]
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)  # [B, 1 + T, dim]
        tokens = tokens + self.position_embedding(x.shape[2], x.shape[3])
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]
