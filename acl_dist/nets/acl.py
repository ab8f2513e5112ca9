"""The ACL module: a code generator Gz (noise -> code) and a code discriminator Dc (code -> real/fake).

It is deliberately small and portable (paper sec. 5: "simple 2-layer MLPs in the ACL module"), so it can be
attached to any net that produces a code: an autoencoder's bottleneck, a GAN's encoder, a classifier's last
fully connected layer.
"""

from __future__ import annotations

from torch import Tensor, nn

from acl_dist.nets.mlp import MLP


class CodeGenerator(nn.Module):
    """Gz: maps prior noise z [B, d] onto the encoder's code distribution, c_f = Gz(z) [B, d]."""

    def __init__(self, noise_dim: int, code_dim: int, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.net = MLP(noise_dim, code_dim, hidden, layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class CodeDiscriminator(nn.Module):
    """Dc: one logit per code [B, d] -> [B]; high for the encoder's codes, low for Gz's."""

    def __init__(self, code_dim: int, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.net = MLP(code_dim, 1, hidden, layers)

    def forward(self, c: Tensor) -> Tensor:
        return self.net(c).squeeze(1)
