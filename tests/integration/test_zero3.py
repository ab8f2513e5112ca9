"""DeepSpeed ZeRO-3 as users run it: every method it accepts trains on 2 gloo processes, checkpoints whole
weights, resumes bit-exactly, and `acl-dist sample` / `acl-dist eval` read its checkpoint; every method it
cannot train (a gradient penalty's double backward) is refused before any process starts, in one line."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest
import torch

from acl_dist.config import ConfigError, load_recipe
from acl_dist.methods.registry import build_method, method_class, method_names
from tests.conftest import PYTHON, REPO, tiny_overrides
from tests.integration.test_multiprocess_training import ACCELERATE, _env

ZERO3 = "launch/deepspeed/zero3.json"
TOOLS = ("import json, sys\nfrom acl_dist.cli import main\n"  # each command's exit status, in order, as JSON
         "print(json.dumps([main(argv) for argv in json.loads(sys.argv[1])]))")


def _recipe_file(method: str) -> str:
    """The method's digits recipe, else its MNIST one (R3GAN ships for MNIST and high resolution only)."""
    for folder in ("digits", "mnist"):
        path = os.path.join(REPO, f"recipes/{folder}/{method}.yaml")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"no digits or mnist recipe for {method}")


def _recipe(method: str, out_dir: str, *extra: str):
    return load_recipe(_recipe_file(method), tiny_overrides(method, out_dir, f"launch.deepspeed={ZERO3}", *extra))


def _accepted_and_refused(out_dir: str) -> tuple[list[str], list[str]]:
    accepted, refused = [], []
    for method in method_names():
        try:
            _recipe(method, out_dir)
            accepted.append(method)
        except ConfigError as err:
            assert err.path == "launch.deepspeed" and "DeepSpeed issue #3539" in str(err), (method, err)
            refused.append(method)
    return accepted, refused


def test_zero3_refuses_exactly_the_penalised_methods(tmp_path):
    accepted, refused = _accepted_and_refused(str(tmp_path))
    assert refused == ["acl_gan_gp", "acl_r3gan", "arae", "r3gan", "wgan_gp"]  # R3GAN: R1 + R2
    for method in method_names():
        cfg = _recipe(method, str(tmp_path)).method if method in accepted else None
        assert cfg is None or not method_class(method).penalty_keys(cfg)
    with pytest.raises(ConfigError, match="method.gp_weight"):  # an R1 penalty on the plain GAN too
        _recipe("gan", str(tmp_path), "method.gp_weight=1", "method.gp_kind=r1", "model.d_norm=layer")
    with pytest.raises(ConfigError, match="method.code_gp_weight"):  # and a Wasserstein code critic
        _recipe("acl_gan", str(tmp_path), "method.code_loss=wgan_gp")
    _recipe("arae", str(tmp_path), "method.code_gp_weight=0")  # without its penalty ARAE is accepted


def test_refusal_is_one_line_and_exit_2_before_any_process_starts(tmp_path):
    proc = subprocess.run([PYTHON, "-m", "acl_dist", "train", "recipes/digits/wgan_gp.yaml",
                           f"launch.deepspeed={ZERO3}", "launch.num_processes=2", f"run.out_dir={tmp_path}"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "launch.deepspeed: ZeRO-3 cannot train wgan_gp" in proc.stderr
    assert not os.path.exists(os.path.join(tmp_path, "digits-wgan_gp"))


def _state(out_dir: str, name: str) -> dict:
    path = os.path.join(out_dir, name, "checkpoints", "step-00000004", "state.pt")
    return torch.load(path, map_location="cpu", weights_only=False)


def test_every_accepted_method_trains_resumes_exactly_and_exports_whole_weights(tmp_path):
    out = str(tmp_path)
    accepted, _ = _accepted_and_refused(out)
    cmd = ACCELERATE + ["--multi_gpu", "--num_processes", "2", "tests/integration/zero3_worker.py", out, *accepted]
    env = dict(_env(), PYTHONPATH=REPO)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for method in accepted:
        straight, resumed = _state(out, f"{method}-straight"), _state(out, f"{method}-resumed")
        full = load_recipe(_recipe_file(method), tiny_overrides(method, out))
        shapes = {k: v.shape for k, v in build_method(full.method, full.model).nets.state_dict().items()}
        assert {k: v.shape for k, v in straight["nets"].items()} == shapes, method  # whole, not one rank's slice
        for key, value in straight["nets"].items():
            assert torch.equal(value, resumed["nets"][key]), f"{method} {key}"
        for net, tensors in straight["ema"].items():
            for key, value in tensors.items():
                assert torch.equal(value, resumed["ema"][net][key]), f"{method} ema {net}.{key}"
        ema_net = next(iter(straight["ema"]))
        assert any(not torch.equal(v, straight["nets"][f"{ema_net}.{k}"]) for k, v in
                   straight["ema"][ema_net].items() if v.is_floating_point()), f"{method}: the EMA averages"
    # The checkpoint serves the single-process tools: `acl-dist sample` and `acl-dist eval` of every method, through
    # the command line's own entry point, in one process (a process start per command cost this test a minute).
    commands = []
    for method in accepted:
        run, pictures, scores = (os.path.join(out, f"{method}-{what}") for what in ("straight", "pictures", "eval"))
        commands += [["sample", run, "--no-video", "--num", "16", "--out", pictures],
                     ["eval", run, "--num-samples", "64", "--out", scores]]
    tools = subprocess.run([PYTHON, "-c", TOOLS, json.dumps(commands)], cwd=REPO, env=_env(), capture_output=True,
                           text=True, timeout=600)
    assert tools.returncode == 0, tools.stderr[-3000:]
    codes = json.loads(tools.stdout.strip().splitlines()[-1])
    assert codes == [0] * len(commands), (list(zip(codes, commands)), tools.stderr[-3000:])
    for method in accepted:
        pictures, scores = (os.path.join(out, f"{method}-{what}") for what in ("pictures", "eval"))
        assert os.path.getsize(os.path.join(pictures, "samples.png")) > 0
        with open(os.path.join(scores, "eval.json")) as f:
            report = json.load(f)
        assert report["step"] == 4 and math.isfinite(report["fid"]), (method, report)
