"""The package as a user installs it: a wheel built from the checkout, installed into a fresh virtual environment
that reuses this environment's torch (a path entry, no second download), then run from another directory with
a shipped recipe by name."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

from tests.conftest import PYTHON, REPO


def _build_wheel(tmp_path) -> str:
    """The wheel of a copy of the checkout's package files (the build leaves nothing in the checkout)."""
    source = tmp_path / "src"
    for part in ("acl_dist", "recipes"):
        shutil.copytree(os.path.join(REPO, part), source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "README.md"):
        shutil.copy(os.path.join(REPO, name), source / name)
    proc = subprocess.run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = glob.glob(str(tmp_path / "dist" / "acl_dist-*.whl"))
    return wheel


def test_wheel_installs_beside_an_existing_torch_and_trains_a_shipped_recipe_from_elsewhere(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "acl_dist/recipes/digits/gan.yaml" in names and "acl_dist/eval/weights/mnist_cnn.pt" in names
    assert not any(n.startswith("repro/") for n in names)  # the reports' code stays in the checkout
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "project-packages.pth"), "w") as f:  # torch & co. from this environment
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    proc = subprocess.run([PYTHON, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q",
                           wheel], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli = str(venv / "bin" / "acl-dist")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    help_text = subprocess.run([cli, "--help"], cwd=elsewhere, capture_output=True, text=True, env=env, timeout=120)
    assert help_text.returncode == 0 and "train" in help_text.stdout
    where = subprocess.run([python, "-c", "import acl_dist; print(acl_dist.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, env=env, timeout=120).stdout
    assert where.startswith(site), where  # the installed wheel, not the checkout
    proc = subprocess.run([cli, "train", "digits/gan", "train.steps=2", "train.log_every=1", "train.progress=false",
                           "log.trackers=[]", "run.out_dir=runs", "launch.device=cpu", "eval.every=0"],
                          cwd=elsewhere, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "finished at step 2" in proc.stdout
    assert os.path.isfile(elsewhere / "runs" / "digits-gan" / "metrics.jsonl")
