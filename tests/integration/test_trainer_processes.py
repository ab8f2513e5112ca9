"""The trainer as its own process, the way users and SLURM run it: killed with SIGKILL mid-run, or asked to
stop with SIGUSR1 (preemption)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import torch

from acl_dist.training.checkpoint import latest_checkpoint, load_state
from acl_dist.training.trainer import Trainer
from tests.conftest import PYTHON, REPO, tiny_overrides


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    """SIGKILL mid-run, then resume: step, optimizer and EMA state are the checkpoint's."""
    ov = tiny_overrides("acl_ae", str(tmp_path), "train.steps=100000", "train.ckpt_every=3",
                        "train.keep_checkpoints=100")
    proc = subprocess.Popen([PYTHON, "-m", "acl_dist", "train", "recipes/digits/acl_ae.yaml", *ov], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = os.path.join(str(tmp_path), "acl_ae")
    deadline = time.time() + 120
    while time.time() < deadline and len(os.listdir(os.path.join(run_dir, "checkpoints"))
                                          if os.path.isdir(os.path.join(run_dir, "checkpoints")) else []) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None
    state, _ = load_state(ckpt, 0)
    from acl_dist.config import load_recipe

    trainer = Trainer(load_recipe(os.path.join(REPO, "recipes/digits/acl_ae.yaml"), ov))
    assert trainer.step == state["step"] > 0
    for name, opt in trainer.updates.optimizers.items():
        saved = state["optimizers"][name]["state"]
        assert opt.state_dict()["state"][0]["step"] == saved[0]["step"]
        assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], saved[0]["exp_avg"])
    assert all(torch.equal(trainer.ema.state_dict()[n][k], v)
               for n in state["ema"] for k, v in state["ema"][n].items())


def test_sigusr1_checkpoints_and_exits_zero(tmp_path):
    ov = tiny_overrides("gan", str(tmp_path), "train.steps=100000")
    proc = subprocess.Popen([PYTHON, "-m", "acl_dist", "train", "recipes/digits/gan.yaml", *ov], cwd=REPO,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    run_dir = os.path.join(str(tmp_path), "gan")
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped by signal" in out
    state, _ = load_state(latest_checkpoint(run_dir), 0)
    assert state["step"] > 0
