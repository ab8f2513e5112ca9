"""Shared fixtures: tiny recipes that train in a second on one CPU core."""

from __future__ import annotations

import os
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable

torch.set_num_threads(1)  # CI has 2 cores; tests stay predictable and leave room for subprocesses

TINY = [
    "data.source=digits", "model.resolution=8", "model.code_dim=4", "model.base_channels=4",
    "model.max_channels=8", "model.acl_hidden=8", "model.mlp_hidden=8", "model.d_norm=layer",
    "train.batch_size=8", "train.log_every=1", "train.sample_every=1000", "train.ckpt_every=0",
    "train.progress=false", "log.trackers=[]", "train.ema=0.9", "eval.every=0",
]
TINY_METHOD = {"infogan": ["method.info_categorical=[3]", "method.info_continuous=1"]}  # options of one method


def tiny_overrides(method: str, out_dir: str, *extra: str) -> list[str]:
    return (TINY + [f"method.name={method}", f"run.out_dir={out_dir}", f"run.name={method}"]
            + TINY_METHOD.get(method, []) + list(extra))


INTEGRATION = os.path.join(REPO, "tests", "integration")


def pytest_collection_modifyitems(config, items):
    """Every integration test is ``slow`` (it runs the real CLI, processes, services): ``-m "not slow"`` leaves
    the unit layer, a developer's inner loop."""
    for item in items:
        if str(item.path).startswith(INTEGRATION + os.sep):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def tiny_recipe(tmp_path):
    """tiny_recipe("acl_gan", "train.steps=3") -> a validated Recipe writing under tmp_path."""
    from acl_dist.config import load_recipe

    def make(method: str, *extra: str):
        return load_recipe(None, tiny_overrides(method, str(tmp_path), *extra))

    return make
