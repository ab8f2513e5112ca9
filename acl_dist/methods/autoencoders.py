"""The autoencoder family: VAE, AAE, ARAE and ACL-AE. Each pairs an encoder E with a decoder Dec and
differs in how it makes the code space samplable:

- ``vae``: the ELBO pulls q(c|x) towards N(0, I); samples are Dec(z).
- ``aae``: an adversary Dc pushes the encoder's codes onto the prior p(z) (the posterior collapses onto the
  noise); samples are Dec(z).
- ``arae``: a code generator Gz and the encoder are aligned *mutually* through a Wasserstein code critic;
  samples are Dec(Gz(z)).
- ``acl_ae`` (ACL paper eq. 2-3): Gz learns to map noise onto the encoder's code distribution, which is a
  detached *target*: L_ACL-AE = L_E + lambda_1 * L_Z. Samples are Dec(Gz(z)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor, nn

from acl_dist import losses
from acl_dist.methods.base import Batch, Method, Phase, StepContext, metrics, register
from acl_dist.methods.common import (
    CodeLearningPhases,
    build_acl_module,
    build_encoder,
    build_generator,
    maybe_standardized,
)
from acl_dist.methods.options import (
    AutoencoderOptions,
    CodeGANOptions,
    GeneratorLossOptions,
    MethodOptions,
    positive,
)
from acl_dist.nets import CodeDiscriminator
from acl_dist.ops.gradient_penalty import gradient_penalty


@dataclass
class VAEOptions(MethodOptions):
    """The VAE's ELBO: its reconstruction is the Bernoulli likelihood, weighted only against the KL term."""

    kl_weight: float = 1.0  # weight of the KL term of the ELBO


@dataclass
class AAEOptions(AutoencoderOptions, GeneratorLossOptions):
    """AAE: L_E plus the encoder fooling a code discriminator that tells its codes from the prior (the encoder
    plays the generator: ``gan_loss`` is its loss against Dc)."""

    lambda_z: float = 1.0  # weight of the code adversary (both its D and E's regularisation)

    def check(self) -> None:
        super().check()
        self.check_gan_loss()


@dataclass
class ARAEOptions(AutoencoderOptions):
    """ARAE: L_E plus a Wasserstein code critic that both Gz and E play against (mutual alignment)."""

    lambda_z: float = 1.0  # weight of the code critic's game
    d_steps: int = 1  # code critic steps per generator step
    code_gp_weight: float = 1.0  # gradient penalty on the code critic (its Lipschitz constraint)

    def check(self) -> None:
        super().check()
        positive("method.d_steps", self.d_steps)


@dataclass
class ACLAEOptions(AutoencoderOptions, CodeGANOptions):
    """ACL-AE (eq. 3): L_E + lambda_1 L_Z, with the code GAN's options."""

    def check(self) -> None:
        super().check()
        self.check_code_gan()


class Autoencoder(Method):
    """E and Dec with a pixel reconstruction phase; subclasses add how codes are made samplable."""

    encode_nets = ("E",)

    def __init__(self, *args, code_out: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        d = self.model.code_dim
        self.nets["E"] = build_encoder(self.model, code_out or d, self.data_dim)
        self.nets["Dec"] = build_generator(self.model, d, self.data_dim)

    def ae_phase(self, batch: Batch, ctx: StepContext):
        x = batch["image"]
        loss = losses.pixel_reconstruction(x, self.nets["Dec"](self.nets["E"](x)))
        return self.cfg.lambda_ae * loss, metrics(rec=loss)

    def encode(self, x: Tensor, nets: Mapping[str, nn.Module] | None = None) -> Tensor:
        return self.net("E", nets)(x)

    def decode(self, code: Tensor, nets: Mapping[str, nn.Module] | None = None) -> Tensor:
        return self.net("Dec", nets)(code)


@register("vae")
class VAE(Autoencoder):
    Options = VAEOptions
    net_names = ("E", "Dec")
    sampling_nets = ("Dec",)

    def __init__(self, cfg, model, *args, **kwargs):
        super().__init__(cfg, model, *args, code_out=2 * model.code_dim, **kwargs)

    def phases(self) -> list[Phase]:
        return [Phase("elbo", ("E", "Dec"), self.elbo_phase)]

    def elbo_phase(self, batch: Batch, ctx: StepContext):
        x = batch["image"]
        mu, logvar = self.nets["E"](x).chunk(2, dim=1)  # [B, d] each
        code = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation
        x_rec = self.nets["Dec"](code)
        if self.data_dim is None:
            rec = losses.bernoulli_reconstruction(x, x_rec)
        else:
            rec = 0.5 * (x_rec - x).pow(2).sum(1).mean()  # unit-variance Gaussian likelihood for vectors
        kl = losses.gaussian_kl(mu, logvar)
        return rec + self.cfg.kl_weight * kl, metrics(rec=rec, kl=kl)

    def encode(self, x, nets=None):
        return self.net("E", nets)(x).chunk(2, dim=1)[0]  # the posterior mean

    def generate(self, noise, nets=None):
        return self.net("Dec", nets)(noise)


@register("aae")
class AAE(Autoencoder):
    Options = AAEOptions
    net_names = ("E", "Dec", "Dc")
    sampling_nets = ("Dec",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        m = self.model
        self.nets["Dc"] = CodeDiscriminator(m.code_dim, m.acl_hidden, m.acl_layers)

    def phases(self) -> list[Phase]:
        return [Phase("ae", ("E", "Dec"), self.ae_phase),
                Phase("Dc", ("Dc",), self.dc_phase),
                Phase("E_reg", ("E",), self.regularise_phase)]

    def dc_phase(self, batch: Batch, ctx: StepContext):
        x = batch["image"]
        with torch.no_grad():
            codes = self.nets["E"](x)
        prior = self.sample_noise(x.shape[0], ctx.device)  # the prior is "real" for AAE's adversary
        loss = losses.discriminator_logistic(self.nets["Dc"](prior), self.nets["Dc"](codes))
        return self.cfg.lambda_z * loss, metrics(dc_loss=loss)

    def regularise_phase(self, batch: Batch, ctx: StepContext):
        loss = losses.generator_logistic(self.nets["Dc"](self.nets["E"](batch["image"])), self.cfg.gan_loss)
        return self.cfg.lambda_z * loss, metrics(e_reg=loss)

    def generate(self, noise, nets=None):
        return self.net("Dec", nets)(noise)


class CodeGeneratorAE(Autoencoder):
    """An autoencoder whose samples are Dec(Gz(z)) for a learned code generator Gz."""

    sampling_nets = ("Gz", "Dec")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nets["Gz"], self.nets["Dc"] = build_acl_module(self.model, self.noise_dim(), self.gz_kind())

    def gz_kind(self) -> str:
        return "mlp"  # ARAE's code generator; ACL-AE's is its option (CodeLearningPhases.gz_kind)

    def generate(self, noise, nets=None):
        return self.net("Dec", nets)(self.net("Gz", nets)(noise))


@register("arae")
class ARAE(CodeGeneratorAE):
    """ARAE (Zhao et al. 2018): a WGAN on codes whose critic both Gz and E play against (mutual alignment);
    the code critic is Lipschitz through a gradient penalty (``method.code_gp_weight``)."""

    Options = ARAEOptions
    net_names = ("E", "Dec", "Gz", "Dc")

    @classmethod
    def penalty_keys(cls, cfg) -> list[str]:
        return ["method.code_gp_weight"] if cfg.code_gp_weight > 0 else []

    def phases(self) -> list[Phase]:
        return [Phase("ae", ("E", "Dec"), self.ae_phase),
                Phase("Dc", ("Dc",), self.critic_phase, repeats=self.cfg.d_steps),
                Phase("align", ("E", "Gz"), self.align_phase)]

    def critic_phase(self, batch: Batch, ctx: StepContext):
        x = batch["image"]
        with torch.no_grad():
            codes = self.nets["E"](x)
            fake = self.nets["Gz"](self.sample_noise(x.shape[0], ctx.device))
        critic = self.nets["Dc"]
        loss = losses.critic_wasserstein(critic(codes), critic(fake))
        penalty = gradient_penalty(critic, codes, fake, grad_scale=ctx.grad_scale)
        return self.cfg.lambda_z * (loss + self.cfg.code_gp_weight * penalty), metrics(w_codes=-loss, gp=penalty)

    def align_phase(self, batch: Batch, ctx: StepContext):
        x = batch["image"]
        critic = self.nets["Dc"]
        fake = self.nets["Gz"](self.sample_noise(x.shape[0], ctx.device))
        # Gz raises its codes' scores; E lowers the real codes' scores: both move towards each other.
        loss = -critic(fake).mean() + critic(self.nets["E"](x)).mean()
        return self.cfg.lambda_z * loss, metrics(align=loss)


@register("acl_ae")
class ACLAE(CodeLearningPhases, CodeGeneratorAE):
    """ACL-AE: L_E (eq. 2) + lambda_1 * L_Z (eq. 1, 3); the encoder's codes are the detached target.

    ``method.encoder_code_norm: batch`` standardises the codes (the decoder then reads standardised codes
    too); ``method.code_generator`` and the code GAN options are those of ``CodeLearningPhases``.
    """

    Options = ACLAEOptions
    net_names = ("E", "Dec", "Gz", "Dc")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nets["E"] = maybe_standardized(self.nets["E"], self.cfg.encoder_code_norm, self.model.code_dim)

    def phases(self) -> list[Phase]:
        return [Phase("ae", ("E", "Dec"), self.ae_phase)] + self.code_phases()
