"""Real 2-process training over gloo, started the way users start it."""

from __future__ import annotations

import json
import os
import re
import subprocess

from acl_dist.training.checkpoint import latest_checkpoint, load_state
from tests.conftest import PYTHON, REPO, tiny_overrides

ACCELERATE = [PYTHON, "-m", "accelerate.commands.launch"]


def _env():
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    for key in ("WORLD_SIZE", "LOCAL_RANK", "RANK", "ACL_DIST_LAUNCHED"):
        env.pop(key, None)
    return env


def _check_run(run_dir, steps):
    lines = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    assert lines[-1]["step"] == steps
    assert all(line["rank_divergence"] == 0.0 for line in lines), "ranks hold different parameters"
    state, rng = load_state(latest_checkpoint(run_dir), 1)
    assert state["world_size"] == 2 and rng is not None  # rank 1 wrote its RNG state: two processes ran


def test_accelerate_launch_two_processes_keeps_ranks_identical(tmp_path):
    """`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m acl_dist train` with a
    batch-norm discriminator called on reals and fakes (the case DDP's broadcast_buffers breaks)."""
    ov = tiny_overrides("acl_gan", str(tmp_path), "train.steps=6", "train.log_every=2", "model.d_norm=batch")
    cmd = ACCELERATE + ["--multi_gpu", "--num_processes", "2", "-m", "acl_dist", "train",
                        "recipes/digits/acl_gan.yaml", *ov]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _check_run(os.path.join(str(tmp_path), "acl_gan"), 6)


def test_acl_dist_train_relaunches_itself_for_more_processes(tmp_path):
    """With ``launch.process_group: gloo``, the option that lets several processes share one GPU (the path
    benchmarks/gpu_checks.py's two-proc-gpu step takes on CUDA)."""
    ov = tiny_overrides("acl_gan_gp", str(tmp_path), "train.steps=4", "train.log_every=2",
                        "launch.num_processes=2", "launch.device=cpu", "launch.process_group=gloo")
    proc = subprocess.run([PYTHON, "-m", "acl_dist", "train", "recipes/digits/acl_gan_gp.yaml", *ov], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"2 processes, rank 0 on cpu(:0)?, process group gloo", proc.stderr), proc.stderr[-3000:]
    _check_run(os.path.join(str(tmp_path), "acl_gan_gp"), 4)
