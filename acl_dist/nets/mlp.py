"""MLPs: the ACL module's 2-layer perceptrons and the nets for 2-D toy data."""

from __future__ import annotations

from torch import Tensor, nn


class MLP(nn.Sequential):
    """in_dim -> hidden x layers -> out_dim, LeakyReLU(0.2) between layers (no activation at the end)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, layers: int = 2):
        modules: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            modules += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        modules.append(nn.Linear(width, out_dim))
        super().__init__(*modules)


class MLPDiscriminator(nn.Module):
    """A discriminator for vectors that exposes its last feature layer (Phi in ACL-GAN's eq. 4)."""

    def __init__(self, in_dim: int, hidden: int = 128, layers: int = 2):
        super().__init__()
        trunk: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            trunk += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.trunk = nn.Sequential(*trunk)
        self.head = nn.Linear(hidden, 1)
        self.feature_dim = hidden

    def features(self, x: Tensor) -> Tensor:
        return self.trunk(x)  # [B, hidden]

    def score(self, features: Tensor) -> Tensor:
        return self.head(features).squeeze(1)  # [B]

    def forward(self, x: Tensor) -> Tensor:
        return self.score(self.features(x))
