"""The ACL module: a code generator Gz (noise -> code) and a code discriminator Dc (code -> real/fake).

It is deliberately small and portable (paper sec. 5: "simple 2-layer MLPs in the ACL module"), so it can be
attached to any net that produces a code: an autoencoder's bottleneck, a GAN's encoder, a classifier's last
fully connected layer.
"""

from __future__ import annotations

from torch import Tensor, nn

from acl_dist.nets.mlp import MLP

CODE_GENERATORS = ("mlp", "residual")


class CodeGenerator(nn.Module):
    """Gz: maps prior noise z [B, d] onto the encoder's code distribution, c_f = Gz(z) [B, d].

    ``kind="mlp"`` is the paper's plain 2-layer MLP (sec. 5). With PyTorch's default initialisation its first
    codes are nearly constant (per-dimension std about 0.08 for unit Gaussian noise on the digits recipes),
    so an image generator attached to it starts from a collapsed input. ``kind="residual"`` returns
    ``z + MLP(z)`` with the MLP's last layer zero-initialised: Gz is the identity at step 0, so the attached
    GAN starts exactly as its base model (noise of unit scale) and the code GAN of eq. 1 learns a correction.
    Both are 2-layer MLP modules; residual needs d_z = d_c (the paper's choice, sec. 3.1).
    """

    def __init__(self, noise_dim: int, code_dim: int, hidden: int = 256, layers: int = 2, kind: str = "mlp"):
        super().__init__()
        if kind not in CODE_GENERATORS:
            raise ValueError(f"unknown code generator {kind!r}; choose one of {CODE_GENERATORS}")
        if kind == "residual" and noise_dim != code_dim:
            raise ValueError(f"a residual code generator needs noise_dim == code_dim, got {noise_dim}, {code_dim}")
        self.residual = kind == "residual"
        self.net = MLP(noise_dim, code_dim, hidden, layers)
        if self.residual:
            last = self.net[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, z: Tensor) -> Tensor:
        out = self.net(z)  # [B, d]
        return z + out if self.residual else out


class CodeDiscriminator(nn.Module):
    """Dc: one logit per code [B, d] -> [B]; high for the encoder's codes, low for Gz's."""

    def __init__(self, code_dim: int, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.net = MLP(code_dim, 1, hidden, layers)

    def forward(self, c: Tensor) -> Tensor:
        return self.net(c).squeeze(1)


class StandardizedCode(nn.Module):
    """An encoder whose codes are standardised per dimension over the batch (BatchNorm without affine).

    Why: the encoder's codes are the code GAN's target (eq. 1), and nothing in eq. 2 or 4 fixes their scale;
    an unconstrained encoder drifts in scale while Gz chases it. Standardised codes have the first two moments
    of N(0, I) at every step, the noise the image generator was built for. Running statistics give the same
    map in eval mode (``acl-dist sample`` encodes real images with them).
    """

    def __init__(self, encoder: nn.Module, code_dim: int):
        super().__init__()
        self.encoder = encoder
        self.norm = nn.BatchNorm1d(code_dim, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.encoder(x))  # [B, d]
