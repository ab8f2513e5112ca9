"""`acl-dist submit`: render slurm/train.sbatch.template for N nodes x G GPUs and hand it to ``sbatch``.

The template stays a thin, environment-driven shell script; everything a user types goes through here
first, where it is checked and shell-quoted. Two markers in the template are filled:

- ``@ACL_DIST_SBATCH@``: the ``#SBATCH`` lines (nodes, GPUs, time, signal, log file, extra options);
- ``@ACL_DIST_ENV@``: the ``ACL_DIST_*`` values the script body reads, and ``ACL_DIST_ARGS``, the bash
  array of what follows ``accelerate launch <rendezvous flags>`` on every node (by default
  ``-m acl_dist train RECIPE [overrides]``).

Usage: ``acl-dist submit RECIPE [key=value ...] --nodes N --gpus-per-node G --time T [--partition P]
[--cpu] [--dry-run]``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "slurm" / "train.sbatch.template"
SBATCH_MARKER = "@ACL_DIST_SBATCH@"
ENV_MARKER = "@ACL_DIST_ENV@"


class SubmitError(RuntimeError):
    """A job could not be rendered or submitted; the message says why."""


def _check_text(name: str, value: str) -> str:
    """Reject values that could end a line of the script: a newline would start a new #SBATCH or shell line."""
    if not isinstance(value, str):
        raise SubmitError(f"{name}: expected a string, got {value!r}")
    if any(ch in value for ch in "\n\r\0"):
        raise SubmitError(f"{name}: newlines and NUL characters are not allowed: {value!r}")
    return value


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SubmitError(f"{name}: expected a positive integer, got {value!r}")
    return value


def _sbatch_lines(nodes: int, gpus_per_node: int, time: str, partition: str | None, job_name: str, cpu: bool,
                  signal_seconds: int, output: str, extra_sbatch: Sequence[str]) -> list[str]:
    """#SBATCH lines. sbatch reads them with shell-like quoting, so shlex.quote keeps spaces and quotes intact."""
    opts = [f"--job-name={job_name}", f"--nodes={nodes}", f"--time={time}", f"--output={output}",
            # B: signals only the batch shell, whose trap forwards to the trainers and then requeues.
            f"--signal=B:USR1@{signal_seconds}"]
    opts.append(f"--cpus-per-task={gpus_per_node}" if cpu else f"--gpus-per-node={gpus_per_node}")
    if partition:
        opts.append(f"--partition={partition}")
    for i, opt in enumerate(extra_sbatch):
        _check_text(f"extra_sbatch[{i}]", opt)
        if not opt.startswith("-"):
            raise SubmitError(f"extra_sbatch[{i}]: expected an sbatch option such as --account=NAME, got {opt!r}")
        opts.append(opt)
    return [f"#SBATCH {shlex.quote(opt)}" for opt in opts]


def _launch_args(recipe_path: str, overrides: Sequence[str], nodes: int, gpus_per_node: int,
                 accelerate_config: str | None, command: Sequence[str] | None) -> list[str]:
    """What follows `accelerate launch --num_machines .. --machine_rank .. --main_process_ip ..` on each node."""
    args: list[str] = []
    if accelerate_config:
        args += ["--config_file", accelerate_config]
    else:
        # Stated, so accelerate does not fill them in from ~/.cache/huggingface/accelerate or warn about them.
        args += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    if nodes * gpus_per_node > 1:
        # The torchrun launcher; with ACCELERATE_USE_CPU=1 it runs on gloo (`--cpu` would start one process).
        args.append("--multi_gpu")
    args += list(command) if command is not None else ["-m", "acl_dist", "train", recipe_path, *overrides]
    return args


def _env_lines(python: str, gpus_per_node: int, cpu: bool, requeue: bool, port: int | None,
               launch_args: Sequence[str]) -> list[str]:
    lines = [
        f"export ACL_DIST_PYTHON={shlex.quote(python)}",
        f"export ACL_DIST_PROCS_PER_NODE={gpus_per_node}",
        f"export ACL_DIST_CPU={int(cpu)}",
        f"export ACL_DIST_REQUEUE={int(requeue)}",
    ]
    if port is not None:
        lines.append(f"export ACL_DIST_PORT={port}")
    lines.append("ACL_DIST_ARGS=(" + " ".join(shlex.quote(a) for a in launch_args) + ")")
    return lines


def render_sbatch(recipe_path: str, overrides: Sequence[str] = (), nodes: int = 1, gpus_per_node: int = 1,
                  time: str = "01:00:00", partition: str | None = None, job_name: str | None = None,
                  cpu: bool = False, signal_seconds: int = 120, extra_sbatch: Sequence[str] = (), *,
                  output: str | None = None, port: int | None = None, accelerate_config: str | None = None,
                  command: Sequence[str] | None = None, python: str | None = None, requeue: bool = True,
                  template: str | os.PathLike | None = None) -> str:
    """The sbatch script text for one training job.

    Args:
        recipe_path, overrides: what `acl_dist train` runs on every node (ignored when ``command`` is given).
        nodes, gpus_per_node: the job runs nodes * gpus_per_node processes; with ``cpu`` the second is the
            number of CPU processes per node (gloo) and is requested as --cpus-per-task.
        time: SLURM time limit (``HH:MM:SS``, ``MM``, ``D-HH``...), passed to sbatch as it is.
        signal_seconds: USR1 reaches the trainers this many seconds before the limit; leave enough for one
            step and a checkpoint (SLURM may deliver it up to a minute early or late).
        extra_sbatch: more sbatch options, one per item (``--account=NAME``, ``--exclusive``).
        output: log file pattern (default ``slurm-%x-%j.out``); requeued runs append to it.
        port: rendezvous port (default: derived from the job id inside the job).
        accelerate_config: accelerate config file (launch/*.yaml); the rendezvous flags still override it.
        command: replaces ``-m acl_dist train RECIPE [overrides]`` (a script and its arguments, or
            ``-m module ...``): tests use it to run a small payload through the real template.
        python: interpreter on the nodes (default: this one, so a virtual environment carries over).
        requeue: requeue after the trainers exit 0 on USR1.
    """
    nodes = _check_positive("nodes", nodes)
    gpus_per_node = _check_positive("gpus_per_node", gpus_per_node)
    signal_seconds = _check_positive("signal_seconds", signal_seconds)
    if port is not None and not (isinstance(port, int) and 1024 <= port <= 65535):
        raise SubmitError(f"port: expected an integer in 1024..65535, got {port!r}")
    texts = {"recipe_path": recipe_path, "time": time, "partition": partition or "", "output": output or "",
             "accelerate_config": accelerate_config or "", "python": python or "", "job_name": job_name or ""}
    for name, value in texts.items():
        _check_text(name, value)
    for name, values in (("overrides", overrides), ("command", command or ())):
        for i, value in enumerate(values):
            _check_text(f"{name}[{i}]", value)
    if not time.strip():
        raise SubmitError("time: a time limit is required, e.g. 04:00:00")
    job_name = job_name or Path(recipe_path).stem or "acl-dist"

    sbatch = _sbatch_lines(nodes, gpus_per_node, time, partition, job_name, cpu, signal_seconds,
                           output or "slurm-%x-%j.out", extra_sbatch)
    launch_args = _launch_args(recipe_path, overrides, nodes, gpus_per_node, accelerate_config, command)
    env = _env_lines(python or sys.executable, gpus_per_node, cpu, requeue, port, launch_args)
    text = Path(template or TEMPLATE).read_text()
    for marker in (SBATCH_MARKER, ENV_MARKER):
        if text.count(marker) != 1:
            raise SubmitError(f"template {template or TEMPLATE} must hold {marker} exactly once")
    return text.replace(SBATCH_MARKER, "\n".join(sbatch)).replace(ENV_MARKER, "\n".join(env))


def submit(script_text: str, sbatch: str = "sbatch") -> str:
    """Submit a script through ``sbatch --parsable`` (script on stdin); returns the job id."""
    exe = shutil.which(sbatch)
    if exe is None:
        raise SubmitError(f"{sbatch} not found: is this a SLURM login node? (--dry-run prints the script)")
    proc = subprocess.run([exe, "--parsable"], input=script_text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SubmitError(f"sbatch failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    job_id = proc.stdout.strip().split(";")[0]  # --parsable prints "jobid" or "jobid;cluster"
    if not job_id:
        raise SubmitError(f"sbatch printed no job id: {proc.stdout!r} {proc.stderr!r}")
    return job_id


def _check_recipe(recipe: str, overrides: Sequence[str]) -> str | None:
    """An error message when the recipe does not load, so a bad recipe fails here and not on the cluster."""
    if not os.path.isfile(recipe):
        return f"recipe: file not found: {recipe}"
    try:
        from acl_dist.config import ConfigError, load_recipe
    except ImportError as err:
        print(f"acl-dist submit: warning: recipe not validated ({err})", file=sys.stderr)
        return None
    try:
        load_recipe(recipe, list(overrides))
    except ConfigError as err:
        return str(err)
    return None


def run_submit(args: argparse.Namespace) -> int:
    """The `submit` sub-command: 0 submitted (or printed), 2 bad recipe or options, 1 sbatch failed."""
    problem = _check_recipe(args.recipe, args.overrides)
    if problem:
        print(f"acl-dist: error: {problem}", file=sys.stderr)
        return 2
    try:
        script = render_sbatch(args.recipe, args.overrides, args.nodes, args.gpus_per_node, args.time,
                               args.partition, args.job_name, args.cpu, args.signal_seconds, args.sbatch,
                               output=args.output, port=args.port, accelerate_config=args.accelerate_config)
    except SubmitError as err:
        print(f"acl-dist: error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(script, end="")
        return 0
    try:
        job_id = submit(script)
    except SubmitError as err:
        print(f"acl-dist: error: {err}", file=sys.stderr)
        return 1
    print(f"submitted job {job_id}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add `submit` to the `acl-dist` sub-commands."""
    p = subparsers.add_parser("submit", help="render the SLURM job for a recipe and sbatch it",
                              description="Render slurm/train.sbatch.template for a recipe and submit it with "
                                          "sbatch. The job requeues itself on USR1 and resumes (run.resume: auto).")
    p.add_argument("recipe", help="YAML recipe")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, passed to `acl_dist train`")
    p.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
    p.add_argument("--gpus-per-node", type=int, default=1,
                   help="GPUs (processes) per node; with --cpu, CPU processes per node (default 1)")
    p.add_argument("--time", required=True, help="time limit, e.g. 04:00:00")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--job-name", help="job name (default: the recipe's file name)")
    p.add_argument("--cpu", action="store_true", help="CPU-only job: gloo, ACCELERATE_USE_CPU=1")
    p.add_argument("--signal-seconds", type=int, default=120,
                   help="send USR1 (checkpoint + requeue) this many seconds before the limit (default 120)")
    p.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="extra sbatch option, repeatable: --sbatch=--account=NAME")
    p.add_argument("--output", help="log file pattern (default slurm-%%x-%%j.out)")
    p.add_argument("--port", type=int, help="rendezvous port (default: derived from the job id)")
    p.add_argument("--accelerate-config", help="accelerate config file, e.g. launch/deepspeed_zero2.yaml")
    p.add_argument("--dry-run", action="store_true", help="print the script, submit nothing")
    p.set_defaults(func=run_submit)
    return p
