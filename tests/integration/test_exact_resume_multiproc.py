"""Two gloo processes, stopped at a checkpoint and resumed, end bit-identical to an uninterrupted run.

With and without DeepSpeed ZeRO-2: under ZeRO the optimizer state lives in per-rank partitions, so this is
also the test that every rank writes and reads back its own shard (Adam's moments would differ otherwise).
"""

from __future__ import annotations

import glob
import os
import subprocess

import pytest
import torch

from tests.conftest import REPO, tiny_overrides
from tests.integration.test_multiprocess_training import ACCELERATE, _env


def _train(out_dir: str, name: str, steps: int, *extra: str) -> str:
    ov = tiny_overrides("acl_gan_gp", out_dir, f"run.name={name}", f"train.steps={steps}", "train.ckpt_every=2",
                        *extra)
    cmd = ACCELERATE + ["--multi_gpu", "--num_processes", "2", "-m", "acl_dist", "train",
                        "recipes/digits/acl_gan_gp.yaml", *ov]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _final_state(out_dir: str, name: str) -> dict:
    path = os.path.join(out_dir, name, "checkpoints", "step-00000004", "state.pt")
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("deepspeed", [None, "launch/deepspeed/zero2.json"], ids=["plain", "zero2"])
def test_two_process_resume_is_exact(tmp_path, deepspeed):
    extra = [f"launch.deepspeed={deepspeed}"] if deepspeed else []
    out = str(tmp_path)
    _train(out, "straight", 4, *extra)
    _train(out, "resumed", 2, *extra)
    log = _train(out, "resumed", 4, *extra)
    assert "resumed from" in log and "step-00000002" in log
    straight, resumed = _final_state(out, "straight"), _final_state(out, "resumed")
    for key, value in straight["nets"].items():
        assert torch.equal(value, resumed["nets"][key]), key
    assert straight["ema"], "acl_gan_gp keeps an EMA of its sampling nets"
    for net, tensors in straight["ema"].items():
        for key, value in tensors.items():
            assert torch.equal(value, resumed["ema"][net][key]), f"ema {net}.{key}"
    if deepspeed:  # every rank wrote its own optimizer partition for every net
        parts = glob.glob(os.path.join(out, "resumed", "checkpoints", "step-00000004", "deepspeed", "*",
                                       "zero_pp_rank_*_optim_states.pt"))
        assert len(parts) == 2 * 5, parts
