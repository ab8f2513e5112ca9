"""Loss formulas, single-device and free of any training machinery.

Names follow the source papers: the GAN paper's minimax and non-saturating losses (its sec. 3), one-sided
label smoothing (NIPS 2016 tutorial), the Wasserstein critic loss (WGAN-GP), R3GAN's relativistic pairing
loss (RpGAN), ACL-GAN's feature-wise
reconstruction (eq. 4), the VAE's KL term and InfoGAN's mutual-information lower bound.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

GAN_LOSSES = ("minimax", "nonsaturating")


def discriminator_logistic(real_logits: Tensor, fake_logits: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """-[log D(x) + log(1 - D(G(z)))], with real targets 1 - label_smoothing (one-sided: fakes stay 0)."""
    real_target = torch.full_like(real_logits, 1.0 - label_smoothing)
    real = F.binary_cross_entropy_with_logits(real_logits, real_target)
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_logistic(fake_logits: Tensor, kind: str = "nonsaturating") -> Tensor:
    """Generator loss on D's logits for fakes.

    minimax: minimise log(1 - D(G(z))) = -softplus(l); saturates early in training (GAN paper sec. 3).
    nonsaturating: minimise -log D(G(z)) = softplus(-l).
    """
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    if kind == "nonsaturating":
        return F.softplus(-fake_logits).mean()
    raise ValueError(f"unknown GAN loss {kind!r}; choose one of {GAN_LOSSES}")


def critic_wasserstein(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """WGAN critic loss E[f(fake)] - E[f(real)] (the critic maximises the difference)."""
    return fake_scores.mean() - real_scores.mean()


def generator_wasserstein(fake_scores: Tensor) -> Tensor:
    return -fake_scores.mean()


def discriminator_relativistic(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """RpGAN's critic loss (R3GAN eq. 2): E softplus(-(D(x_r) - D(x_f))) over real-fake pairs [B], [B].

    Each real is judged against a fake, not against a fixed boundary, which removes the mode-dropping optimum
    of the plain logistic loss (R3GAN sec. 2)."""
    return F.softplus(fake_scores - real_scores).mean()


def generator_relativistic(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """RpGAN's generator loss: E softplus(-(D(x_f) - D(x_r))), the same pairs from the other side."""
    return F.softplus(real_scores - fake_scores).mean()


def feature_reconstruction(target_features: Tensor, features: Tensor) -> Tensor:
    """ACL-GAN eq. 4, ||Phi(x) - Phi(Gx(E(x)))||^2, averaged over features and batch.

    The mean (not the sum) over features keeps the loss on the scale of the adversarial terms, so the
    paper's lambda_2 = lambda_3 = lambda_4 = 1 is a sensible balance whatever the width of Phi.
    """
    return (features - target_features.detach()).pow(2).mean()


def pixel_reconstruction(x: Tensor, x_rec: Tensor) -> Tensor:
    """||x - Dec(E(x))||^2 (ACL-AE eq. 2, AAE), averaged over pixels and batch."""
    return (x_rec - x).pow(2).mean()


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over code dims, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()


def bernoulli_reconstruction(x: Tensor, x_rec: Tensor) -> Tensor:
    """VAE reconstruction: -log p(x|z) for pixels in [-1, 1] read as Bernoulli means, summed over pixels."""
    # Written out in fp32 rather than F.binary_cross_entropy, which CUDA autocast refuses outright (a
    # bf16/fp16 log of a probability loses the tails); the values are the same.
    target = (x.float() + 1) / 2
    prob = ((x_rec.float() + 1) / 2).clamp(1e-6, 1 - 1e-6)
    nll = -(target * prob.log() + (1 - target) * torch.log1p(-prob))
    return nll.flatten(1).sum(1).mean()


def info_categorical(logits: Tensor, codes: Tensor) -> Tensor:
    """-E[log Q(c|x)] for a categorical code given as one-hot ``codes`` [B, K] (InfoGAN's L_I, up to H(c))."""
    return F.cross_entropy(logits, codes.argmax(1))


def info_continuous(mean: Tensor, log_std: Tensor, codes: Tensor) -> Tensor:
    """-E[log Q(c|x)] for continuous codes under a factored Gaussian Q (InfoGAN sec. 6), summed over codes."""
    log_std = log_std.clamp(-5, 5)
    nll = 0.5 * ((codes - mean) / log_std.exp()).pow(2) + log_std
    return nll.sum(1).mean()
