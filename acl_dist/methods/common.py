"""Net builders and adversarial terms shared by several methods.

Images get DCGAN-style conv nets or R3GAN's (``model.arch``); vector data (the 2-D toys) gets MLPs of the same
roles, so every method that makes sense on the toys runs there unchanged. Every image critic sees its images
through DiffAugment when ``data.augment`` asks (``Adversary.scores``), reals and fakes alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from acl_dist import losses
from acl_dist.methods.base import Batch, Metrics, Phase, StepContext, metrics
from acl_dist.methods.options import AdversarialOptions
from acl_dist.nets import (
    MLP,
    CodeDiscriminator,
    CodeGenerator,
    ConvDiscriminator,
    ConvEncoder,
    ConvGenerator,
    MLPDiscriminator,
    R3Discriminator,
    R3Encoder,
    R3Generator,
    StandardizedCode,
)
from acl_dist.ops.augment_pipe import AugmentPipe
from acl_dist.ops.gradient_penalty import augmented, critic_scores_and_penalty, gradient_penalty
from acl_dist.stats import code_mmd2

if TYPE_CHECKING:
    from acl_dist.sections import ModelConfig


def build_generator(m: ModelConfig, in_dim: int, data_dim: int | None) -> nn.Module:
    """Image generator / decoder (z or code -> x) of ``model.arch``; an MLP for vector data."""
    if data_dim is not None:
        return MLP(in_dim, data_dim, m.mlp_hidden, 2)
    if m.arch == "r3gan":
        return R3Generator(in_dim, m.resolution, m.channels, m.base_channels, m.max_channels, m.r3gan_blocks,
                           m.r3gan_expansion, m.r3gan_group_width, m.checkpoint_activations)
    return ConvGenerator(in_dim, m.resolution, m.channels, m.base_channels, m.max_channels, m.g_norm,
                         m.checkpoint_activations)


def build_discriminator(m: ModelConfig, data_dim: int | None) -> nn.Module:
    """Image discriminator / critic exposing ``features`` (Phi) and ``score(features)``."""
    if data_dim is not None:
        return MLPDiscriminator(data_dim, m.mlp_hidden, 2)
    if m.arch == "r3gan":
        return R3Discriminator(m.resolution, m.channels, m.base_channels, m.max_channels, m.r3gan_blocks,
                               m.r3gan_expansion, m.r3gan_group_width, m.checkpoint_activations)
    return ConvDiscriminator(m.resolution, m.channels, m.base_channels, m.max_channels, m.d_norm,
                             m.spectral_norm, m.checkpoint_activations)


def build_encoder(m: ModelConfig, out_dim: int, data_dim: int | None) -> nn.Module:
    """Image (or vector) -> [B, out_dim]: the critic's trunk of ``model.arch`` and a linear head."""
    if data_dim is not None:
        return MLP(data_dim, out_dim, m.mlp_hidden, 2)
    if m.arch == "r3gan":
        return R3Encoder(m.resolution, m.channels, out_dim, m.base_channels, m.max_channels, m.r3gan_blocks,
                         m.r3gan_expansion, m.r3gan_group_width, m.checkpoint_activations)
    return ConvEncoder(m.resolution, m.channels, out_dim, m.base_channels, m.max_channels, m.d_norm,
                       m.checkpoint_activations)


def build_acl_module(m: ModelConfig, noise_dim: int, kind: str = "mlp") -> tuple[CodeGenerator, CodeDiscriminator]:
    """The ACL module: Gz (noise -> code, of ``kind``; see nets.acl.CodeGenerator) and Dc (code -> logit)."""
    return (CodeGenerator(noise_dim, m.code_dim, m.acl_hidden, m.acl_layers, kind),
            CodeDiscriminator(m.code_dim, m.acl_hidden, m.acl_layers))


def maybe_standardized(encoder: nn.Module, code_norm: str, code_dim: int) -> nn.Module:
    """The ACL target encoder, with standardised codes when ``method.encoder_code_norm`` (``code_norm``) is
    batch (eq. 1's target at a fixed scale; see ``nets.acl.StandardizedCode``)."""
    return StandardizedCode(encoder, code_dim) if code_norm == "batch" else encoder


class Adversary:
    """The image adversarial terms for one discriminator, logistic or Wasserstein, with optional penalty.

    ``wasserstein`` selects the critic loss; the penalty (recipe ``gp_*``) is added to the D loss every
    ``gp_every`` iterations with gain ``gp_every`` (lazy regularisation, StyleGAN2).

    When is the trainer's business: the critic phase declares ``penalty_every = gp_every`` (``Phase``), and the
    trainer hands each iteration its ``StepContext.penalty_gain`` (``gp_every`` on the critic iterations that
    take the penalty, 0 on the others). It counts the phase's own iterations over the whole run and across
    resumes, not generator steps, so exactly one critic update in ``gp_every`` pays for the double backward
    however ``d_steps`` and ``gp_every`` divide each other.
    """

    def __init__(self, cfg: AdversarialOptions, wasserstein: bool, default_gp_weight: float,
                 augment: AugmentPipe | None = None):
        self.cfg, self.wasserstein = cfg, wasserstein
        self.augment = augment if augment is not None else AugmentPipe()
        self.gp_weight = default_gp_weight if cfg.gp_weight is None else cfg.gp_weight

    def scores(self, d: nn.Module, images: Tensor) -> Tensor:
        """The critic's scores [B] of (augmented) ``images``, for the generator's side."""
        return d(self.augment(images)).reshape(-1)

    def d_loss(self, d: nn.Module, real: Tensor, fake: Tensor, ctx: StepContext) -> tuple[Tensor, Metrics]:
        fake = fake.detach().to(real.dtype)  # under autocast G's output may be bf16/fp16
        penalised = self.gp_weight > 0 and ctx.penalty_gain > 0
        if penalised:  # the fast paths share forwards between the loss and the penalty
            real_scores, fake_scores, penalty = critic_scores_and_penalty(
                d, real, fake, kind=self.cfg.gp_kind, one_sided=self.cfg.gp_one_sided, impl=self.cfg.gp_impl,
                grad_scale=ctx.grad_scale, augment=self.augment)
        else:
            fake, real = augmented(self.augment, fake, real)
            real_scores, fake_scores = d(real).reshape(-1), d(fake).reshape(-1)  # [B], [B]
        if self.wasserstein:
            loss = losses.critic_wasserstein(real_scores, fake_scores)
        else:
            loss = losses.discriminator_logistic(real_scores, fake_scores, self.cfg.label_smoothing)
        out = metrics(d_loss=loss, d_real=real_scores.mean(), d_fake=fake_scores.mean())
        if penalised:
            loss = loss + self.gp_weight * ctx.penalty_gain * penalty
            out["gp"] = penalty.detach().float()
        return loss, out

    def g_loss(self, fake_scores: Tensor) -> Tensor:
        if self.wasserstein:
            return losses.generator_wasserstein(fake_scores)
        return losses.generator_logistic(fake_scores, self.cfg.gan_loss)


class CodeLearningPhases:
    """The ACL module's two phases (L_Z, eq. 1), shared by ACL-AE, ACL-GAN(-GP) and ACL-SGAN.

    Needs ``self.nets["Gz"]``, ``self.nets["Dc"]`` and ``code_target(x)``: the inference net's codes.

    Options (sec. 3.2 leaves the code GAN's training to "most optimization strategies for GANs"):
    ``method.code_d_steps`` Dc steps per generator step, each on a fresh batch; ``method.code_loss``
    ``nonsaturating`` (eq. 1 with the GAN paper's non-saturating Gz loss) or ``wgan_gp`` (a Wasserstein code
    critic with a gradient penalty of weight ``method.code_gp_weight``, as ARAE's). Dc's accuracy
    (logistic loss) and the code MMD² of the batch (``stats.code_mmd2``) are logged to show whether the codes
    match or Dc is too weak to tell.
    """

    @classmethod
    def penalty_keys(cls, cfg) -> list[str]:
        code = ["method.code_gp_weight"] if cfg.code_loss == "wgan_gp" and cfg.code_gp_weight > 0 else []
        return super().penalty_keys(cfg) + code

    def code_target(self, x: Tensor) -> Tensor:
        return self.nets["E"](x)

    def gz_kind(self) -> str:
        """Gz's architecture: ``method.code_generator``."""
        return self.cfg.code_generator

    def code_phases(self) -> list[Phase]:
        return [Phase("Dc", ("Dc",), self.dc_phase, repeats=self.cfg.code_d_steps),
                Phase("Gz", ("Gz",), self.gz_phase)]

    def dc_phase(self, batch: Batch, ctx: StepContext):
        x = batch["image"]
        with torch.no_grad():  # the target: no gradient ever reaches the encoder from L_Z
            codes = self.code_target(x)  # [B, d]
            fake = self.nets["Gz"](self.sample_noise(x.shape[0], ctx.device))  # [B, d]
            mmd = code_mmd2(fake, codes)
        dc = self.nets["Dc"]
        real_scores, fake_scores = dc(codes), dc(fake)  # [B], [B]
        if self.cfg.code_loss == "wgan_gp":
            loss = losses.critic_wasserstein(real_scores, fake_scores)
            penalty = gradient_penalty(dc, codes, fake, grad_scale=ctx.grad_scale)
            values = metrics(dc_loss=loss, code_mmd=mmd, gp=penalty)
            return self.cfg.lambda_z * (loss + self.cfg.code_gp_weight * penalty), values
        loss = losses.discriminator_logistic(real_scores, fake_scores)
        accuracy = ((real_scores > 0).float().mean() + (fake_scores < 0).float().mean()) / 2
        return self.cfg.lambda_z * loss, metrics(dc_loss=loss, dc_acc=accuracy, code_mmd=mmd)

    def gz_phase(self, batch: Batch, ctx: StepContext):
        fake_scores = self.nets["Dc"](self.nets["Gz"](self.sample_noise(batch["image"].shape[0], ctx.device)))
        if self.cfg.code_loss == "wgan_gp":
            loss = losses.generator_wasserstein(fake_scores)
        else:
            loss = losses.generator_logistic(fake_scores, self.cfg.gan_loss)
        return self.cfg.lambda_z * loss, metrics(gz_loss=loss)
