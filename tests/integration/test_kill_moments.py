"""SIGKILL at the moments a user is least likely to test, with 2 processes and 2 data workers each over real
shards: inside an evaluation, and halfway through the first checkpoint's write. Either way the run directory
is free at once, a plain retry resumes from the last complete checkpoint (or from the start), and the run ends
bit-identical to one never killed, its evaluation history without a gap or a repeat. And a run directory on a
path with spaces and non-ASCII characters trains, evaluates and resumes like any other."""

from __future__ import annotations

import csv
import os
import subprocess

import pytest

from tests.conftest import PYTHON, REPO
from tests.integration.test_multiprocess_training import ACCELERATE, _env
from tests.integration.test_stream_resume import (
    RECIPE,
    _assert_same_training_state,
    _overrides,
    _state,
)
from tests.unit.test_stream import make_shards

STEPS = 6
EXTRA = ("train.ckpt_every=2", "train.keep_checkpoints=100", "eval.every=2", "eval.num_samples=16",
         "eval.batch_size=8", "eval.feature_extractor=digits-cnn")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_shards(str(tmp_path_factory.mktemp("shards")), [8] * 6)


def _launch(script: list[str], out: str, name: str, manifest: str, check: bool = True) -> subprocess.Popen:
    cmd = [*ACCELERATE, "--multi_gpu", "--num_processes", "2", *script, "train", RECIPE,
           *_overrides(out, name, STEPS, manifest, 2, *EXTRA)]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def straight(manifest, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("straight"))
    _launch(["-m", "acl_dist"], out, "straight", manifest)
    return os.path.join(out, "straight")


def _eval_steps(run_dir: str) -> list[int]:
    with open(os.path.join(run_dir, "eval.csv")) as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize("moment", ["eval", "checkpoint"])
def test_sigkill_inside_an_evaluation_or_the_first_checkpoint_resumes_bit_identical(moment, manifest, straight,
                                                                                     tmp_path):
    out = str(tmp_path)
    killed = _launch([os.path.join(REPO, "tests", "integration", "kill_worker.py"), moment], out, "killed", manifest,
                     check=False)
    assert killed.returncode != 0  # it died where it was meant to
    run_dir = os.path.join(out, "killed")
    complete = sorted(n for n in os.listdir(os.path.join(run_dir, "checkpoints")) if n.startswith("step-"))
    assert complete == (["step-00000002"] if moment == "eval" else [])  # the half-written one never counts
    _launch(["-m", "acl_dist"], out, "killed", manifest)  # a plain retry, at once
    _assert_same_training_state(_state(straight), _state(run_dir))
    assert _eval_steps(run_dir) == _eval_steps(straight) == [2, 4, 6]


def test_a_run_directory_with_spaces_and_non_ascii_characters_trains_and_resumes(manifest, tmp_path):
    out = str(tmp_path / "runs of Zoë" / "日本 test")
    for steps in (3, 5):  # the second resumes from the first one's final checkpoint
        proc = subprocess.run([PYTHON, "-m", "acl_dist", "train", RECIPE,
                               *_overrides(out, "run é", steps, manifest, 2, *EXTRA)], cwd=REPO, env=_env(),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = os.path.join(out, "run é")
    assert "resumed from" in proc.stderr and "step-00000003" in proc.stderr
    assert _state(run_dir)["step"] == 5 and _eval_steps(run_dir) == [2, 4]
    assert os.path.isfile(os.path.join(run_dir, "samples", "step-00000005.png"))
