"""GAN (Goodfellow et al. 2014) and WGAN-GP (Gulrajani et al. 2017): G(z) against an image D.

``gan``: minimax or non-saturating loss, optional one-sided label smoothing, k D-steps per G-step
(``method.d_steps``), optional R1/R2 penalty. ``wgan_gp``: a Wasserstein critic with gradient penalty
(default weight 10) and n_critic = ``d_steps`` critic steps per generator step.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from acl_dist.methods.base import Batch, Method, Phase, StepContext, metrics, register
from acl_dist.methods.common import Adversary, build_discriminator, build_generator
from acl_dist.methods.options import AdversarialOptions


@register("gan")
class GAN(Method):
    Options = AdversarialOptions
    net_names = ("G", "D")
    sampling_nets = ("G",)
    wasserstein = False
    default_gp_weight = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nets["G"] = build_generator(self.model, self.noise_dim(), self.data_dim)
        self.nets["D"] = build_discriminator(self.model, self.data_dim)
        self.adversary = self.build_adversary()

    def build_adversary(self):
        """The image adversary D plays (R3GAN's subclass swaps in its own)."""
        return Adversary(self.cfg, self.wasserstein, self.default_gp_weight, self.augment)

    def phases(self) -> list[Phase]:
        return [Phase("D", ("D",), self.d_phase, repeats=self.cfg.d_steps, penalty_every=self.cfg.gp_every),
                Phase("G", ("G",), self.g_phase)]

    def d_phase(self, batch: Batch, ctx: StepContext):
        real = batch["image"]
        with torch.no_grad():
            fake = self.nets["G"](self.sample_noise(real.shape[0], ctx.device))
        return self.adversary.d_loss(self.nets["D"], real, fake, ctx)

    def g_phase(self, batch: Batch, ctx: StepContext):
        fake = self.nets["G"](self.sample_noise(batch["image"].shape[0], ctx.device))
        loss = self.adversary.g_loss(self.adversary.scores(self.nets["D"], fake))
        return loss, metrics(g_loss=loss)

    def generate(self, noise: Tensor, nets: Mapping[str, nn.Module] | None = None) -> Tensor:
        return self.net("G", nets)(noise)


@register("wgan_gp")
class WGANGP(GAN):
    wasserstein = True
    default_gp_weight = 10.0
