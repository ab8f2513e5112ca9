"""The benchmarks compare like with like: the plain loop trains with the trainer's own settings."""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import pytest

from acl_dist.config import load_recipe
from acl_dist.train.trainer import Trainer
from tests.conftest import REPO


def load_benchmark(name: str) -> ModuleType:
    """A script under benchmarks/ as a module (the folder is no package: the scripts run as files)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_step() -> ModuleType:
    return load_benchmark("train_step")


def test_plain_loop_takes_each_nets_adam_settings_as_the_trainer_does(train_step, tmp_path) -> None:
    """The digits recipe gives the ACL module (Gz, Dc) lr 1e-3 and betas (0.5, 0.9), the image nets
    (0.0, 0.9): both sides must train the same maths for the speed-up to mean anything."""
    overrides = ["model.resolution=8", "model.base_channels=4", "model.max_channels=8", "model.acl_hidden=8",
                 "train.batch_size=4", "launch.device=cpu", f"run.out_dir={tmp_path}", "train.tensorboard=false"]
    recipe = load_recipe(train_step.RECIPE, overrides)
    plain = train_step.PlainLoop(recipe, train_step.torch.device("cpu"), "no")
    ours = Trainer(recipe).updates.optimizers
    assert set(plain.opt) == set(ours)
    for name, opt in plain.opt.items():
        mine, theirs = opt.param_groups[0], ours[name].param_groups[0]
        assert (mine["lr"], tuple(mine["betas"])) == (theirs["lr"], tuple(theirs["betas"])), name
    assert plain.opt["Gz"].param_groups[0]["betas"] == (0.5, 0.9) != plain.opt["Dx"].param_groups[0]["betas"]
