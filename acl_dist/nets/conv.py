"""DCGAN-style convolutional nets for any power-of-two resolution from 8 to 1024.

Channels follow a capped doubling schedule: ``channels(r) = min(max_channels, base_channels * R / r)`` at
resolution r of an R-pixel image, so the highest-resolution layers are the narrowest (as in DCGAN and
StyleGAN), and big resolutions do not blow up the 4x4 end.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from acl_dist.nets.norms import maybe_spectral, norm_2d


def channel_schedule(resolution: int, base: int, cap: int) -> dict[int, int]:
    """Channels at each resolution 4, 8, ..., resolution."""
    levels = int(math.log2(resolution))
    return {2**i: min(cap, base * resolution // 2**i) for i in range(2, levels + 1)}


def _run_blocks(blocks: nn.ModuleList, x: Tensor, use_checkpoint: bool) -> Tensor:
    """Run blocks in order, recomputing activations in backward when asked (saves memory at high res)."""
    for block in blocks:
        if use_checkpoint and x.requires_grad:
            # the blocks draw no random numbers: stashing and restoring the RNG state would only cost time
            # (and it cannot be recorded in a CUDA graph)
            x = checkpoint(block, x, use_reentrant=False, preserve_rng_state=False)
        else:
            x = block(x)
    return x


class ConvGenerator(nn.Module):
    """z [B, d] -> image [B, C, R, R] in [-1, 1]: linear to 4x4, then stride-2 transposed convs."""

    def __init__(self, in_dim: int, resolution: int, channels: int, base_channels: int = 64,
                 max_channels: int = 512, norm: str = "batch", checkpoint_activations: bool = False):
        super().__init__()
        ch = channel_schedule(resolution, base_channels, max_channels)
        self.resolution, self.use_checkpoint = resolution, checkpoint_activations
        self.stem = nn.Linear(in_dim, ch[4] * 16)
        self.stem_act = nn.Sequential(norm_2d(norm, ch[4]), nn.ReLU())
        self.blocks = nn.ModuleList()
        r = 4
        while r < resolution:
            self.blocks.append(nn.Sequential(
                nn.ConvTranspose2d(ch[r], ch[2 * r], 4, 2, 1, bias=norm == "none"),
                norm_2d(norm, ch[2 * r]), nn.ReLU()))
            r *= 2
        self.to_image = nn.Conv2d(ch[resolution], channels, 3, 1, 1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.stem(z).view(z.shape[0], -1, 4, 4)  # [B, C4, 4, 4]
        x = _run_blocks(self.blocks, self.stem_act(x), self.use_checkpoint)  # [B, C_R, R, R]
        return torch.tanh(self.to_image(x))


class ConvTrunk(nn.Module):
    """image [B, C, R, R] -> features [B, C4 * 16]: stride-2 convs down to 4x4, LeakyReLU(0.2).

    The first layer has no norm (DCGAN). The flattened 4x4 map is the "last feature layer" Phi that
    ACL-GAN's feature reconstruction (eq. 4) compares.
    """

    def __init__(self, resolution: int, channels: int, base_channels: int = 64, max_channels: int = 512,
                 norm: str = "batch", spectral: bool = False, checkpoint_activations: bool = False):
        super().__init__()
        ch = channel_schedule(resolution, base_channels, max_channels)
        self.use_checkpoint = checkpoint_activations
        self.blocks = nn.ModuleList()
        r, in_ch = resolution, channels
        while r > 4:
            conv = maybe_spectral(nn.Conv2d(in_ch, ch[r // 2], 4, 2, 1), spectral)
            layer_norm = nn.Identity() if r == resolution else norm_2d(norm, ch[r // 2])
            self.blocks.append(nn.Sequential(conv, layer_norm, nn.LeakyReLU(0.2)))
            in_ch, r = ch[r // 2], r // 2
        self.feature_dim = ch[4] * 16

    def forward(self, x: Tensor) -> Tensor:
        return _run_blocks(self.blocks, x, self.use_checkpoint).flatten(1)  # [B, C4 * 16]


class ConvDiscriminator(nn.Module):
    """image -> one logit (or critic score) [B]; ``features`` gives Phi(x) [B, F]."""

    def __init__(self, resolution: int, channels: int, base_channels: int = 64, max_channels: int = 512,
                 norm: str = "batch", spectral: bool = False, checkpoint_activations: bool = False):
        super().__init__()
        self.trunk = ConvTrunk(resolution, channels, base_channels, max_channels, norm, spectral,
                               checkpoint_activations)
        self.feature_dim = self.trunk.feature_dim
        self.head = maybe_spectral(nn.Linear(self.feature_dim, 1), spectral)

    def features(self, x: Tensor) -> Tensor:
        return self.trunk(x)

    def score(self, features: Tensor) -> Tensor:
        """The score [B] of Phi(x) [B, F] (InfoGAN shares the features with its Q head)."""
        return self.head(features).squeeze(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.score(self.trunk(x))


class ConvEncoder(nn.Module):
    """image -> code [B, out_dim] (out_dim = 2d for a VAE's mean and log-variance)."""

    def __init__(self, resolution: int, channels: int, out_dim: int, base_channels: int = 64,
                 max_channels: int = 512, norm: str = "batch", checkpoint_activations: bool = False):
        super().__init__()
        self.trunk = ConvTrunk(resolution, channels, base_channels, max_channels, norm, False,
                               checkpoint_activations)
        self.head = nn.Linear(self.trunk.feature_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))


class ConvClassifier(nn.Module):
    """ACL-SGAN's inference net: a classifier whose last fully connected hidden layer is the code.

    image -> trunk -> fc (the code, [B, d]) -> LeakyReLU -> fc (class logits [B, K]).
    ``standardize_code`` standardises the code per dimension over the batch (BatchNorm without affine; see
    ``nets.acl.StandardizedCode``) before the class head reads it.
    """

    def __init__(self, resolution: int, channels: int, code_dim: int, num_classes: int,
                 base_channels: int = 64, max_channels: int = 512, norm: str = "batch",
                 standardize_code: bool = False):
        super().__init__()
        self.trunk = ConvTrunk(resolution, channels, base_channels, max_channels, norm)
        self.code = nn.Linear(self.trunk.feature_dim, code_dim)
        self.code_norm = nn.BatchNorm1d(code_dim, affine=False) if standardize_code else nn.Identity()
        self.classify = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(code_dim, num_classes))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        code = self.code_norm(self.code(self.trunk(x)))  # [B, d]
        return code, self.classify(code)  # [B, d], [B, K]
