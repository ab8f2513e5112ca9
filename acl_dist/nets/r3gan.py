"""R3GAN's generator and critic (Huang et al., "The GAN is dead; long live the GAN!", 2025), written here from the
paper's description of its "config E".

- No normalisation anywhere: the regularised relativistic loss (RpGAN + R1 + R2) keeps training stable, so the
  nets need neither batch norm (which a per-sample gradient penalty forbids in the critic) nor its costs.
- Residual stages of inverted bottlenecks: 1x1 conv widening by ``expansion``, LeakyReLU(0.2), grouped 3x3 conv
  (``group_width`` channels per group), LeakyReLU(0.2), 1x1 conv back; the identity around it.
- Fix-up initialisation: each branch's last conv starts at zero (every block is the identity at step 0) and the
  others are scaled by L^(-1/(2(m-1))) for L blocks of m = 3 layers, so depth does not blow up the signal.
- Transitions between stages: bilinear up-sampling then a 1x1 conv (generator), a 1x1 conv then bilinear
  down-sampling (critic); no transposed or strided convs.
- The generator starts from a linear "basis" layer (z to a 4x4 map) and ends with a 1x1 conv to pixels; the
  critic ends with a 4x4 depthwise "basis" conv and a linear layer to one score.

Widths follow the DCGAN nets' capped doubling (``nets.conv.channel_schedule``), ``blocks`` residual blocks per
resolution. The critic's ``features`` (the flattened 4x4 map) is the Phi ACL-GAN's feature reconstruction uses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acl_dist.nets.conv import _run_blocks, channel_schedule

LEAK = 0.2


def _groups(channels: int, group_width: int) -> int:
    """Groups of the 3x3 conv: ``group_width`` channels each, or one group when fewer channels than that."""
    return max(1, channels // group_width) if channels % group_width == 0 else 1


class ResidualBlock(nn.Module):
    """x + conv1x1(act(grouped conv3x3(act(conv1x1(x))))) [B, C, H, W], widened by ``expansion`` inside."""

    def __init__(self, channels: int, expansion: int, group_width: int, total_blocks: int):
        super().__init__()
        hidden = channels * expansion
        self.expand = nn.Conv2d(channels, hidden, 1)
        self.spatial = nn.Conv2d(hidden, hidden, 3, padding=1, groups=_groups(hidden, group_width))
        self.project = nn.Conv2d(hidden, channels, 1)
        scale = total_blocks ** (-1 / (2 * (3 - 1)))  # fix-up: L^(-1/(2(m-1))), m = 3 layers per branch
        for conv in (self.expand, self.spatial):
            nn.init.kaiming_normal_(conv.weight, a=LEAK, nonlinearity="leaky_relu")
            conv.weight.data.mul_(scale)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.project.weight)  # the branch starts at 0: the block is the identity at step 0
        nn.init.zeros_(self.project.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.expand(x), LEAK)
        h = F.leaky_relu(self.spatial(h), LEAK)
        return x + self.project(h)


def _linear_init(layer: nn.Module) -> nn.Module:
    nn.init.kaiming_normal_(layer.weight, a=LEAK, nonlinearity="leaky_relu")
    nn.init.zeros_(layer.bias)
    return layer


class Upsample(nn.Module):
    """Generator transition: bilinear x2, then a 1x1 conv to the next width [B, C, H, W] -> [B, C', 2H, 2W]."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _linear_init(nn.Conv2d(cin, cout, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


class Downsample(nn.Module):
    """Critic transition: a 1x1 conv to the next width, then bilinear /2 [B, C, H, W] -> [B, C', H/2, W/2].

    Bilinear down-sampling by 2 is the separable low-pass [1, 3, 3, 1] / 8 at stride 2 (the triangle filter
    stretched over two input pixels; zero padding at the borders, as StyleGAN's filters), written as a depthwise
    conv: it runs in every dtype autocast picks (an
    antialiased ``interpolate`` has no bf16 kernel on the CPU) and is differentiable twice for R1/R2."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _linear_init(nn.Conv2d(cin, cout, 1))
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
        self.register_buffer("kernel", torch.outer(taps, taps)[None, None], persistent=False)  # [1, 1, 4, 4]

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        kernel = self.kernel.to(x.dtype).expand(x.shape[1], 1, 4, 4)  # [C', 1, 4, 4]
        return F.conv2d(x, kernel, stride=2, padding=1, groups=x.shape[1])


def _stages(resolutions: list[int], ch: dict[int, int], blocks: int, expansion: int, group_width: int,
            up: bool) -> nn.ModuleList:
    """One module per resolution: ``blocks`` residual blocks, then the transition to the next resolution."""
    total = blocks * len(resolutions)
    stages = nn.ModuleList()
    for i, r in enumerate(resolutions):
        layers: list[nn.Module] = [ResidualBlock(ch[r], expansion, group_width, total) for _ in range(blocks)]
        if i + 1 < len(resolutions):
            nxt = resolutions[i + 1]
            layers.append(Upsample(ch[r], ch[nxt]) if up else Downsample(ch[r], ch[nxt]))
        stages.append(nn.Sequential(*layers))
    return stages


class R3Generator(nn.Module):
    """z [B, d] -> image [B, C, R, R]: basis (linear to 4x4), residual stages up to R, 1x1 conv to pixels.

    The output is not squashed (R3GAN's generator ends linearly); pictures and metrics clamp to [-1, 1].
    """

    def __init__(self, in_dim: int, resolution: int, channels: int, base_channels: int = 64,
                 max_channels: int = 512, blocks: int = 2, expansion: int = 2, group_width: int = 16,
                 checkpoint_activations: bool = False):
        super().__init__()
        ch = channel_schedule(resolution, base_channels, max_channels)
        self.resolution, self.use_checkpoint = resolution, checkpoint_activations
        self.basis = nn.Linear(in_dim, ch[4] * 16)
        nn.init.normal_(self.basis.weight, std=1 / math.sqrt(in_dim))
        nn.init.zeros_(self.basis.bias)
        self.stages = _stages(sorted(ch), ch, blocks, expansion, group_width, up=True)
        self.to_image = nn.Conv2d(ch[resolution], channels, 1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.basis(z).view(z.shape[0], -1, 4, 4)  # [B, C4, 4, 4]
        return self.to_image(_run_blocks(self.stages, x, self.use_checkpoint))  # [B, C, R, R]


class R3Trunk(nn.Module):
    """image [B, C, R, R] -> the flattened 4x4 map [B, C4 * 16]: 1x1 conv in, residual stages down to 4x4."""

    def __init__(self, resolution: int, channels: int, base_channels: int = 64, max_channels: int = 512,
                 blocks: int = 2, expansion: int = 2, group_width: int = 16, checkpoint_activations: bool = False):
        super().__init__()
        ch = channel_schedule(resolution, base_channels, max_channels)
        self.use_checkpoint = checkpoint_activations
        self.from_image = _linear_init(nn.Conv2d(channels, ch[resolution], 1))
        self.stages = _stages(sorted(ch, reverse=True), ch, blocks, expansion, group_width, up=False)
        self.channels4 = ch[4]
        self.feature_dim = ch[4] * 16

    def forward(self, x: Tensor) -> Tensor:
        return _run_blocks(self.stages, self.from_image(x), self.use_checkpoint).flatten(1)  # [B, C4 * 16]


class R3Discriminator(nn.Module):
    """image -> one score [B]: the trunk, a 4x4 depthwise basis conv, LeakyReLU and a linear layer; ``features``
    gives Phi(x) [B, C4 * 16]."""

    def __init__(self, resolution: int, channels: int, base_channels: int = 64, max_channels: int = 512,
                 blocks: int = 2, expansion: int = 2, group_width: int = 16, checkpoint_activations: bool = False):
        super().__init__()
        self.trunk = R3Trunk(resolution, channels, base_channels, max_channels, blocks, expansion, group_width,
                             checkpoint_activations)
        c4 = self.trunk.channels4
        self.feature_dim = self.trunk.feature_dim
        self.basis = _linear_init(nn.Conv2d(c4, c4, 4, groups=c4))  # [B, C4, 4, 4] -> [B, C4, 1, 1]
        self.head = nn.Linear(c4, 1)

    def features(self, x: Tensor) -> Tensor:
        return self.trunk(x)

    def score(self, features: Tensor) -> Tensor:
        """The score [B] of Phi(x) [B, C4 * 16] (InfoGAN shares the features with its Q head)."""
        h = features.view(features.shape[0], -1, 4, 4)  # [B, C4, 4, 4]
        return self.head(F.leaky_relu(self.basis(h), LEAK).flatten(1)).squeeze(1)  # [B]

    def forward(self, x: Tensor) -> Tensor:
        return self.score(self.trunk(x))


class R3Encoder(nn.Module):
    """image -> code [B, out_dim]: the critic's trunk and a linear head (an encoder for the ACL module)."""

    def __init__(self, resolution: int, channels: int, out_dim: int, base_channels: int = 64,
                 max_channels: int = 512, blocks: int = 2, expansion: int = 2, group_width: int = 16,
                 checkpoint_activations: bool = False):
        super().__init__()
        self.trunk = R3Trunk(resolution, channels, base_channels, max_channels, blocks, expansion, group_width,
                             checkpoint_activations)
        self.head = nn.Linear(self.trunk.feature_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.leaky_relu(self.trunk(x), LEAK))

