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
from acl_dist.ops.diffaugment import augment
from acl_dist.ops.gradient_penalty import critic_scores_and_penalty, gradient_penalty
from acl_dist.stats import code_mmd2

if TYPE_CHECKING:
    from acl_dist.config import Recipe


def build_generator(recipe: Recipe, in_dim: int, data_dim: int | None) -> nn.Module:
    """Image generator / decoder (z or code -> x)."""
    m = recipe.model
    if data_dim is not None:
        return MLP(in_dim, data_dim, m.mlp_hidden, 2)
    if m.arch == "r3gan":
        return R3Generator(in_dim, m.resolution, m.channels, m.base_channels, m.max_channels, m.r3gan_blocks,
                           m.r3gan_expansion, m.r3gan_group_width, m.checkpoint_activations)
    return ConvGenerator(in_dim, m.resolution, m.channels, m.base_channels, m.max_channels, m.g_norm,
                         m.checkpoint_activations)


def build_discriminator(recipe: Recipe, data_dim: int | None) -> nn.Module:
    """Image discriminator / critic exposing ``features`` (Phi)."""
    m = recipe.model
    if data_dim is not None:
        return MLPDiscriminator(data_dim, m.mlp_hidden, 2)
    if m.arch == "r3gan":
        return R3Discriminator(m.resolution, m.channels, m.base_channels, m.max_channels, m.r3gan_blocks,
                               m.r3gan_expansion, m.r3gan_group_width, m.checkpoint_activations)
    return ConvDiscriminator(m.resolution, m.channels, m.base_channels, m.max_channels, m.d_norm,
                             m.spectral_norm, m.checkpoint_activations)


def build_encoder(recipe: Recipe, out_dim: int, data_dim: int | None) -> nn.Module:
    m = recipe.model
    if data_dim is not None:
        return MLP(data_dim, out_dim, m.mlp_hidden, 2)
    if m.arch == "r3gan":
        return R3Encoder(m.resolution, m.channels, out_dim, m.base_channels, m.max_channels, m.r3gan_blocks,
                         m.r3gan_expansion, m.r3gan_group_width, m.checkpoint_activations)
    return ConvEncoder(m.resolution, m.channels, out_dim, m.base_channels, m.max_channels, m.d_norm,
                       m.checkpoint_activations)


def build_acl_module(recipe: Recipe, noise_dim: int, kind: str = "mlp") -> tuple[CodeGenerator, CodeDiscriminator]:
    """The ACL module: Gz (noise -> code, of ``kind``; see nets.acl.CodeGenerator) and Dc (code -> logit)."""
    m = recipe.model
    return (CodeGenerator(noise_dim, m.code_dim, m.acl_hidden, m.acl_layers, kind),
            CodeDiscriminator(m.code_dim, m.acl_hidden, m.acl_layers))


def maybe_standardized(encoder: nn.Module, recipe: Recipe) -> nn.Module:
    """The ACL target encoder, with standardised codes when ``method.encoder_code_norm: batch`` (eq. 1's
    target at a fixed scale; see ``nets.acl.StandardizedCode``)."""
    if recipe.method.encoder_code_norm == "batch":
        return StandardizedCode(encoder, recipe.model.code_dim)
    return encoder


class Adversary:
    """The image adversarial terms for one discriminator, logistic or Wasserstein, with optional penalty.

    ``wasserstein`` selects the critic loss; the penalty (recipe ``gp_*``) is added to the D loss every
    ``gp_every`` iterations with gain ``gp_every`` (lazy regularisation, StyleGAN2).

    The counter is the critic phase's own iteration count (``StepContext.iteration``: how many times the
    phase ran before, over the whole run and across resumes), not the generator step: with ``d_steps``
    critic repeats per generator step, critic iteration ``i = d_steps * step + repeat`` is penalised when
    ``i % gp_every == 0``, so exactly one critic update in ``gp_every`` pays for the double backward however
    ``d_steps`` and ``gp_every`` divide each other. ``Method.control_period`` repeats with the same period.
    """

    def __init__(self, recipe: Recipe, wasserstein: bool, default_gp_weight: float):
        cfg = recipe.method
        self.cfg, self.wasserstein = cfg, wasserstein
        self.gp_weight = default_gp_weight if cfg.gp_weight is None else cfg.gp_weight
        self.policies = tuple(recipe.data.augment)

    def view(self, images: Tensor) -> Tensor:
        """What the critic sees of ``images``: them, or their DiffAugment draw (``data.augment``)."""
        return augment(images, self.policies) if self.policies else images

    def scores(self, d: nn.Module, images: Tensor) -> Tensor:
        """The critic's scores [B] of (augmented) ``images``, for the generator's side."""
        return d(self.view(images)).reshape(-1)

    def d_loss(self, d: nn.Module, real: Tensor, fake: Tensor, ctx: StepContext) -> tuple[Tensor, Metrics]:
        fake = self.view(fake.detach().to(real.dtype))  # under autocast G's output may be bf16/fp16
        real = self.view(real)
        every = self.cfg.gp_every
        penalised = self.gp_weight > 0 and ctx.iteration % every == 0
        if penalised:  # the fast paths share forwards between the loss and the penalty
            real_scores, fake_scores, penalty = critic_scores_and_penalty(
                d, real, fake, kind=self.cfg.gp_kind, one_sided=self.cfg.gp_one_sided, impl=self.cfg.gp_impl,
                grad_scale=ctx.grad_scale)
        else:
            real_scores, fake_scores = d(real).reshape(-1), d(fake).reshape(-1)  # [B], [B]
        if self.wasserstein:
            loss = losses.critic_wasserstein(real_scores, fake_scores)
        else:
            loss = losses.discriminator_logistic(real_scores, fake_scores, self.cfg.label_smoothing)
        out = metrics(d_loss=loss, d_real=real_scores.mean(), d_fake=fake_scores.mean())
        if penalised:
            loss = loss + self.gp_weight * every * penalty
            out["gp"] = penalty.detach().float()
        return loss, out

    def g_loss(self, fake_scores: Tensor) -> Tensor:
        if self.wasserstein:
            return losses.generator_wasserstein(fake_scores)
        return losses.generator_logistic(fake_scores, self.cfg.gan_loss)


def code_discriminator_loss(dc: nn.Module, codes: Tensor, fake_codes: Tensor) -> Tensor:
    """Dc's half of L_Z (eq. 1): the encoder's codes are real, Gz's are fake; both enter detached.

    The encoder's codes are the *target*: they never receive a gradient from L_Z, so Gz moves towards them
    and never the reverse (what separates ACL from AAE and ARAE).
    """
    return losses.discriminator_logistic(dc(codes.detach()), dc(fake_codes.detach()))


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
