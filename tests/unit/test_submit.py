"""acl_dist.submit: the rendered sbatch script, its quoting of hostile values, and the `submit` sub-command.

Quoting is checked by running the rendered lines in a real bash and sbatch-style parsing (shlex), not by
comparing strings: a value must come out exactly as it went in, and nothing in it may run.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import stat
import subprocess

import pytest

from acl_dist import submit as sub

HOSTILE = ["name=$(touch {canary})", "run.name=a b", "x='; touch {canary}; '", 'y="$HOME"', "z=`touch {canary}`",
           "w=*"]


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "tiny recipe.yaml"  # a space in the path, on purpose
    path.write_text("run:\n  name: tiny\ntrain:\n  steps: 2\n")
    return str(path)


def _sbatch_options(script: str) -> list[str]:
    """The #SBATCH options as sbatch reads them (it splits each line with shell-like quoting)."""
    return [opt for line in script.splitlines() if line.startswith("#SBATCH ")
            for opt in shlex.split(line[len("#SBATCH "):])]


def _bash_args(script: str) -> list[str]:
    """ACL_DIST_ARGS as bash sees it, evaluating only the rendered environment block."""
    env_block = "\n".join(line for line in script.splitlines()
                          if line.startswith("export ACL_DIST_") or line.startswith("ACL_DIST_ARGS="))
    proc = subprocess.run(["bash", "-c", env_block + '\nprintf "%s\\0" "${ACL_DIST_ARGS[@]}"'],
                          capture_output=True, text=True, check=True)
    return proc.stdout.split("\0")[:-1]


def test_render_default_job(recipe):
    script = sub.render_sbatch(recipe, ["train.steps=5"], nodes=2, gpus_per_node=4, time="04:00:00",
                               partition="gpu", job_name="acl", signal_seconds=90)
    assert sub.SBATCH_MARKER not in script and sub.ENV_MARKER not in script
    opts = _sbatch_options(script)
    for expected in ["--nodes=2", "--gpus-per-node=4", "--time=04:00:00", "--partition=gpu", "--job-name=acl",
                     "--signal=B:USR1@90", "--requeue", "--open-mode=append", "--ntasks-per-node=1"]:
        assert expected in opts
    assert _bash_args(script) == ["--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu",
                                  "-m", "acl_dist", "train", recipe, "train.steps=5"]
    assert "export ACL_DIST_PROCS_PER_NODE=4" in script and "export ACL_DIST_CPU=0" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)  # the whole script is valid bash


def test_sbatch_lines_come_before_the_first_command(recipe):
    # sbatch stops reading #SBATCH at the first line that is neither a comment nor blank.
    lines = sub.render_sbatch(recipe, time="10").splitlines()
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    assert max(i for i, line in enumerate(lines) if line.startswith("#SBATCH")) < first_command


def test_hostile_values_come_through_unchanged_and_never_run(recipe, tmp_path):
    canary = tmp_path / "canary"
    overrides = [h.format(canary=canary) for h in HOSTILE]
    name = "it's a \"job\" $(touch %s)" % canary
    script = sub.render_sbatch(recipe, overrides, time="10", job_name=name, partition="p q",
                               extra_sbatch=["--comment=two words; $(touch %s)" % canary])
    assert _bash_args(script)[-len(overrides) - 1:] == [recipe, *overrides]
    opts = _sbatch_options(script)
    assert f"--job-name={name}" in opts and "--partition=p q" in opts
    assert f"--comment=two words; $(touch {canary})" in opts
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert not canary.exists()


@pytest.mark.parametrize("field", ["overrides", "job_name", "time", "partition", "extra_sbatch", "command",
                                   "recipe"])
def test_newlines_are_rejected(recipe, field):
    bad = "a\n#SBATCH --nodes=100"
    kwargs = dict(time="10")
    args = [recipe, []]
    if field == "overrides":
        args[1] = [f"run.name={bad}"]
    elif field == "recipe":
        args[0] = bad
    elif field in ("extra_sbatch", "command"):
        kwargs[field] = ["--" + bad] if field == "extra_sbatch" else ["x.py", bad]
    else:
        kwargs[field] = bad
    with pytest.raises(sub.SubmitError, match="newline"):
        sub.render_sbatch(*args, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(nodes=0), "nodes"), (dict(gpus_per_node=-1), "gpus_per_node"), (dict(signal_seconds=0), "signal"),
    (dict(extra_sbatch=["exclusive"]), "sbatch option"), (dict(time=" "), "time limit"), (dict(port=80), "port"),
])
def test_bad_values_are_rejected(recipe, kwargs, match):
    kwargs.setdefault("time", "10")
    with pytest.raises(sub.SubmitError, match=match):
        sub.render_sbatch(recipe, **kwargs)


def test_cpu_job_asks_for_cpus_and_uses_the_torchrun_launcher(recipe):
    script = sub.render_sbatch(recipe, nodes=2, gpus_per_node=1, time="10", cpu=True)
    opts = _sbatch_options(script)
    assert "--cpus-per-task=1" in opts and not any(o.startswith("--gpus") for o in opts)
    assert "export ACL_DIST_CPU=1" in script
    assert "--multi_gpu" in _bash_args(script)  # `--cpu` would start one process per node


def test_single_process_job_has_no_multi_gpu_flag(recipe):
    assert "--multi_gpu" not in _bash_args(sub.render_sbatch(recipe, time="10"))


def test_command_port_config_and_output(recipe, tmp_path):
    script = sub.render_sbatch(recipe, ["ignored=1"], nodes=2, time="10", command=["payload.py", "a b"],
                               port=23456, accelerate_config="launch/deepspeed_zero2.yaml",
                               output=str(tmp_path / "log %j.out"), python="/opt/py thon/bin/python",
                               requeue=False)
    assert _bash_args(script) == ["--config_file", "launch/deepspeed_zero2.yaml", "--multi_gpu", "payload.py",
                                  "a b"]
    assert f"--output={tmp_path / 'log %j.out'}" in _sbatch_options(script)
    env = subprocess.run(["bash", "-c", "\n".join(line for line in script.splitlines() if line.startswith("export "))
                          + '\necho "$ACL_DIST_PYTHON|$ACL_DIST_PORT|$ACL_DIST_REQUEUE"'],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert env == "/opt/py thon/bin/python|23456|0"


def test_job_name_defaults_to_the_recipe_name(recipe):
    assert "--job-name=tiny recipe" in _sbatch_options(sub.render_sbatch(recipe, time="10"))


def test_template_without_its_markers_is_an_error(recipe, tmp_path):
    bad = tmp_path / "t.sbatch"
    bad.write_text("#!/bin/bash\necho hi\n")
    with pytest.raises(sub.SubmitError, match="exactly once"):
        sub.render_sbatch(recipe, time="10", template=bad)


# --- the sub-command. A stand-in `sbatch` on PATH records whether it was called; the real one runs in
# tests/integration/test_slurm.py.


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "sbatch-calls"
    exe = bindir / "sbatch"
    exe.write_text(f'#!/bin/bash\necho "$@" >> {shlex.quote(str(calls))}\ncat > {shlex.quote(str(calls))}.script\n'
                   'echo "4242;cluster"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return calls


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="acl-dist")
    sub.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_dry_run_prints_the_script_and_submits_nothing(recipe, fake_sbatch, capsys):
    rc = _cli(["submit", recipe, "run.name=$(rm -rf /)", "--nodes", "2", "--gpus-per-node", "8",
               "--time", "01:00:00", "--partition", "big", "--dry-run", "--sbatch=--account=lab"])
    out = capsys.readouterr().out
    assert rc == 0 and not fake_sbatch.exists()
    assert out.startswith("#!/bin/bash") and "--gpus-per-node=8" in _sbatch_options(out)
    assert "--account=lab" in _sbatch_options(out)
    assert _bash_args(out)[-1] == "run.name=$(rm -rf /)"


def test_submit_sends_the_script_to_sbatch_and_prints_the_job_id(recipe, fake_sbatch, capsys):
    rc = _cli(["submit", recipe, "--time", "5", "--cpu"])
    assert rc == 0
    assert "submitted job 4242" in capsys.readouterr().out
    assert fake_sbatch.read_text().split() == ["--parsable"]
    assert "export ACL_DIST_CPU=1" in (fake_sbatch.parent / "sbatch-calls.script").read_text()


def test_bad_recipe_fails_before_sbatch_with_exit_2(recipe, fake_sbatch, capsys):
    assert _cli(["submit", recipe, "no.such.key=1", "--time", "5"]) == 2
    assert "unknown key" in capsys.readouterr().err and not fake_sbatch.exists()
    assert _cli(["submit", recipe + ".missing", "--time", "5"]) == 2
    assert "file not found" in capsys.readouterr().err and not fake_sbatch.exists()


def test_bad_option_fails_with_exit_2(recipe, fake_sbatch, capsys):
    assert _cli(["submit", recipe, "--time", "5", "--nodes", "0"]) == 2
    assert "nodes" in capsys.readouterr().err and not fake_sbatch.exists()


def test_sbatch_failure_is_reported(recipe, tmp_path, monkeypatch, capsys):
    bindir = tmp_path / "failbin"
    bindir.mkdir()
    exe = bindir / "sbatch"
    exe.write_text("#!/bin/bash\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(sub.SubmitError, match="invalid partition"):
        sub.submit("#!/bin/bash\n")
    assert _cli(["submit", recipe, "--time", "5"]) == 1


def test_submit_without_sbatch_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(sub.SubmitError, match="not found"):
        sub.submit("#!/bin/bash\n")


def test_acl_dist_cli_has_the_submit_command(recipe, capsys):
    from acl_dist.cli import main

    assert main(["submit", recipe, "--time", "5", "--dry-run"]) == 0
    assert re.search(r"^#SBATCH --time=5$", capsys.readouterr().out, re.M)
