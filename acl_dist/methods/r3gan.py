"""R3GAN (Huang et al., 2025) and ACL attached to it.

``r3gan``: G(z) against a critic D with the relativistic pairing loss (RpGAN) and zero-centred penalties on
both sides (R1 on the reals, R2 on the fakes):

    L_D = E softplus(-(D(x_r) - D(x_f))) + gamma / 2 * (R1 + R2),   L_G = E softplus(-(D(x_f) - D(x_r)))

each real paired with a fake of the batch. R1 + R2 come from one double backward over the reals and fakes
together (``ops.gradient_penalty``, kind ``r1r2``), lazily every ``gp_every`` critic iterations if asked.
``gamma`` decays from ``method.gamma`` to ``method.gamma_final`` over the schedule's horizon
(``train.schedule_images``, in images; the run's length by default), on a cosine or, as published, a line, and is
held after it (R3GAN decays it with the learning rate; ``optim.lr_decay_to`` and ``optim.beta2_final`` schedule the
optimiser). The schedule reads the trainer's progress tensor (``StepContext.progress``: the fraction of the
horizon) on the device, so a captured CUDA graph replays the right weight at every step.

``acl_r3gan``: the ACL module attached to R3GAN as to a GAN (``acl_gan``): Gz feeds the generator's noise slot,
E and the feature reconstruction through D's last features, Dc against E's codes; the image adversary is
R3GAN's. Its recipe differs from ``r3gan``'s in the ACL module only (``tests/unit/test_recipe_pairs.py``).
The nets are R3GAN's own with ``model.arch: r3gan`` (``nets.r3gan``), which every image method can use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from acl_dist import losses
from acl_dist.errors import ConfigError
from acl_dist.methods.acl_gan import ACLGAN, ACLAttachmentOptions
from acl_dist.methods.base import Batch, Metrics, StepContext, metrics, register
from acl_dist.methods.gan import GAN
from acl_dist.methods.options import MethodOptions, choose, positive
from acl_dist.ops.augment_pipe import AugmentPipe
from acl_dist.ops.gradient_penalty import augmented, critic_scores_and_penalty


@dataclass
class R3GANOptions(MethodOptions):
    """R3GAN's loss and its penalty schedule (the paper's settings for FFHQ-256: gamma 150 down to 15 over
    training at 256 px; gamma scales with the data: small images take a much smaller one)."""

    d_steps: int = 1  # critic steps per generator step
    gamma: float = 1.0  # R1 + R2 weight at the start: L_D + gamma / 2 * (R1 + R2)
    gamma_final: float | None = None  # decayed to this over the schedule's horizon (train.schedule_images), then
    # held; None: constant gamma
    gamma_schedule: str = "cosine"  # cosine | linear: the decay's shape (R3GAN as published: linear)
    gp_every: int = 1  # lazy regularisation: R1 + R2 every k critic iterations, weighted by k
    gp_impl: str = "auto"  # ref | fused | split | auto (ops.gradient_penalty)
    gp_through_augment: bool = True  # with data.augment: R1 + R2 w.r.t. the un-augmented images, through the
    # augmentation (as published); false: at the augmented images

    def check(self) -> None:
        super().check()
        positive("method.d_steps", self.d_steps)
        positive("method.gp_every", self.gp_every)
        choose("method.gp_impl", self.gp_impl, ("auto", "ref", "fused", "split"))
        choose("method.gamma_schedule", self.gamma_schedule, ("cosine", "linear"))
        if self.gamma < 0:
            raise ConfigError("method.gamma", f"{self.gamma}: a penalty weight is 0 or more")
        if self.gamma_final is not None and self.gamma_final < 0:
            raise ConfigError("method.gamma_final", f"{self.gamma_final}: a penalty weight is 0 or more")

    def gamma_at(self, progress: Tensor | None) -> Tensor | float:
        """gamma at ``progress``, the fraction of the schedule's horizon in [0, 1] (a device tensor: no host read):
        from gamma to gamma_final on a cosine or a line (``gamma_schedule``)."""
        if self.gamma_final is None or progress is None:
            return self.gamma
        if self.gamma_schedule == "linear":
            return self.gamma + (self.gamma_final - self.gamma) * progress
        return self.gamma_final + (self.gamma - self.gamma_final) * 0.5 * (1 + torch.cos(math.pi * progress))


class RelativisticAdversary:
    """R3GAN's image adversary: RpGAN's paired loss and R1 + R2 at gamma / 2 (lazy every ``gp_every``), every
    image seen through DiffAugment when ``data.augment`` asks."""

    def __init__(self, cfg: R3GANOptions, augment: AugmentPipe | None = None):
        self.cfg = cfg
        self.augment = augment if augment is not None else AugmentPipe()

    def d_loss(self, d: nn.Module, real: Tensor, fake: Tensor, ctx: StepContext) -> tuple[Tensor, Metrics]:
        fake = fake.detach().to(real.dtype)
        if self.cfg.gamma > 0 and ctx.penalty_gain > 0:
            real_scores, fake_scores, penalty = critic_scores_and_penalty(
                d, real, fake, kind="r1r2", impl=self.cfg.gp_impl, grad_scale=ctx.grad_scale, augment=self.augment,
                through_augment=self.cfg.gp_through_augment)
            self.augment.observe(real_scores)  # ADA's feedback (a no-op for other pipes)
            loss = losses.discriminator_relativistic(real_scores, fake_scores)
            out = metrics(d_loss=loss, d_real=real_scores.mean(), d_fake=fake_scores.mean(), gp=penalty)
            return loss + self.cfg.gamma_at(ctx.progress) / 2 * ctx.penalty_gain * penalty, out
        fake, real = augmented(self.augment, fake, real)
        real_scores, fake_scores = d(real).reshape(-1), d(fake).reshape(-1)  # [B], [B]
        self.augment.observe(real_scores)
        loss = losses.discriminator_relativistic(real_scores, fake_scores)
        return loss, metrics(d_loss=loss, d_real=real_scores.mean(), d_fake=fake_scores.mean())

    def g_loss(self, d: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        """The generator's side of the pairing: its fakes against the reals' scores (D is frozen here)."""
        with torch.no_grad():
            real_scores = d(self.augment(real)).reshape(-1)  # [B]: the pairing's other half, no gradient needed
        return losses.generator_relativistic(real_scores, d(self.augment(fake)).reshape(-1))


@register("r3gan")
class R3GAN(GAN):
    Options = R3GANOptions
    images_only = True  # R3GAN is its image nets and their penalties
    ada_feedback = True  # RelativisticAdversary.d_loss observes the real scores

    @classmethod
    def penalty_keys(cls, cfg) -> list[str]:
        return ["method.gamma"] if cfg.gamma > 0 else []

    def build_adversary(self) -> RelativisticAdversary:
        return RelativisticAdversary(self.cfg, self.augment)

    def g_phase(self, batch: Batch, ctx: StepContext):
        real = batch["image"]
        fake = self.nets["G"](self.sample_noise(real.shape[0], ctx.device))
        loss = self.adversary.g_loss(self.nets["D"], real, fake)
        return loss, metrics(g_loss=loss)


@dataclass
class ACLR3GANOptions(R3GANOptions, ACLAttachmentOptions):
    """R3GAN's image adversary with the ACL module attached (ACL-GAN's attachment options)."""

    def check(self) -> None:
        super().check()
        self.check_attachment()


@register("acl_r3gan")
class ACLR3GAN(ACLGAN):
    Options = ACLR3GANOptions
    images_only = True
    ada_feedback = True

    @classmethod
    def penalty_keys(cls, cfg) -> list[str]:
        code = ["method.code_gp_weight"] if cfg.code_loss == "wgan_gp" and cfg.code_gp_weight > 0 else []
        return (["method.gamma"] if cfg.gamma > 0 else []) + code

    def build_adversary(self) -> RelativisticAdversary:
        return RelativisticAdversary(self.cfg, self.augment)

    def gx_phase(self, batch: Batch, ctx: StepContext):
        real = batch["image"]
        fake = self.nets["Gx"](self.fake_codes(real, ctx))
        loss = self.adversary.g_loss(self.nets["Dx"], real, fake)
        return self.cfg.lambda_gan * loss, metrics(g_loss=loss)
