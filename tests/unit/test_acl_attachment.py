"""How the ACL module is attached: Gz's scale at step 0, standardised target codes, Gx's batch-norm
statistics, recalibration before sampling, the code GAN's strength, per-net Adam betas, mean metrics."""

from __future__ import annotations

import pytest
import torch

from acl_dist.config import ConfigError
from acl_dist.methods.base import Phase, StepContext, metrics
from acl_dist.nets import CodeGenerator, StandardizedCode
from acl_dist.nets.norms import batch_norms
from acl_dist.training.trainer import Trainer


def _code_std(gz: CodeGenerator, dim: int) -> float:
    torch.manual_seed(1)
    with torch.no_grad():
        return gz(torch.randn(4096, dim)).std(0).mean().item()  # mean per-dimension std of the first codes


def test_plain_mlp_code_generator_starts_collapsed_and_residual_starts_at_the_noise_scale():
    """The measured lead of the fidelity issue: the paper's MLP Gz gives codes of std ~0.1 at init, so the
    attached image generator starts on a collapsed input; the residual Gz is the identity at step 0."""
    torch.manual_seed(0)
    mlp = CodeGenerator(16, 16, 128, 2, "mlp")
    torch.manual_seed(0)
    residual = CodeGenerator(16, 16, 128, 2, "residual")
    assert _code_std(mlp, 16) < 0.3
    assert _code_std(residual, 16) == pytest.approx(1.0, abs=0.05)
    z = torch.randn(8, 16)
    assert torch.equal(residual(z), z)


def test_residual_code_generator_learns_a_correction():
    gz = CodeGenerator(4, 4, 8, 2, "residual")
    opt = torch.optim.Adam(gz.parameters(), lr=1e-2)
    z = torch.randn(64, 4)
    for _ in range(50):
        opt.zero_grad()
        (gz(z) - (2 * z + 1)).pow(2).mean().backward()
        opt.step()
    assert not torch.equal(gz(z), z)
    assert (gz(z) - (2 * z + 1)).pow(2).mean() < (z - (2 * z + 1)).pow(2).mean()


def test_residual_code_generator_needs_equal_noise_and_code_dims():
    with pytest.raises(ValueError, match="noise_dim == code_dim"):
        CodeGenerator(4, 8, kind="residual")


@pytest.mark.parametrize("method", ["acl_ae", "acl_gan", "acl_gan_gp", "acl_sgan"])
def test_standardised_encoder_codes_have_unit_scale_whatever_the_encoder(method, tiny_recipe):
    trainer = Trainer(tiny_recipe(method, "method.encoder_code_norm=batch"))
    batch = trainer._to_device(next(iter(trainer.stream)))
    with torch.no_grad():
        trainer.method.nets["E"].apply(lambda m: m.weight.mul_(7.0) if isinstance(m, torch.nn.Linear) else None)
        codes = trainer.method.code_target(batch["image"])  # [B, d]
    # a mean of B = 8 standardised float32 values of |x| < 3: within 8·3·u32 ≈ 1.4e-6 of 0 (1e-5 allows 7x);
    # the std is sqrt(var / (var + eps)) with batch norm's eps = 1e-5 against var >> 1e-3: within 1e-2 of 1
    assert torch.allclose(codes.mean(0), torch.zeros(codes.shape[1]), atol=1e-5)
    assert torch.allclose(codes.std(0, unbiased=False), torch.ones(codes.shape[1]), atol=1e-2)
    plain = Trainer(tiny_recipe(method))
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.method.nets["E"].modules())


def test_standardized_code_wraps_any_encoder():
    enc = StandardizedCode(torch.nn.Linear(3, 5), 5)
    out = enc(torch.randn(32, 3) * 10 + 4)
    assert out.shape == (32, 5) and out.mean().abs() < 1e-5  # 160 standardised values: 160·3·u32 ≈ 3e-5 / 5


def _gx_running_means(trainer):
    return [layer.running_mean.clone() for layer in batch_norms(trainer.method.nets["Gx"])]


@pytest.mark.parametrize("stats, changes", [("all", True), ("sampling_codes", False)])
def test_reconstruction_phase_leaves_gx_statistics_to_the_sampled_codes(stats, changes, tiny_recipe):
    """generator_norm_stats=sampling_codes: Gx normalises E(x) with batch statistics in the rec phase but its
    running statistics (what eval-mode sampling uses) only see Gz(z) codes."""
    trainer = Trainer(tiny_recipe("acl_gan", "model.g_norm=batch", f"method.generator_norm_stats={stats}"))
    batch = trainer._to_device(next(iter(trainer.stream)))
    rec = next(p for p in trainer.phases if p.name == "rec")
    before = _gx_running_means(trainer)
    trainer.run_phase(rec, batch, {})
    after = _gx_running_means(trainer)
    assert any(not torch.equal(a, b) for a, b in zip(before, after)) == changes
    assert all(layer.track_running_stats for layer in trainer.method.nets["Gx"].modules()
               if isinstance(layer, torch.nn.BatchNorm2d))
    gx_phase = next(p for p in trainer.phases if p.name == "Gx")
    trainer.run_phase(gx_phase, batch, {})
    assert any(not torch.equal(a, b) for a, b in zip(after, _gx_running_means(trainer)))


def test_sampling_codes_statistics_need_code_generator_fakes(tiny_recipe):
    with pytest.raises(ConfigError, match="method.generator_norm_stats"):
        tiny_recipe("acl_gan", "method.generator_norm_stats=sampling_codes", "method.fake_source=encoder")


def _ema_gx_means(trainer):
    return [layer.running_mean.clone() for layer in batch_norms(trainer.ema.nets["Gx"])]


def test_recalibrated_statistics_differ_from_training_ones_and_feed_ema_sampling_and_fid(tiny_recipe):
    """eval.bn_recalibration: before grids and FID, the EMA copies' batch norms get statistics of fresh
    Gz(z) samples; the global RNG (training's noise) is untouched; the FID evaluation sees them."""
    recipe = tiny_recipe("acl_gan", "model.g_norm=batch", "train.steps=3", "eval.every=3", "eval.num_samples=16",
                         "eval.batch_size=8", "eval.bn_recalibration=3")
    trainer = Trainer(recipe)
    trainer.train()  # statistics at the end of training: the live nets'
    training_stats = [layer.running_mean.clone() for layer in batch_norms(trainer.method.nets["Gx"])]
    trainer.ema.update(trainer._sampling_nets(), trainer.step)  # EMA copies carry the training statistics
    assert all(torch.equal(a, b) for a, b in zip(_ema_gx_means(trainer), training_stats))
    rng = torch.get_rng_state()
    fixed = trainer.fixed_noise[:8]
    with torch.no_grad():
        before = trainer.method.generate(fixed, nets=trainer.ema.nets)
    seen = []
    trainer.evaluator.tracker.evaluate = lambda step, generate: seen.append(_ema_gx_means(trainer)) or {"fid": 1.0}
    trainer.step = 3
    trainer._periodic_outputs(type("Log", (), {"write": lambda *a: None, "image": lambda *a: None})())
    assert torch.equal(torch.get_rng_state(), rng)
    recalibrated = _ema_gx_means(trainer)
    assert any(not torch.equal(a, b) for a, b in zip(recalibrated, training_stats))
    assert all(torch.equal(a, b) for a, b in zip(seen[0], recalibrated))  # FID ran on recalibrated nets
    with torch.no_grad():
        after = trainer.method.generate(fixed, nets=trainer.ema.nets)
    assert not torch.equal(before, after)


def test_recalibration_is_the_same_on_every_call(tiny_recipe):
    from acl_dist.eval.recalibration import recalibrate_sampling_nets

    trainer = Trainer(tiny_recipe("acl_gan", "model.g_norm=batch", "eval.bn_recalibration=2"))
    args = (trainer.method, trainer.ema.nets, trainer.recipe.eval, trainer.recipe.run.seed, trainer.device)
    assert recalibrate_sampling_nets(*args) > 0
    first = _ema_gx_means(trainer)
    recalibrate_sampling_nets(*args)
    assert all(torch.equal(a, b) for a, b in zip(first, _ema_gx_means(trainer)))
    assert not any(m.training for m in trainer.ema.nets["Gx"].modules())


def test_load_run_recalibrates_like_the_trainer(tiny_recipe):
    from acl_dist.tools.run_loading import load_run

    # NCHW in the trainer as in load_run: the same kernels on the same noise, so the same numbers exactly
    trainer = Trainer(tiny_recipe("acl_gan", "model.g_norm=batch", "train.steps=2", "eval.bn_recalibration=2",
                                  "train.channels_last=never"))
    trainer.train()
    trainer._recalibrate_sampling_nets()
    loaded = load_run(trainer.run_dir)
    for a, b in zip(batch_norms(loaded.nets["Gx"]), batch_norms(trainer.ema.nets["Gx"])):
        assert torch.equal(a.running_mean, b.running_mean)
        assert torch.equal(a.running_var, b.running_var)


@pytest.mark.parametrize("k", [1, 3])
def test_code_d_steps_runs_the_code_critic_that_many_times(k, tiny_recipe):
    trainer = Trainer(tiny_recipe("acl_gan", f"method.code_d_steps={k}", "train.steps=2"))
    calls = []
    hook = trainer.method.nets["Dc"].register_forward_pre_hook(lambda *a: calls.append(1))
    trainer.train()
    hook.remove()
    assert trainer.phase_iterations["Dc"] == 2 * k and trainer.phase_iterations["Gz"] == 2
    assert len(calls) == 2 * (2 * k) + 2  # each Dc step scores codes and fakes; each Gz step scores fakes


def test_wasserstein_code_critic_trains_with_a_penalty(tiny_recipe):
    trainer = Trainer(tiny_recipe("acl_ae", "method.code_loss=wgan_gp", "method.code_gp_weight=10",
                                  "train.steps=2"))
    result = trainer.train()
    assert {"Dc/dc_loss", "Dc/gp", "Dc/code_mmd"} <= set(result.metrics)
    assert "Dc/dc_acc" not in result.metrics  # an accuracy is meaningless for a critic


def test_code_metrics_report_accuracy_and_mmd(tiny_recipe):
    result = Trainer(tiny_recipe("acl_gan", "train.steps=2")).train()
    assert 0.0 <= result.metrics["Dc/dc_acc"] <= 1.0
    assert result.metrics["Dc/code_mmd"] > -0.1


def test_phase_metrics_are_means_over_repeats(tiny_recipe):
    """A D loss logs the same whatever d_steps is: the trainer averages a phase's repeats."""
    trainer = Trainer(tiny_recipe("gan", "method.d_steps=3"))
    seen = iter([1.0, 2.0, 6.0])

    def loss(batch, ctx: StepContext):
        value = torch.tensor(next(seen))
        return trainer.method.nets["D"](batch["image"]).mean() * 0, metrics(v=value)

    phase = Phase("D", ("D",), loss, repeats=3)
    trainer.phases = [phase]
    sums: dict = {}
    trainer.run_step(iter(trainer.stream), sums)
    assert sums["D/v"].item() == pytest.approx(3.0)


def test_betas_per_net_give_the_acl_module_its_own_adam(tiny_recipe):
    trainer = Trainer(tiny_recipe("acl_gan_gp", "optim.beta1=0.0", "optim.beta2=0.9",
                                  "optim.betas_per_net={Gz: [0.5, 0.99]}"))
    assert trainer.updates.optimizers["Gz"].param_groups[0]["betas"] == (0.5, 0.99)
    assert trainer.updates.optimizers["Gx"].param_groups[0]["betas"] == (0.0, 0.9)


@pytest.mark.parametrize("value, match", [("{Q: [0.5, 0.9]}", "no net"), ("{Gz: [0.5]}", "two numbers"),
                                          ("{Gz: [1.5, 0.9]}", "two numbers")])
def test_bad_betas_per_net_name_the_key(value, match, tiny_recipe):
    with pytest.raises(ConfigError, match=match):
        tiny_recipe("acl_gan", f"optim.betas_per_net={value}")
