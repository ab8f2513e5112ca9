"""ACL-GAN, ACL-GAN-GP and ACL-SGAN (ACL paper sec. 4.2-4.3, eq. 4-6, Algorithm 1).

Nets: encoder E, image generator Gx, image discriminator Dx, code generator Gz, code discriminator Dc.
L_ACL-GAN = lambda_2 * L_rec + lambda_3 * L_GAN + lambda_4 * L_Z (eq. 6), run as phases:

- ``Dx``  (Dx): real x_r against fakes. Fakes follow Algorithm 1 by default, x_ff = Gx(Gz(z)) (line 7-8);
  ``method.fake_source: encoder`` uses Gx(E(x)) as eq. 5 reads (c ~ p_c). Gz enters detached: Algorithm 1
  updates Gz through L_Z only.
- ``Gx``  (Gx): fool Dx with the same kind of fakes.
- ``rec`` (E, Gx): L_rec = ||Phi(x) - Phi(Gx(E(x)))||^2 with Phi = Dx's last feature layer (eq. 4). Eq. 4
  minimises it over E and Gx; ``method.rec_updates_generator: false`` gives Algorithm 1 line 11 (E only).
- ``Dc``, ``Gz``: L_Z (eq. 1) with the encoder's codes as the detached target.

How the module is attached (options measured in ``docs/results/acl_ablation.md``; none changes which loss
updates which net): ``method.code_generator`` (residual Gz starts as the identity, sec. 3.2),
``method.encoder_code_norm`` (the target codes at a fixed scale, eq. 1), ``method.generator_norm_stats``
(Gx's batch-norm statistics from the codes it is sampled from, Algorithm 1 lines 4 and 7) and the code GAN's
``code_d_steps`` / ``code_loss`` (``CodeLearningPhases``). Each phase takes its own Adam step, where eq. 6
reads as one objective: the phases are Algorithm 1's lines 11-13, which update disjoint parameter groups.

``acl_gan_gp`` makes Dx a Wasserstein critic with a gradient penalty (default weight 10). ``acl_sgan``
replaces E by a classifier trained on labels; its code is the last fully connected layer (sec. 4.3).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from acl_dist import losses
from acl_dist.errors import ConfigError
from acl_dist.methods.base import Batch, Method, Phase, StepContext, metrics, register
from acl_dist.methods.common import (
    Adversary,
    CodeLearningPhases,
    build_acl_module,
    build_discriminator,
    build_encoder,
    build_generator,
    maybe_standardized,
)
from acl_dist.methods.options import AdversarialOptions, CodeGANOptions, choose
from acl_dist.nets import ConvClassifier
from acl_dist.nets.norms import running_stats_frozen


@dataclass
class ACLAttachmentOptions(CodeGANOptions):
    """The code GAN's options and how ACL-GAN joins it to an image GAN (eq. 4-6), whatever the image adversary."""

    lambda_rec: float = 1.0  # lambda_2: weight of the feature reconstruction loss L_rec (eq. 4, 6)
    lambda_gan: float = 1.0  # lambda_3: weight of the image adversarial loss L_GAN (eq. 5, 6)
    fake_source: str = "code_generator"  # D's fakes: code_generator = Gx(Gz(z)) (Alg. 1) | encoder = Gx(E(x)) (eq. 5)
    rec_updates_generator: bool = True  # L_rec also trains Gx (eq. 4); False: encoder only (Algorithm 1 line 11)
    generator_norm_stats: str = "all"  # Gx batch-norm running stats: all phases | sampling_codes (Gz(z) only)

    def check_attachment(self) -> None:
        self.check_code_gan()
        choose("method.fake_source", self.fake_source, ("code_generator", "encoder"))
        choose("method.generator_norm_stats", self.generator_norm_stats, ("all", "sampling_codes"))
        if self.generator_norm_stats == "sampling_codes" and self.fake_source != "code_generator":
            raise ConfigError("method.generator_norm_stats", "sampling_codes keeps Gx's statistics of Gz(z) "
                              "codes, which no phase feeds Gx under method.fake_source: encoder; use all")


@dataclass
class ACLGANOptions(AdversarialOptions, ACLAttachmentOptions):
    """ACL-GAN's (eq. 4-6): the image adversary's, the code GAN's, and how the two are joined."""

    def check(self) -> None:
        super().check()
        self.check_attachment()


@dataclass
class ACLSGANOptions(ACLGANOptions):
    """ACL-SGAN's: ACL-GAN's, and the weight of its classifier's cross-entropy."""

    cls_weight: float = 1.0  # weight of the classifier's cross-entropy in the rec phase


@register("acl_gan")
class ACLGAN(CodeLearningPhases, Method):
    Options = ACLGANOptions
    net_names = ("E", "Gx", "Dx", "Gz", "Dc")
    sampling_nets = ("Gz", "Gx")
    encode_nets = ("E",)
    wasserstein = False
    default_gp_weight = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nets["E"] = self.build_inference_net()
        self.nets["Gx"] = build_generator(self.model, self.model.code_dim, self.data_dim)
        self.nets["Dx"] = build_discriminator(self.model, self.data_dim)
        self.nets["Gz"], self.nets["Dc"] = build_acl_module(self.model, self.noise_dim(), self.gz_kind())
        self.adversary = self.build_adversary()

    def build_adversary(self):
        """The image adversary Dx plays (R3GAN's subclass swaps in its own)."""
        return Adversary(self.cfg, self.wasserstein, self.default_gp_weight, self.augment)

    def build_inference_net(self):
        encoder = build_encoder(self.model, self.model.code_dim, self.data_dim)
        return maybe_standardized(encoder, self.cfg.encoder_code_norm, self.model.code_dim)

    def phases(self) -> list[Phase]:
        rec_nets = ("E", "Gx") if self.cfg.rec_updates_generator else ("E",)
        return [Phase("Dx", ("Dx",), self.dx_phase, repeats=self.cfg.d_steps, penalty_every=self.cfg.gp_every),
                Phase("Gx", ("Gx",), self.gx_phase),
                Phase("rec", rec_nets, self.rec_phase)] + self.code_phases()

    def fake_codes(self, x: Tensor, ctx: StepContext) -> Tensor:
        """Codes the image adversary's fakes are drawn from, always without gradient (see module doc)."""
        with torch.no_grad():
            if self.cfg.fake_source == "encoder":
                return self.code_target(x)
            return self.nets["Gz"](self.sample_noise(x.shape[0], ctx.device))

    def dx_phase(self, batch: Batch, ctx: StepContext):
        real = batch["image"]
        with torch.no_grad():
            fake = self.nets["Gx"](self.fake_codes(real, ctx))
        loss, out = self.adversary.d_loss(self.nets["Dx"], real, fake, ctx)
        return self.cfg.lambda_gan * loss, out

    def gx_phase(self, batch: Batch, ctx: StepContext):
        fake = self.nets["Gx"](self.fake_codes(batch["image"], ctx))
        loss = self.adversary.g_loss(self.adversary.scores(self.nets["Dx"], fake))
        return self.cfg.lambda_gan * loss, metrics(g_loss=loss)

    def rec_phase(self, batch: Batch, ctx: StepContext):
        x, dx, gx = batch["image"], self.nets["Dx"], self.nets["Gx"]
        with torch.no_grad():
            target = dx.features(x)  # Phi(x) [B, F]: no learnable path (Dx is not trained here)
        with self._rec_norm_stats(gx):
            reconstruction = gx(self.code_target(x))  # [B, C, H, W]
        rec = losses.feature_reconstruction(target, dx.features(reconstruction))
        return self.cfg.lambda_rec * rec, metrics(rec=rec)

    def _rec_norm_stats(self, gx):
        """``method.generator_norm_stats: sampling_codes``: Gx normalises E(x) codes with their own batch
        statistics but keeps running statistics of Gz(z) codes only, which is what sampling feeds it (the
        Dx and Gx phases); ``all`` averages both sources into the statistics eval-mode sampling uses."""
        if self.cfg.generator_norm_stats == "sampling_codes":
            return running_stats_frozen(gx)
        return contextlib.nullcontext()

    def generate(self, noise, nets=None):
        return self.net("Gx", nets)(self.net("Gz", nets)(noise))

    def encode(self, x, nets=None):
        return self.net("E", nets)(x)

    def decode(self, code, nets=None):
        return self.net("Gx", nets)(code)


@register("acl_gan_gp")
class ACLGANGP(ACLGAN):
    wasserstein = True
    default_gp_weight = 10.0


@register("acl_sgan")
class ACLSGAN(ACLGAN):
    """ACL-SGAN: the inference net is a label-supervised classifier; its last FC layer is the code.

    The classifier's cross-entropy joins the ``rec`` phase (weight ``method.cls_weight``). Everything else
    is ACL-GAN, as the paper describes it ("very similar to our ACL-GAN model except that the encoder is
    replaced by a classifier").
    """

    Options = ACLSGANOptions
    needs_labels = True
    images_only = True  # its inference net is a conv classifier

    def build_inference_net(self):
        m = self.model
        return ConvClassifier(m.resolution, m.channels, m.code_dim, m.num_classes, m.base_channels,
                              m.max_channels, m.d_norm, self.cfg.encoder_code_norm == "batch")

    def code_target(self, x: Tensor) -> Tensor:
        return self.nets["E"](x)[0]

    def rec_phase(self, batch: Batch, ctx: StepContext):
        loss, out = super().rec_phase(batch, ctx)
        logits = self.nets["E"](batch["image"])[1]
        ce = F.cross_entropy(logits, batch["label"])
        accuracy = (logits.argmax(1) == batch["label"]).float().mean()
        out.update(metrics(cls_ce=ce, cls_acc=accuracy))
        return loss + self.cfg.cls_weight * ce, out

    def encode(self, x, nets=None):
        return self.net("E", nets)(x)[0]
