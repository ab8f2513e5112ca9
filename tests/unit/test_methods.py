"""Every method trains on CPU, and each phase changes exactly the parameters it should."""

from __future__ import annotations

import pytest
import torch

from acl_dist.methods.registry import method_class, method_names
from acl_dist.training.trainer import Trainer
from tests.numerics import FLOAT64_METRIC_RTOL, default_dtype

ALL = method_names()


def _snapshot(trainer):
    return {name: [p.detach().clone() for p in net.parameters()] for name, net in trainer.method.nets.items()}


def _changed(before, trainer):
    out = set()
    for name, net in trainer.method.nets.items():
        if any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters())):
            out.add(name)
    return out


@pytest.mark.parametrize("method", ALL)
def test_each_phase_updates_exactly_its_nets(method, tiny_recipe):
    trainer = Trainer(tiny_recipe(method, "train.steps=2"))
    batch = trainer._to_device(next(iter(trainer.stream)))
    for phase in trainer.phases:
        before = _snapshot(trainer)
        trainer.run_phase(phase, batch, {})
        assert _changed(before, trainer) == set(phase.updates), phase.name


@pytest.mark.parametrize("method", ALL)
def test_every_method_trains_and_samples(method, tiny_recipe):
    result = Trainer(tiny_recipe(method, "train.steps=3")).train()
    assert result.step == 3
    assert all(torch.isfinite(torch.tensor(v)) for v in result.metrics.values())


@pytest.mark.parametrize("method", ["acl_ae", "acl_gan", "acl_gan_gp", "acl_sgan"])
def test_code_loss_never_reaches_the_encoder(method, tiny_recipe):
    """L_Z's codes are the detached target: backpropagating Dc's and Gz's losses leaves E without grads."""
    trainer = Trainer(tiny_recipe(method, "train.steps=1"))
    batch = trainer._to_device(next(iter(trainer.stream)))
    method_obj = trainer.method
    method_obj.nets.requires_grad_(True)
    method_obj.nets.zero_grad(set_to_none=True)
    ctx = __import__("acl_dist.methods.base", fromlist=["StepContext"]).StepContext(0, 0, trainer.device)
    for phase in (p for p in trainer.phases if p.name in ("Dc", "Gz")):
        loss, _ = phase.loss(batch, ctx)
        loss.backward()
    assert all(p.grad is None for p in method_obj.nets["E"].parameters())
    assert any(p.grad is not None for p in method_obj.nets["Gz"].parameters())
    assert any(p.grad is not None for p in method_obj.nets["Dc"].parameters())


def test_acl_gan_fake_source_option_switches_the_image_fakes(tiny_recipe):
    """Algorithm 1 (default) draws D's fakes from Gx(Gz(z)); fake_source=encoder uses Gx(E(x)) (eq. 5)."""
    for source, expect_gz in (("code_generator", True), ("encoder", False)):
        trainer = Trainer(tiny_recipe("acl_gan", f"method.fake_source={source}"))
        calls = []
        hook = trainer.method.nets["Gz"].register_forward_hook(lambda *a: calls.append(1))
        batch = trainer._to_device(next(iter(trainer.stream)))
        trainer.run_phase(trainer.phases[0], batch, {})
        hook.remove()
        assert bool(calls) == expect_gz, source


def test_algorithm_1_recon_updates_only_the_encoder_when_asked(tiny_recipe):
    trainer = Trainer(tiny_recipe("acl_gan", "method.rec_updates_generator=false"))
    rec = next(p for p in trainer.phases if p.name == "rec")
    assert rec.updates == ("E",)


def test_gan_k_discriminator_steps_draw_fresh_batches(tiny_recipe):
    trainer = Trainer(tiny_recipe("gan", "method.d_steps=3", "train.steps=2"))
    trainer.train()
    assert trainer.phase_iterations == {"D": 6, "G": 2}
    assert trainer.stream.position == (0, 2 * 3)  # 3 batches per step: one shared, two fresh for D repeats


def test_minimax_and_nonsaturating_generator_losses_differ():
    from acl_dist.losses import generator_logistic

    logits = torch.tensor([-3.0, 0.0, 2.0])
    # minimax saturates where D rejects fakes confidently (logit -3): its gradient there is tiny.
    x = logits.clone().requires_grad_()
    (gm,) = torch.autograd.grad(generator_logistic(x, "minimax"), x)
    (gn,) = torch.autograd.grad(generator_logistic(x, "nonsaturating"), x)
    assert abs(gm[0]) < 0.05 < abs(gn[0])


def test_label_smoothing_is_one_sided():
    from acl_dist.losses import discriminator_logistic

    real, fake = torch.zeros(4), torch.full((4,), -20.0)
    plain = discriminator_logistic(real, fake, 0.0)
    smooth = discriminator_logistic(real, fake, 0.1)
    assert torch.allclose(plain, smooth)  # at D(x)=0.5 both targets give log 2 ... so check the optimum:
    x = torch.zeros(1, requires_grad=True)
    (g,) = torch.autograd.grad(discriminator_logistic(x, torch.full((1,), -20.0), 0.1), x)
    # the real-logit optimum moves to sigmoid^-1(0.9): gradient at sigmoid(0)=0.5 is 0.5 - 0.9 = -0.4
    assert g.item() == pytest.approx(-0.4, abs=1e-6)


@pytest.mark.parametrize("prior", ["gaussian", "uniform", "gmm", "categorical"])
def test_priors_sample_the_right_shapes_and_supports(prior):
    from acl_dist.priors import Prior

    p = Prior(prior, 6, modes=4, radius=3.0, std=0.01)
    z = p.sample(4000)
    assert z.shape == (4000, 6)
    if prior == "uniform":
        assert z.min() >= -1 and z.max() <= 1
    if prior == "gmm":
        radius = z[:, :2].norm(dim=1)
        # 4000 radii of std 0.01 around 3: their mean within 5 standard errors is 3 ± 8e-4 (0.05 is generous)
        assert torch.allclose(radius.mean(), torch.tensor(3.0), atol=0.05)
    if prior == "categorical":
        assert torch.all(z[:, :4].sum(1) == 1)


@pytest.mark.parametrize("method", [m for m in method_names() if not method_class(m).images_only])
def test_vector_methods_run_on_toy_data(method, tiny_recipe):
    result = Trainer(tiny_recipe(method, "data.source=toy", "data.toy_samples=256", "train.steps=2")).train()
    assert result.step == 2


def test_penalised_critic_step_is_the_same_whatever_gp_impl(tiny_recipe):
    """method.gp_impl picks how the critic's forwards are batched; the D loss and its gradients do not move."""
    results = {}
    for impl in ("ref", "fused", "split"):
        torch.manual_seed(0)
        with default_dtype(torch.float64):  # another order of the same sums: compared in float64 (below)
            trainer = Trainer(tiny_recipe("wgan_gp", f"method.gp_impl={impl}", "model.d_norm=layer"))
            batch = trainer._to_device(next(iter(trainer.stream)))
            d_phase = next(p for p in trainer.phases if "D" in p.updates)
            ctx = __import__("acl_dist.methods.base", fromlist=["StepContext"]).StepContext(0, 0, trainer.device)
            d = trainer.method.nets["D"]
            calls = []
            hook = d.register_forward_hook(lambda *a: calls.append(1))
            torch.manual_seed(1)  # same fakes and the same interpolation weights
            loss, out = d_phase.loss(batch, ctx)
            hook.remove()
            assert len(calls) == {"ref": 3, "fused": 1, "split": 2}[impl], impl  # the recipe's impl really ran
            grads = torch.autograd.grad(loss, list(d.parameters()))
            results[impl] = (loss.detach(), out["gp"], grads)
    ref_loss, ref_gp, ref_grads = results["ref"]
    assert ref_gp > 0
    assert ref_loss.dtype == torch.float64
    close = dict(rtol=FLOAT64_METRIC_RTOL, atol=FLOAT64_METRIC_RTOL)  # sums of < 10^4 terms, see tests/numerics
    for impl in ("fused", "split"):
        loss, gp, grads = results[impl]
        torch.testing.assert_close(loss, ref_loss, **close)
        torch.testing.assert_close(gp, ref_gp, **close)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b, **close)


def test_bernoulli_reconstruction_matches_torch_bce_and_stays_fp32_under_autocast():
    """Same values as F.binary_cross_entropy, but written so CUDA autocast accepts it (it refuses BCE)."""
    import torch.nn.functional as F

    from acl_dist import losses

    gen = torch.Generator().manual_seed(0)
    x, x_rec = torch.rand(4, 1, 8, 8, generator=gen) * 2 - 1, torch.rand(4, 1, 8, 8, generator=gen) * 2 - 1
    prob = ((x_rec + 1) / 2).clamp(1e-6, 1 - 1e-6)
    expected = F.binary_cross_entropy(prob, (x + 1) / 2, reduction="none").flatten(1).sum(1).mean()
    torch.testing.assert_close(losses.bernoulli_reconstruction(x, x_rec), expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = losses.bernoulli_reconstruction(x, x_rec.bfloat16())
    assert value.dtype == torch.float32
