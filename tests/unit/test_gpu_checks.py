"""benchmarks/gpu_checks.py: the plan fits what the device tool returns, time boxes hold, steps end cleanly.

GPU time is scarce (one run of a few minutes), so the script that spends it is checked here, on the CPU."""

from __future__ import annotations

import os
import re
import sys

import pytest
from PIL import Image

from tests.unit.test_benchmarks import load_benchmark


@pytest.fixture(scope="module")
def checks():
    return load_benchmark("gpu_checks")


def _settings(checks, tmp_path, **kw):
    return checks.Settings(out=str(tmp_path), scratch=str(tmp_path / "scratch"), **kw)


def test_the_gpu_plan_runs_the_issue_steps_in_order_and_returns_few_flat_files(checks, tmp_path) -> None:
    steps = checks.plan(_settings(checks, tmp_path))
    names = [st.name for st in steps]
    assert len(set(names)) == len(names)
    order = ["preflight", "cuda-tests", "step128", "step256", "step256-max", "memory", "shard256", "train256"]
    assert [n for n in names if n in order] == order
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in names)
    # the device tool returns at most 8 files: the log, the summary and what the training run collects
    collected = ["eval.csv", "eval.png", "metrics.jsonl", "samples-first.png", "samples-last.png"]
    assert 2 + len(collected) <= 8
    bench = {st.name: " ".join(st.argv) for st in steps if "train_step.py" in " ".join(st.argv)}
    for name in ("step128", "step256", "step256-max", "step128-max"):
        assert "--device cuda --precision bf16" in bench[name] and "train.cuda_graphs=always" in bench[name]
        assert "train.channels_last=never" in bench[name] and "train.channels_last=always" in bench[name]
    assert "--batch max" in bench["step256-max"] and "--resolution 256" in bench["step256-max"]
    train = " ".join(next(st for st in steps if st.name == "train256").argv)
    assert "recipes/acl_gan_gp_ffhq256.yaml" in train and "eval.feature_extractor=digits-cnn" in train
    assert "train.steps=300" in train and "eval.every=50" in train and "launch.device=cuda" in train


def test_smoke_plan_stays_on_the_cpu_at_small_sizes(checks, tmp_path) -> None:
    s = _settings(checks, tmp_path, smoke=True, train_steps=4)
    for st in checks.plan(s):
        line = " ".join(st.argv)
        assert st.cuda_only or not re.search(r"--device cuda|launch\.device=cuda|cuda_graphs=always", line), line
        assert not re.search(r"--resolution (64|128|256|512)\b", line), line
        assert "--batch 64" not in line


def test_only_brings_what_a_step_needs_and_reserves_hold_time_for_training(checks, tmp_path) -> None:
    steps = checks.plan(_settings(checks, tmp_path))
    assert [st.name for st in checks.selected(steps, ["train256"])] == ["gpu", "preflight", "shard256", "train256"]
    with pytest.raises(SystemExit, match="no step named nope"):
        checks.selected(steps, ["nope"])
    i = [st.name for st in steps].index("step256-max")
    reserved = sum(st.reserve_s for st in steps[i + 1:])
    assert reserved >= 150
    assert checks.box_for(steps, i, 200.0) == 200.0 - reserved  # squeezed to leave the training its time
    assert checks.box_for(steps, i, 10_000.0) == steps[i].box_s


@pytest.mark.slow  # starts processes
def test_a_step_past_its_box_is_stopped_with_its_process_group(checks, tmp_path) -> None:
    child = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);" \
            "print('started', flush=True); time.sleep(60)"
    step = checks.Step("sleepy", "sleeps", [sys.executable, "-c", child], 60)
    with open(tmp_path / "log", "a") as log:
        status, output = checks.run_command(step, 2.0, log)
    assert status == "timed out after 2 s" and "started" in output


def test_failed_steps_and_skips_are_summarised(checks, tmp_path) -> None:
    s = _settings(checks, tmp_path)
    step = checks.Step("fails", "exits 3", [sys.executable, "-c", "print('Error: bad'); raise SystemExit(3)"], 30)
    with open(tmp_path / "log", "a") as log:
        result = checks.run_step(step, 30.0, s, log)
    assert result.status == "failed (exit 3)" and result.kept == ["Error: bad"]
    needs = checks.Step("after", "needs fails", ["true"], 30, needs="fails")
    assert checks.skip_reason(needs, s, {"fails": result}) == "fails did not succeed"
    text = checks.write_summary(s, [result])
    assert "failed (exit 3)" in text and open(os.path.join(s.out, "summary.txt")).read() == text


def test_a_grid_larger_than_the_device_tool_returns_is_shrunk(checks, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(checks, "MAX_FILE", 20_000)
    src = tmp_path / "grid.png"
    Image.effect_noise((256, 256), 64).convert("RGB").save(src)
    assert os.path.getsize(src) > 20_000
    checks.copy_within_limit(str(src), str(tmp_path / "copy.png"))
    assert os.path.getsize(tmp_path / "copy.png") <= 20_000
