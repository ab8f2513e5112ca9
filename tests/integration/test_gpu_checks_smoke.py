"""benchmarks/gpu.sh in smoke mode (CPU, tiny sizes): the script a lent GPU runs, run through before GPU time.

The steps with the most plumbing: the largest-batch probe (a child process) with two layouts against one plain
loop, the 256 px recipe trained on shards that ``acl-dist shard`` writes, its files copied out flat, and two
processes over gloo (on the GPU: sharing it)."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import PYTHON, REPO


def test_gpu_checks_smoke_runs_the_probe_and_the_training_and_returns_flat_files(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "GPU_CHECK_SMOKE": "1", "PYTHON": PYTHON, "OUT": str(out)}
    only = "step256-max,train256,two-proc-gpu,augment"
    proc = subprocess.run([os.path.join(REPO, "benchmarks", "gpu.sh"), "--only", only],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.txt").read_text()
    for line in ("largest batch that fits: 4", "speed-up ours[train.channels_last=always] vs plain",
                 "fid ", "-> train256-eval.csv", "-> train256-samples-last.png",
                 "process group gloo", "largest rank divergence 0.0", "ours (wavelet, matrices)",
                 "reference (wavelet, convolutions)"):
        assert line in summary, summary
    files = sorted(os.listdir(out))
    assert len(files) <= 8 and all((out / f).is_file() for f in files), files
    assert {"gpu-checks.log", "train256-eval.png", "train256-metrics.jsonl"} <= set(files)
    assert len((out / "train256-eval.csv").read_text().splitlines()) == 1 + 4  # header, 4 evaluations
