"""R3GAN: the relativistic pairing loss, R1 + R2 in one double backward, its nets, its schedules; DiffAugment."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from acl_dist import losses
from acl_dist.errors import ConfigError
from acl_dist.methods.r3gan import R3GANOptions
from acl_dist.nets.r3gan import R3Discriminator, R3Encoder, R3Generator, ResidualBlock
from acl_dist.ops.diffaugment import augment, augment_ref, cutout, translation
from acl_dist.ops.gradient_penalty import critic_scores_and_penalty, gradient_penalty
from acl_dist.training.trainer import Trainer
from tests.numerics import FLOAT64_METRIC_RTOL


# ----------------------------------------------------------------------------------------------- the loss
def test_relativistic_losses_are_softplus_of_the_paired_differences():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.0, 1.0, 0.5])
    d = losses.discriminator_relativistic(real, fake)
    g = losses.generator_relativistic(real, fake)
    assert d.item() == pytest.approx(sum(math.log1p(math.exp(-(r - f))) for r, f in zip(real, fake)) / 3)
    assert g.item() == pytest.approx(sum(math.log1p(math.exp(-(f - r))) for r, f in zip(real, fake)) / 3)
    # shifting every score by a constant changes nothing: only pair differences count
    assert losses.discriminator_relativistic(real + 5, fake + 5) == pytest.approx(d.item())


def _critic() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 4, 2, 1), nn.GroupNorm(1, 4), nn.LeakyReLU(0.2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 1)).double()


@pytest.mark.parametrize("impl", ["ref", "fused", "split"])
def test_r1r2_is_r1_plus_r2_from_one_double_backward(impl):
    """float64: the same sums in another order (see REORDER in test_gradient_penalty)."""
    critic = _critic()
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(4, 3, 8, 8, generator=g,
                                                                                         dtype=torch.float64)
    expected = gradient_penalty(critic, real, fake, kind="r1") + gradient_penalty(critic, real, fake, kind="r2")
    real_scores, fake_scores, penalty = critic_scores_and_penalty(critic, real, fake, kind="r1r2", impl=impl)
    close = dict(rtol=FLOAT64_METRIC_RTOL, atol=FLOAT64_METRIC_RTOL)
    torch.testing.assert_close(penalty, expected, **close)
    torch.testing.assert_close(real_scores, critic(real).reshape(-1), **close)
    torch.testing.assert_close(fake_scores, critic(fake).reshape(-1), **close)
    (grad,) = torch.autograd.grad(penalty, [critic[0].weight])
    assert grad.abs().sum() > 0  # the penalty reaches the weights


# ----------------------------------------------------------------------------------------------- the nets
@pytest.mark.parametrize("resolution", [8, 32, 64])
def test_r3gan_nets_shapes_and_no_normalisation(resolution):
    g = R3Generator(16, resolution, 3, 16, 64, blocks=2)
    d = R3Discriminator(resolution, 3, 16, 64, blocks=2)
    e = R3Encoder(resolution, 3, 10, 16, 64, blocks=1)
    x = g(torch.randn(5, 16))
    assert x.shape == (5, 3, resolution, resolution)
    assert d(x).shape == (5,) and e(x).shape == (5, 10)
    assert d.features(x).shape == (5, d.feature_dim)
    torch.testing.assert_close(d.score(d.features(x)), d(x))
    norms = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
    assert not any(isinstance(m, norms) for net in (g, d, e) for m in net.modules())
    assert any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in d.modules())  # grouped 3x3 convs


def test_fixup_blocks_are_the_identity_at_init_and_not_after_a_step():
    block = ResidualBlock(32, expansion=2, group_width=16, total_blocks=8)
    x = torch.randn(2, 32, 8, 8)
    assert torch.equal(block(x), x)
    assert block.spatial.groups == 4  # 64 hidden channels in groups of 16
    opt = torch.optim.Adam(block.parameters(), lr=1e-2)
    block(x).pow(2).mean().backward()
    opt.step()
    assert not torch.equal(block(x), x)


# ------------------------------------------------------------------------------------------ the schedules
def test_gamma_decays_on_a_cosine_on_the_device():
    cfg = R3GANOptions(name="r3gan", gamma=1.0, gamma_final=0.1)
    at = [float(cfg.gamma_at(torch.tensor(p))) for p in (0.0, 0.5, 1.0)]
    assert at == [pytest.approx(1.0), pytest.approx(0.55), pytest.approx(0.1)]
    assert R3GANOptions(name="r3gan", gamma=0.3).gamma_at(torch.tensor(0.7)) == 0.3  # no final: constant


def test_optimizer_schedules_follow_the_cosine_per_net(tiny_recipe):
    trainer = Trainer(tiny_recipe("r3gan", "train.steps=4", "optim.lr=1e-3", "optim.lr_decay_to=0.25",
                                  "optim.beta2=0.9", "optim.beta2_final=0.99", "optim.lr_per_net={D: 2e-3}"))
    seen = []
    batches = iter(trainer.stream)
    for _ in range(4):
        trainer.train_step(batches, {})
        seen.append({n: (o.param_groups[0]["lr"], o.param_groups[0]["betas"][1])
                     for n, o in trainer.updates.optimizers.items()})
        trainer.step += 1
    for step, values in enumerate(seen):
        ramp = 0.5 * (1 - math.cos(math.pi * step / 4))
        assert values["G"][0] == pytest.approx(1e-3 * (1 - 0.75 * ramp))
        assert values["D"][0] == pytest.approx(2e-3 * (1 - 0.75 * ramp))  # each net from its own rate
        assert values["G"][1] == pytest.approx(0.9 + 0.09 * ramp)
    assert float(trainer._progress) == pytest.approx(3 / 4)


def test_schedules_refuse_always_on_cuda_graphs_and_bad_values(tiny_recipe):
    with pytest.raises(ConfigError, match="train.cuda_graphs.*optimizer schedules"):
        tiny_recipe("r3gan", "optim.lr_decay_to=0.5", "train.cuda_graphs=always")
    with pytest.raises(ConfigError, match="optim.lr_decay_to"):
        tiny_recipe("r3gan", "optim.lr_decay_to=0")
    with pytest.raises(ConfigError, match="method.gamma"):
        tiny_recipe("r3gan", "method.gamma=-1")
    with pytest.raises(ConfigError, match="model.d_norm"):  # R1/R2 on a batch-norm critic is ill-defined
        tiny_recipe("r3gan", "model.d_norm=batch")


@pytest.mark.parametrize("method", ["r3gan", "acl_r3gan"])
def test_r3gan_methods_train_on_r3gan_nets_with_diffaugment(method, tiny_recipe):
    recipe = tiny_recipe(method, "model.arch=r3gan", "model.resolution=16", "train.steps=3",
                         "data.augment=[color, translation, cutout]", "method.gp_every=2")
    result = Trainer(recipe).train()
    assert result.step == 3
    assert all(math.isfinite(v) for v in result.metrics.values())


# ------------------------------------------------------------------------------------------- DiffAugment
@pytest.mark.parametrize("policies", [["color"], ["translation"], ["cutout"], ["color", "translation", "cutout"]])
def test_diffaugment_equals_its_per_image_reference_and_passes_gradients(policies):
    x = torch.randn(6, 3, 16, 16, requires_grad=True)
    torch.manual_seed(3)
    fast = augment(x, policies)
    torch.manual_seed(3)
    ref = augment_ref(x, policies)
    assert torch.equal(fast, ref)
    (grad,) = torch.autograd.grad(fast.sum(), x)
    assert grad.abs().sum() > 0


def test_translation_shifts_whole_pixels_with_zeros_and_cutout_zeroes_half_size_squares():
    x = torch.arange(1.0, 1 + 16 * 16).view(1, 1, 16, 16).repeat(64, 1, 1, 1)
    torch.manual_seed(0)
    moved = translation(x)
    for image in moved:  # every image is the original shifted by (dy, dx) with |d| <= 2, zeros coming in
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(image[0], F.pad(x[0, 0], (2, 2, 2, 2))[2 - dy:18 - dy, 2 - dx:18 - dx])]
        assert len(found) == 1
    holes = (cutout(torch.ones(64, 1, 16, 16)) == 0).flatten(1).sum(1)
    assert holes.max() == 64 and holes.min() > 0  # an 8x8 square, clipped at the borders


def test_critic_sees_augmented_reals_and_fakes_each_image_its_own_draw(tiny_recipe):
    trainer = Trainer(tiny_recipe("gan", "data.augment=[translation, cutout]", "model.resolution=16"))
    seen = []
    hook = trainer.method.nets["D"].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    batch = trainer._to_device(next(iter(trainer.stream)))
    d_phase = next(p for p in trainer.phases if p.name == "D")
    from acl_dist.methods.base import StepContext

    d_phase.loss(batch, StepContext(0, 0, trainer.device))
    hook.remove()
    real_seen = seen[0]
    assert real_seen.shape == batch["image"].shape and not torch.equal(real_seen, batch["image"])
    assert (real_seen == 0).any()  # cutout holes and translated-in zeros


# ------------------------------------------------------------------------------- the nets as published
def test_convs_carry_no_bias_their_activations_do_and_heads_have_none():
    from acl_dist.nets.r3gan import BiasedActivation

    g, d = R3Generator(16, 16, 3, 16, 64, blocks=1), R3Discriminator(16, 3, 16, 64, blocks=1)
    for net in (g, d):
        assert all(m.bias is None for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        assert any(isinstance(m, BiasedActivation) for m in net.modules())


def test_the_generative_basis_is_a_learned_map_scaled_per_channel_by_a_linear_map_of_z():
    g = R3Generator(8, 8, 1, 16, 32, blocks=1)
    z = torch.randn(3, 8)
    expected = g.basis.basis[None] * (z @ g.basis.linear.weight.T)[:, :, None, None]  # [3, C4, 4, 4]
    torch.testing.assert_close(g.basis(z), expected)


def test_resampling_is_the_published_low_pass_filter_with_zero_padding():
    from acl_dist.nets.r3gan import Downsample, Upsample

    up, down = Upsample(2, 2), Downsample(2, 2)
    ones = torch.ones(1, 2, 8, 8)
    big = up(ones)  # [1, 2, 16, 16]
    assert big.shape == (1, 2, 16, 16) and torch.allclose(big[..., 1:-1, 1:-1], torch.ones(1, 2, 14, 14))
    assert torch.allclose(big[..., 0, 1:-1], torch.full((1, 2, 14), 0.75))  # zero padding darkens the border
    small = down(ones)
    assert small.shape == (1, 2, 4, 4) and torch.allclose(small[..., 1:-1, 1:-1], torch.ones(1, 2, 2, 2))
    assert torch.allclose(small[..., 0, 1:-1], torch.full((1, 2, 2), 7 / 8))
    x = torch.randn(1, 2, 8, 8)  # /2 is the adjoint of x2 up to the up-sampler's gain of 4
    y = torch.randn(1, 2, 4, 4)
    torch.testing.assert_close((down(x) * y).sum() * 4, (x * up(y)).sum())
