"""`acl-dist demo` (what `./run demo` runs) at a toy budget: trains, draws, and prints the digits FID."""

from __future__ import annotations

import os
import re
import subprocess

from tests.conftest import PYTHON, REPO

TOY = ["train.steps=4", "eval.every=2", "eval.num_samples=64", "model.resolution=8", "model.code_dim=4",
       "model.base_channels=4", "model.max_channels=8", "model.acl_hidden=8", "train.batch_size=8",
       "train.progress=false"]


def test_demo_trains_and_prints_its_fid(tmp_path):
    proc = subprocess.run([PYTHON, "-m", "acl_dist", "demo", f"run.out_dir={tmp_path}", *TOY], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fid = re.search(r"digits FID .* at step 4: ([0-9.]+) \(best ([0-9.]+)\)", proc.stdout)
    assert fid and float(fid.group(1)) > 0, proc.stdout
    run = os.path.join(str(tmp_path), "digits-acl_gan_gp")
    for name in ("eval.csv", "eval.png", "metrics.jsonl", "recipe.yaml", "pictures/samples.png",
                 "pictures/interpolation.png", "pictures/interpolation.mp4", "pictures/latent_walk.mp4"):
        assert os.path.isfile(os.path.join(run, name)), name
    assert "checkpoints" in proc.stdout and os.listdir(os.path.join(run, "checkpoints"))


def test_demo_with_a_bad_override_exits_2_without_a_traceback(tmp_path):
    proc = subprocess.run([PYTHON, "-m", "acl_dist", "demo", "train.steps=many"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "train.steps" in proc.stderr and "Traceback" not in proc.stderr
