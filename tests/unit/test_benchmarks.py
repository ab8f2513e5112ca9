"""The benchmarks compare like with like: the plain loop trains with the trainer's own settings."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

import pytest

from acl_dist.config import load_recipe
from acl_dist.training.trainer import Trainer
from tests.conftest import REPO


def load_benchmark(name: str) -> ModuleType:
    """A script under benchmarks/ as a module (the folder is no package: the scripts run as files)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_step() -> ModuleType:
    return load_benchmark("train_step")


def test_plain_loop_takes_each_nets_adam_settings_as_the_trainer_does(train_step, tmp_path) -> None:
    """The digits recipe gives the ACL module (Gz, Dc) lr 1e-3 and betas (0.5, 0.9), the image nets
    (0.0, 0.9): both sides must train the same maths for the speed-up to mean anything."""
    overrides = ["model.resolution=8", "model.base_channels=4", "model.max_channels=8", "model.acl_hidden=8",
                 "train.batch_size=4", "launch.device=cpu", f"run.out_dir={tmp_path}", "log.trackers=[]"]
    recipe = load_recipe(train_step.RECIPE, overrides)
    plain = train_step.PlainLoop(recipe, train_step.torch.device("cpu"), "no")
    ours = Trainer(recipe).updates.optimizers
    assert set(plain.opt) == set(ours)
    for name, opt in plain.opt.items():
        mine, theirs = opt.param_groups[0], ours[name].param_groups[0]
        assert (mine["lr"], tuple(mine["betas"])) == (theirs["lr"], tuple(theirs["betas"])), name
    assert plain.opt["Gz"].param_groups[0]["betas"] == (0.5, 0.9) != plain.opt["Dx"].param_groups[0]["betas"]


def test_max_batch_probe_keeps_the_last_batch_that_fitted(train_step, monkeypatch, capsys) -> None:
    """Doubling stops at the first size that fails (out of memory, seen through a failed graph capture's
    own error too), and the answer line is what the parent process reads."""
    def fake_try(args, batch, device) -> int:
        if batch >= 32:
            try:
                raise train_step.torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            except train_step.torch.OutOfMemoryError:
                raise RuntimeError("operation not permitted when stream is capturing")
        return batch * 2**20

    monkeypatch.setattr(train_step, "_try_batch", fake_try)
    args = train_step.parse_args(["--batch", "max", "--max-batch-start", "4", "--max-batch-cap", "1024"])
    assert train_step.probe_max_batch(args, train_step.torch.device("cpu")) == 16
    out = capsys.readouterr().out
    assert "batch 32: out of memory" in out and f"{train_step.MAX_BATCH_LINE} 16\n" in out
    args = train_step.parse_args(["--batch", "max", "--max-batch-start", "4", "--max-batch-cap", "8"])
    assert train_step.probe_max_batch(args, train_step.torch.device("cpu")) == 8
    assert "(the cap" in capsys.readouterr().out


def test_variants_run_against_one_plain_loop_on_the_cpu(train_step, capsys) -> None:
    train_step.main(["--resolution", "8", "--batch", "4", "--rounds", "1", "--steps", "1", "--warmup", "1",
                     "--device", "cpu", "--flops", "--variant", "train.channels_last=never",
                     "--variant", "train.channels_last=always"])
    out = capsys.readouterr().out
    assert "model FLOPs per step" in out
    for name in ("ours[train.channels_last=never]", "ours[train.channels_last=always]"):
        assert f"speed-up {name} vs plain:" in out


def test_gp_benchmark_reports_the_recipes_default_interval_beside_dense(capsys) -> None:
    """benchmarks/gp.py follows the recipes' ``method.gp_every`` and prints its amortised cost beside dense."""
    gp = load_benchmark("gp")
    default = load_recipe(os.path.join(REPO, gp.DEFAULT_RECIPE)).method.gp_every
    assert gp.recipe_default_every() == default
    cost = {1: gp.Amortised([2.0, 2.0, 2.0], [2.0] * 3, [1.9] * 3), 4: gp.Amortised([1.3] * 3, [1.25] * 3, [1.2] * 3),
            8: gp.Amortised([1.12] * 3, [1.12] * 3, [1.1] * 3)}
    gp.report_amortised(cost, "wgan", 8)
    out = capsys.readouterr().out
    assert "every  8 (default)" in out and "every  1 (dense)" in out
    assert "recipes' default k = 8" in out and "1.12x a D step without penalty" in out and "vs dense 2.00x" in out
    assert out.rstrip().endswith("goal <= 1.15x: met")
    gp.report_amortised({1: cost[1], 4: cost[4]}, "wgan", 4)
    assert capsys.readouterr().out.rstrip().endswith("goal <= 1.15x: not met")


def test_plain_r3gan_loop_computes_the_methods_critic_loss(train_step, tmp_path) -> None:
    """The plain loop's R3GAN critic loss (two forwards, autograd.grad on reals and fakes) equals the method's
    (one [2B] forward, kind r1r2) in float64, so the benchmark compares two ways of the same maths."""
    from acl_dist.methods.base import StepContext
    from tests.numerics import FLOAT64_METRIC_RTOL, default_dtype

    overrides = ["model.resolution=8", "model.base_channels=4", "model.max_channels=8", "train.batch_size=4",
                 "launch.device=cpu", f"run.out_dir={tmp_path}", "model.r3gan_group_width=4"]
    with default_dtype(train_step.torch.float64):
        recipe = load_recipe("recipes/mnist/r3gan.yaml", overrides)
        plain = train_step.PlainR3GANLoop(recipe, train_step.torch.device("cpu"), "no")
        d, g = plain.m.nets["D"], plain.m.nets["G"]
        real, fake = plain.batch().double(), g(plain.noise()).detach()
        ours, _ = plain.m.adversary.d_loss(d, real, fake, StepContext(0, 0, train_step.torch.device("cpu")))
        theirs = plain.d_loss(d, real, fake, recipe.method.gamma)
    assert ours.dtype == train_step.torch.float64
    assert abs(ours.item() - theirs.item()) <= FLOAT64_METRIC_RTOL * abs(theirs.item())


def test_the_campaign_speed_profile_puts_each_convolution_under_its_cause() -> None:
    """benchmarks/campaign_speed.py splits a step's self time into dense, grouped and depthwise convolutions
    (R3GAN's FIR resampling), forward and backward: a net of one conv of each kind, profiled, lands in each."""
    import torch

    speed = load_benchmark("campaign_speed")
    net = torch.nn.Sequential(torch.nn.Conv2d(32, 32, 3, padding=1),  # dense
                              torch.nn.Conv2d(32, 32, 3, padding=1, groups=2),  # grouped: 16 channels per group
                              torch.nn.Conv2d(32, 32, 4, stride=2, padding=1, groups=32))  # depthwise
    x = torch.randn(4, 32, 16, 16)

    def step() -> None:
        net(x).square().mean().backward()

    shares = speed.profile_causes(step, 2)
    for kind in ("dense", "grouped", "depthwise"):
        for way in ("fwd", "bwd"):
            assert shares.get(f"conv {kind} {way}", 0) > 0, (kind, way, shares)
    assert abs(sum(shares.values()) - 1) < 1e-9 and set(shares) <= set(speed.CAUSES)
    # a transposed convolution's weight is [in, out, k, k]: halving the channels is no grouping
    up = torch.nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
    shares = speed.profile_causes(lambda: up(torch.randn(4, 64, 8, 8)).square().mean().backward(), 2)
    assert shares.get("conv dense fwd", 0) > 0 and shares.get("conv dense bwd", 0) > 0, shares
    assert not any(k.startswith(("conv grouped", "conv depthwise")) for k in shares), shares
