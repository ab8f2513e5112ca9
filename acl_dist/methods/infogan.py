"""InfoGAN (Chen et al. 2016): a GAN whose generator input carries structured codes c (categorical and
continuous), and a Q head sharing D's trunk that recovers c from G(z, c). The mutual-information lower bound
L_I = E[log Q(c | G(z, c))] + H(c) is maximised by both G and Q (H(c) is a constant and left out).

Phases: ``D`` (D, Q) — the GAN discriminator loss plus lambda * L_I on detached fakes, so Q and the shared
trunk learn to read the codes; ``G`` (G) — the generator loss plus lambda * L_I through Q.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from acl_dist import losses
from acl_dist.errors import ConfigError
from acl_dist.methods.base import Batch, Method, Phase, StepContext, metrics, register
from acl_dist.methods.common import build_discriminator, build_generator
from acl_dist.methods.options import GeneratorLossOptions, MethodOptions, positive
from acl_dist.nets import MLP


@dataclass
class InfoGANOptions(MethodOptions, GeneratorLossOptions):
    """InfoGAN's: the GAN's loss and D steps (no gradient penalty: D and Q share a trunk) and the codes."""

    label_smoothing: float = 0.0  # one-sided label smoothing of D's real targets
    d_steps: int = 1  # D (and Q) steps per generator step
    info_categorical: list[int] = field(default_factory=lambda: [10])  # categories of each categorical code
    info_continuous: int = 2  # number of Uniform(-1, 1) continuous codes
    info_weight: float = 1.0  # lambda of the mutual-information bound L_I

    def check(self) -> None:
        super().check()
        self.check_gan_loss()
        positive("method.d_steps", self.d_steps)
        if any(k <= 1 for k in self.info_categorical):
            raise ConfigError("method.info_categorical", "every categorical code needs at least 2 categories")


@register("infogan")
class InfoGAN(Method):
    images_only = True  # its codes are read back from image features
    Options = InfoGANOptions
    net_names = ("G", "D", "Q")
    sampling_nets = ("G",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.categories = list(self.cfg.info_categorical)
        self.n_continuous = self.cfg.info_continuous
        code_size = sum(self.categories) + self.n_continuous
        self.nets["G"] = build_generator(self.model, self.noise_dim() + code_size, self.data_dim)
        self.nets["D"] = build_discriminator(self.model, self.data_dim)
        q_out = sum(self.categories) + 2 * self.n_continuous  # logits, then mean and log-std per code
        self.nets["Q"] = MLP(self.nets["D"].feature_dim, q_out, self.model.acl_hidden, 1)

    def phases(self) -> list[Phase]:
        return [Phase("D", ("D", "Q"), self.d_phase, repeats=self.cfg.d_steps),
                Phase("G", ("G",), self.g_phase)]

    # -- codes ---------------------------------------------------------------------------------------
    def sample_noise(self, n: int, device) -> Tensor:
        """[z | one-hot categorical codes | Uniform(-1, 1) continuous codes]  [n, d + sum(K) + n_cont]"""
        parts = [self.prior.sample(n, device)]
        for k in self.categories:
            parts.append(F.one_hot(torch.randint(0, k, (n,), device=device), k).float())
        parts.append(torch.rand(n, self.n_continuous, device=device) * 2 - 1)
        return torch.cat(parts, dim=1)

    def codes_of(self, noise: Tensor) -> Tensor:
        return noise[:, self.noise_dim():]

    def info_loss(self, features: Tensor, codes: Tensor) -> Tensor:
        """-L_I: categorical cross-entropies plus the continuous codes' Gaussian NLL."""
        q = self.nets["Q"](features)
        loss, start = q.new_zeros(()), 0
        for k in self.categories:
            loss = loss + losses.info_categorical(q[:, start:start + k], codes[:, start:start + k])
            start += k
        if self.n_continuous:
            mean, log_std = q[:, start:].chunk(2, dim=1)
            loss = loss + losses.info_continuous(mean, log_std, codes[:, start:])
        return loss

    # -- phases --------------------------------------------------------------------------------------
    def d_phase(self, batch: Batch, ctx: StepContext):
        real, d = batch["image"], self.nets["D"]
        noise = self.sample_noise(real.shape[0], ctx.device)
        with torch.no_grad():
            fake = self.nets["G"](noise)
        fake_features = d.features(self.augment(fake))  # D (and Q through it) sees the augmentation pipe's view
        real_logits, fake_logits = d(self.augment(real)), d.score(fake_features)
        gan = losses.discriminator_logistic(real_logits, fake_logits, self.cfg.label_smoothing)
        info = self.info_loss(fake_features, self.codes_of(noise))
        return gan + self.cfg.info_weight * info, metrics(d_loss=gan, info=info)

    def g_phase(self, batch: Batch, ctx: StepContext):
        d = self.nets["D"]
        noise = self.sample_noise(batch["image"].shape[0], ctx.device)
        features = d.features(self.augment(self.nets["G"](noise)))
        gan = losses.generator_logistic(d.score(features), self.cfg.gan_loss)
        info = self.info_loss(features, self.codes_of(noise))
        return gan + self.cfg.info_weight * info, metrics(g_loss=gan, info_g=info)

    def generate(self, noise: Tensor, nets=None) -> Tensor:
        return self.net("G", nets)(noise)
