"""The option groups methods share; each method's own options dataclass lives beside its phases.

A recipe's ``method:`` section is built into the options class of the method it names (``method.name``), so a
key the method does not read is an error naming it (exit 2), never silently accepted. Shared groups:

- :class:`MethodOptions`: every method (its name and the noise prior p(z));
- :class:`AdversarialOptions`: an image discriminator (GAN paper, WGAN-GP): its loss, its steps and its
  gradient penalty;
- :class:`AutoencoderOptions`: a pixel reconstruction loss L_E;
- :class:`CodeGANOptions`: the ACL module's code GAN (ACL paper eq. 1) and how it is attached.

Plain dataclasses with a comment per field (the recipe documentation); choices and ranges are checked by
``check`` (called by ``acl_dist.validation``), which names the key path.
"""

from __future__ import annotations

from dataclasses import dataclass

from acl_dist.errors import ConfigError
from acl_dist.losses import GAN_LOSSES
from acl_dist.priors import PRIORS
from acl_dist.sections import register_chosen_section


def choose(path: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(path, f"{value!r} is not one of {', '.join(map(str, allowed))}")


def positive(path: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(path, f"must be positive, got {value}")


@dataclass
class MethodOptions:
    """What every method has: which one it is, and the noise prior p(z) its samples start from."""

    name: str = "acl_gan_gp"  # gan | wgan_gp | r3gan | vae | aae | arae | infogan | acl_ae | acl_gan | acl_gan_gp |
    # acl_sgan | acl_r3gan
    prior: str = "gaussian"  # noise prior p(z): gaussian | uniform | gmm | categorical
    prior_modes: int = 4  # prior=gmm: number of modes; prior=categorical: number of categories
    prior_radius: float = 2.0  # prior=gmm: modes sit on a circle (first two dims) of this radius
    prior_std: float = 0.5  # prior=gmm: standard deviation of each mode

    def check(self) -> None:
        """Raise ConfigError naming the key path for a value outside its choices or range."""
        choose("method.prior", self.prior, PRIORS)
        positive("method.prior_modes", self.prior_modes)


@dataclass
class GeneratorLossOptions:
    """How a generator is scored against its discriminator: declared once, for the image GANs (G or Gx against
    D) and the code GAN (Gz against Dc) alike."""

    gan_loss: str = "nonsaturating"  # minimax (GAN paper eq. 1) | nonsaturating (its sec. 3 fix)

    def check_gan_loss(self) -> None:
        choose("method.gan_loss", self.gan_loss, GAN_LOSSES)


@dataclass
class AdversarialOptions(MethodOptions, GeneratorLossOptions):
    """An image discriminator D (or critic) against the generator.

    The penalty enters D's loss as ``gp_weight * gp_every * penalty`` every ``gp_every`` critic iterations
    (lazy regularisation); methods that weight D's whole loss (ACL-GAN's ``lambda_gan``) scale it too, so
    the effective weight there is ``lambda_gan * gp_weight``.
    """

    label_smoothing: float = 0.0  # one-sided label smoothing: real targets become 1 - this (NIPS tutorial)
    d_steps: int = 1  # discriminator steps per generator step (k in the GAN paper, n_critic in WGAN-GP)
    gp_weight: float | None = None  # penalty weight; None: the method default (10: wgan_gp, acl_gan_gp; else off)
    gp_kind: str = "wgan"  # wgan: on interpolates (WGAN-GP) | r1: on reals | r2: on fakes
    gp_one_sided: bool = False  # penalise only gradient norms above 1
    gp_every: int = 1  # lazy regularisation: penalty every k critic iterations, weighted by k (StyleGAN2)
    gp_impl: str = "auto"  # ref: 3 forwards | fused: 1 forward of real+fake+points | split: 2 | auto: fastest

    def check(self) -> None:
        super().check()
        self.check_gan_loss()
        choose("method.gp_kind", self.gp_kind, ("wgan", "r1", "r2"))
        choose("method.gp_impl", self.gp_impl, ("auto", "ref", "fused", "split"))
        positive("method.d_steps", self.d_steps)
        positive("method.gp_every", self.gp_every)


@dataclass
class AutoencoderOptions(MethodOptions):
    """An encoder E and a decoder Dec trained on the pixel reconstruction L_E (ACL paper eq. 2)."""

    lambda_ae: float = 1.0  # weight of the autoencoder loss L_E (ACL-AE eq. 3)


@dataclass
class CodeGANOptions(GeneratorLossOptions):
    """The ACL module's code GAN L_Z (eq. 1) and how it is attached (docs/results/acl_ablation.md).

    Sec. 3.2 leaves the code GAN's training to "most optimization strategies for GANs": ``code_d_steps``
    and ``code_loss`` are those; ``code_generator``, ``encoder_code_norm`` (and ACL-GAN's
    ``generator_norm_stats``) attach the module so the base model starts as it would without it.
    """

    lambda_z: float = 1.0  # lambda_1 / lambda_4: weight of the code loss L_Z (eq. 3, eq. 6)
    code_generator: str = "mlp"  # Gz (sec. 3.2, 5): mlp (the paper's) | residual: z + MLP(z), identity at step 0
    encoder_code_norm: str = "none"  # target codes E(x) (eq. 1): none | batch: standardised per dimension
    code_loss: str = "nonsaturating"  # L_Z: nonsaturating (logistic, eq. 1) | wgan_gp (critic + penalty)
    code_d_steps: int = 1  # Dc steps per generator step (k of the code GAN), each on a fresh batch
    code_gp_weight: float = 1.0  # code_loss wgan_gp: gradient penalty on the code critic

    def check_code_gan(self) -> None:
        self.check_gan_loss()
        choose("method.code_generator", self.code_generator, ("mlp", "residual"))
        choose("method.encoder_code_norm", self.encoder_code_norm, ("none", "batch"))
        choose("method.code_loss", self.code_loss, ("nonsaturating", "wgan_gp"))
        positive("method.code_d_steps", self.code_d_steps)


register_chosen_section("method", MethodOptions)  # the schema's method: section is this class or a subclass
