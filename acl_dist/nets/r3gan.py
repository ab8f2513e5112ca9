"""R3GAN's generator and critic (Huang et al., "The GAN is dead; long live the GAN!", 2025), written here from the
paper's "config E" and the structure of the authors' published networks.

- No normalisation anywhere: the regularised relativistic loss (RpGAN + R1 + R2) keeps training stable, so the
  nets need neither batch norm (which a per-sample gradient penalty forbids in the critic) nor its costs.
- Residual stages of inverted bottlenecks: 1x1 conv widening by ``expansion``, LeakyReLU(0.2), grouped 3x3 conv
  (``group_width`` channels per group), LeakyReLU(0.2), 1x1 conv back; the identity around it. Convs carry no
  bias: each activation adds its own (``BiasedActivation``).
- Fix-up initialisation: MSR (He) weights with the activation's gain (1.39) times L^(-1/(2(m-1))) for L blocks
  of m = 3 layers before each activation, each branch's last conv at zero (every block is the identity at step 0).
- Transitions: the generator's 1x1 conv (where the width changes) then x2 up-sampling, the critic's /2 down-
  sampling then its 1x1 conv, both with the published [1, 3, 3, 1] low-pass filter and zero padding.
- The generator starts from a generative basis (a learned 4x4 map per channel, scaled by a linear map of z) and
  ends with a 1x1 conv to pixels; the critic starts with a 1x1 conv from pixels and ends with a discriminative
  basis (a depthwise 4x4 conv to a vector) and a linear layer to one score, without biases.

Widths follow the DCGAN nets' capped doubling (``nets.conv.channel_schedule``): base 96 and cap 768 give the
published FFHQ-256 widths. ``blocks`` residual blocks per resolution. The critic's ``features`` (the flattened 4x4
map) is the Phi ACL-GAN's feature reconstruction uses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acl_dist.nets.conv import _run_blocks, channel_schedule

LEAK = 0.2
GAIN = math.sqrt(2 / (1 + LEAK**2))  # LeakyReLU(0.2)'s gain, 1.39: what the weights before it are scaled by


def _groups(channels: int, group_width: int) -> int:
    """Groups of the 3x3 conv: ``group_width`` channels each, or one group when fewer channels than that."""
    return max(1, channels // group_width) if channels % group_width == 0 else 1


def msr_init(layer: nn.Module, gain: float = 1.0) -> nn.Module:
    """He (MSR) initialisation with ``gain``: weights ~ N(0, gain / sqrt(fan_in)); a gain of 0 zeroes them."""
    fan_in = layer.weight[0].numel()
    with torch.no_grad():
        layer.weight.normal_(0, gain / math.sqrt(fan_in)) if gain else layer.weight.zero_()
    return layer


def conv(cin: int, cout: int, kernel: int, groups: int = 1, gain: float = 1.0) -> nn.Conv2d:
    """A convolution without bias (the bias lives in the activation after it), MSR-initialised."""
    return msr_init(nn.Conv2d(cin, cout, kernel, padding=(kernel - 1) // 2, groups=groups, bias=False), gain)


class BiasedActivation(nn.Module):
    """LeakyReLU(0.2) of x + b, b per channel (zero at init): the convs before it carry no bias of their own."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
        return F.leaky_relu(x + self.bias.to(x.dtype).view(shape), LEAK)


class ResidualBlock(nn.Module):
    """x + conv1x1(act(grouped conv3x3(act(conv1x1(x))))) [B, C, H, W], widened by ``expansion`` inside.

    Fix-up initialisation: the two layers before an activation get the activation's gain times
    L^(-1/(2(m-1))) for L blocks in the net of m = 3 layers each; the last layer starts at zero, so the block
    is the identity at step 0."""

    def __init__(self, channels: int, expansion: int, group_width: int, total_blocks: int):
        super().__init__()
        hidden = channels * expansion
        gain = GAIN * total_blocks ** (-1 / (2 * (3 - 1)))
        self.expand = conv(channels, hidden, 1, gain=gain)
        self.act1 = BiasedActivation(hidden)
        self.spatial = conv(hidden, hidden, 3, groups=_groups(hidden, group_width), gain=gain)
        self.act2 = BiasedActivation(hidden)
        self.project = conv(hidden, channels, 1, gain=0.0)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.project(self.act2(self.spatial(self.act1(self.expand(x)))))


def _lowpass() -> Tensor:
    """The published resampling filter: [1, 2, 1] convolved with [1, 1], i.e. [1, 3, 3, 1], separable, sum 1."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(taps, taps)
    return (kernel / kernel.sum())[None, None]  # [1, 1, 4, 4]


class Upsample(nn.Module):
    """Generator transition: a 1x1 conv to the next width (when it changes), then x2 with the [1, 3, 3, 1]
    filter and zero padding (a transposed depthwise conv, gain 4) [B, C, H, W] -> [B, C', 2H, 2W]."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = conv(cin, cout, 1) if cin != cout else None
        self.register_buffer("kernel", 4 * _lowpass(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x) if self.conv is not None else x
        kernel = self.kernel.to(x.dtype).expand(x.shape[1], 1, 4, 4)  # [C', 1, 4, 4]
        return F.conv_transpose2d(x, kernel, stride=2, padding=1, groups=x.shape[1])


class Downsample(nn.Module):
    """Critic transition: /2 with the [1, 3, 3, 1] filter and zero padding, then a 1x1 conv to the next width
    (when it changes) [B, C, H, W] -> [B, C', H/2, W/2]. The filter is a depthwise conv: it runs in every dtype
    autocast picks and is differentiable twice for R1/R2."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = conv(cin, cout, 1) if cin != cout else None
        self.register_buffer("kernel", _lowpass(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        kernel = self.kernel.to(x.dtype).expand(x.shape[1], 1, 4, 4)  # [C, 1, 4, 4]
        x = F.conv2d(x, kernel, stride=2, padding=1, groups=x.shape[1])
        return self.conv(x) if self.conv is not None else x


class GenerativeBasis(nn.Module):
    """z [B, d] -> [B, C, 4, 4]: a learned 4x4 basis per channel, each scaled by a (bias-free) linear map of z."""

    def __init__(self, in_dim: int, channels: int):
        super().__init__()
        self.basis = nn.Parameter(torch.randn(channels, 4, 4))
        self.linear = msr_init(nn.Linear(in_dim, channels, bias=False))

    def forward(self, z: Tensor) -> Tensor:
        return self.basis[None] * self.linear(z)[:, :, None, None]  # [B, C, 4, 4]


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
    """z [B, d] -> image [B, C, R, R]: the generative basis (4x4), residual stages up to R, 1x1 conv to pixels.

    The output is not squashed (R3GAN's generator ends linearly); pictures and metrics clamp to [-1, 1].
    """

    def __init__(self, in_dim: int, resolution: int, channels: int, base_channels: int = 64,
                 max_channels: int = 512, blocks: int = 2, expansion: int = 2, group_width: int = 16,
                 checkpoint_activations: bool = False):
        super().__init__()
        ch = channel_schedule(resolution, base_channels, max_channels)
        self.resolution, self.use_checkpoint = resolution, checkpoint_activations
        self.basis = GenerativeBasis(in_dim, ch[4])
        self.stages = _stages(sorted(ch), ch, blocks, expansion, group_width, up=True)
        self.to_image = conv(ch[resolution], channels, 1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.basis(z)  # [B, C4, 4, 4]
        return self.to_image(_run_blocks(self.stages, x, self.use_checkpoint))  # [B, C, R, R]


class R3Trunk(nn.Module):
    """image [B, C, R, R] -> the flattened 4x4 map [B, C4 * 16]: 1x1 conv in, residual stages down to 4x4."""

    def __init__(self, resolution: int, channels: int, base_channels: int = 64, max_channels: int = 512,
                 blocks: int = 2, expansion: int = 2, group_width: int = 16, checkpoint_activations: bool = False):
        super().__init__()
        ch = channel_schedule(resolution, base_channels, max_channels)
        self.use_checkpoint = checkpoint_activations
        self.from_image = conv(channels, ch[resolution], 1)
        self.stages = _stages(sorted(ch, reverse=True), ch, blocks, expansion, group_width, up=False)
        self.channels4 = ch[4]
        self.feature_dim = ch[4] * 16

    def forward(self, x: Tensor) -> Tensor:
        return _run_blocks(self.stages, self.from_image(x), self.use_checkpoint).flatten(1)  # [B, C4 * 16]


class R3Discriminator(nn.Module):
    """image -> one score [B]: the trunk, then the discriminative basis (a depthwise 4x4 conv to a vector, then a
    linear layer, neither with a bias); ``features`` gives Phi(x) [B, C4 * 16]."""

    def __init__(self, resolution: int, channels: int, base_channels: int = 64, max_channels: int = 512,
                 blocks: int = 2, expansion: int = 2, group_width: int = 16, checkpoint_activations: bool = False):
        super().__init__()
        self.trunk = R3Trunk(resolution, channels, base_channels, max_channels, blocks, expansion, group_width,
                             checkpoint_activations)
        c4 = self.trunk.channels4
        self.feature_dim = self.trunk.feature_dim
        self.basis = msr_init(nn.Conv2d(c4, c4, 4, groups=c4, bias=False))  # [B, C4, 4, 4] -> [B, C4, 1, 1]
        self.head = msr_init(nn.Linear(c4, 1, bias=False))

    def features(self, x: Tensor) -> Tensor:
        return self.trunk(x)

    def score(self, features: Tensor) -> Tensor:
        """The score [B] of Phi(x) [B, C4 * 16] (InfoGAN shares the features with its Q head)."""
        h = features.view(features.shape[0], -1, 4, 4)  # [B, C4, 4, 4]
        return self.head(self.basis(h).flatten(1)).squeeze(1)  # [B]

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

