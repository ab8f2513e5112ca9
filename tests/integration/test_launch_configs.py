"""launch/: every accelerate config parses, every DeepSpeed config is one DeepSpeed accepts, and the CPU form
of a 2-process launch really starts two processes in one gloo group."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(REPO, "launch")
ACCELERATE = os.path.join(os.path.dirname(sys.executable), "accelerate")
YAMLS = sorted(glob.glob(os.path.join(LAUNCH, "*.yaml")))
JSONS = sorted(glob.glob(os.path.join(LAUNCH, "deepspeed", "*.json")))

PROBE = """
import os, sys
import torch
from accelerate import Accelerator
acc = Accelerator()
t = torch.tensor([float(acc.process_index + 1)])
if acc.num_processes > 1:
    torch.distributed.all_reduce(t)
with open(os.path.join(sys.argv[1], f"rank{acc.process_index}-{os.getpid()}.txt"), "w") as f:
    f.write(f"{acc.process_index} {acc.num_processes} {t.item()} {acc.distributed_type.value}")
if torch.distributed.is_initialized():  # a gloo group left to interpreter exit can abort the process (-6)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
"""


def test_the_expected_files_exist():
    names = {os.path.basename(p) for p in YAMLS + JSONS}
    assert {"cpu_2proc.yaml", "gpu_1.yaml", "gpu_8.yaml", "multinode.yaml", "deepspeed_zero2.yaml",
            "zero1.json", "zero2.json", "zero3.json"} <= names


@pytest.mark.parametrize("path", YAMLS, ids=os.path.basename)
def test_accelerate_config_parses(path):
    from accelerate.commands.config.config_args import load_config_from_file

    with open(path) as f:
        raw = yaml.safe_load(f)
    assert isinstance(raw, dict) and "distributed_type" in raw
    config = load_config_from_file(path)  # accelerate's own reader: unknown keys or bad enums raise
    assert config.num_processes == raw["num_processes"]


def test_cpu_config_uses_the_launcher_that_starts_n_processes():
    # MULTI_CPU would go to accelerate's simple launcher, which starts one process (see launch/README.md).
    with open(os.path.join(LAUNCH, "cpu_2proc.yaml")) as f:
        raw = yaml.safe_load(f)
    assert raw["distributed_type"] == "MULTI_GPU" and raw["use_cpu"] is True and raw["num_processes"] == 2


def test_deepspeed_yaml_points_at_an_existing_zero2_json():
    with open(os.path.join(LAUNCH, "deepspeed_zero2.yaml")) as f:
        raw = yaml.safe_load(f)
    ds = raw["deepspeed_config"]
    assert ds["deepspeed_config_file"] == "launch/deepspeed/zero2.json"
    assert os.path.isfile(os.path.join(REPO, ds["deepspeed_config_file"]))
    assert ds["deepspeed_multinode_launcher"] == "standard"  # torchrun per node, not pdsh over ssh


@pytest.mark.parametrize("path", JSONS, ids=os.path.basename)
def test_deepspeed_json(path):
    with open(path) as f:
        config = json.load(f)
    stage = int(re.fullmatch(r"zero(\d)\.json", os.path.basename(path)).group(1))
    assert config["zero_optimization"]["stage"] == stage
    # torch's optimizer is passed in: a DeepSpeed "optimizer" section JIT-builds FusedAdam (about 70 s).
    assert "optimizer" not in config and "scheduler" not in config
    assert config["bf16"]["enabled"] is False and config["fp16"]["enabled"] is False
    # DeepSpeed itself rejects "auto" (TypeError); the trainer fills it from train.batch_size.
    assert config["train_micro_batch_size_per_gpu"] == "auto"


def test_deepspeed_accepts_the_json_once_the_batch_is_filled_in():
    """DeepSpeed's own config parser (not accelerate's) reads every file, in a fresh 1-process gloo group."""
    pytest.importorskip("deepspeed")
    code = (
        "import json, sys, torch.distributed as dist\n"
        "from deepspeed.runtime.config import DeepSpeedConfig\n"
        "dist.init_process_group('gloo', init_method='tcp://127.0.0.1:29731', rank=0, world_size=1)\n"
        "for path in sys.argv[1:]:\n"
        "    c = json.load(open(path)); c['train_micro_batch_size_per_gpu'] = 4\n"
        "    parsed = DeepSpeedConfig(c)\n"
        "    assert parsed.zero_optimization_stage == c['zero_optimization']['stage'], path\n"
        "    assert parsed.train_batch_size == 4, path\n"
        "print('ok', len(sys.argv) - 1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *JSONS], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"ok {len(JSONS)}" in proc.stdout


def _launch(tmp_path, *flags: str) -> list[list[str]]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([ACCELERATE, "launch", *flags, str(script), str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sorted(p.read_text().split() for p in out.iterdir())


def test_multi_gpu_flag_with_accelerate_use_cpu_starts_two_gloo_processes(tmp_path):
    ranks = _launch(tmp_path, "--multi_gpu", "--num_processes", "2", "--main_process_port", "29732")
    assert ranks == [["0", "2", "3.0", "MULTI_CPU"], ["1", "2", "3.0", "MULTI_CPU"]]


def test_cpu_2proc_config_starts_two_gloo_processes(tmp_path):
    ranks = _launch(tmp_path, "--config_file", os.path.join(LAUNCH, "cpu_2proc.yaml"),
                    "--main_process_port", "29733")
    assert ranks == [["0", "2", "3.0", "MULTI_CPU"], ["1", "2", "3.0", "MULTI_CPU"]]
