"""Training runs for the reproduction reports: many small `acl_dist train` processes, a few at a time.

Why subprocesses: each run gets its own interpreter (clean RNG, one thread each with OMP_NUM_THREADS=1), so
``--jobs`` runs share the CPU cores without fighting over threads, and a crashed run does not take the
report down. Runs resume (``run.resume: auto``), so an interrupted `acl-dist repro` picks up where it was.

Runs are shared by what they compute, not by name: a job whose resolved recipe (everything but the run's name
and place and the progress/device switches) equals that of a finished run under another name is that run, and
its directory becomes a symbolic link to it (Table 1's ACL rows are the ablation's runs of the attachment the
recipes use; a lazy-penalty row at the recipes' own k is Table 1's run). A job whose own directory holds a run
of other settings (a recipe default moved since) stops the report naming the keys that differ, instead of
reporting stale numbers.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from tqdm import tqdm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


QUIET = {"on": False}  # `acl-dist repro --quiet`: no progress bars


class ReproError(RuntimeError):
    """A training run of a report failed; the message names the run and its log."""


@dataclass
class Job:
    name: str  # run name, unique within the report
    recipe: str  # path relative to the repository
    overrides: list[str] = field(default_factory=list)
    then: str = ""  # a task of repro.run_job.AFTER_TRAINING run on the run directory after training, in the
    # training process: not part of what the run computes, so not of its fingerprint

    def run_dir(self, runs_root: str) -> str:
        return os.path.join(runs_root, self.name)


NOT_COMPUTED = {"run": ("name", "out_dir", "resume"), "train": ("progress", "tensorboard"), "launch": ("device",),
                "log": ("trackers", "project", "mlflow_uri", "wandb_mode")}


def fingerprint(data: dict) -> dict:
    """What a run computes: its resolved recipe as plain data, without its name and place and the switches
    that change no number (``NOT_COMPUTED``); the seed stays."""
    data = {k: dict(v) for k, v in data.items()}
    for section, keys in NOT_COMPUTED.items():
        for key in keys:
            data.get(section, {}).pop(key, None)
    return data


def job_fingerprint(job: Job) -> dict:
    from acl_dist.config import load_recipe, to_dict

    return fingerprint(to_dict(load_recipe(os.path.join(REPO, job.recipe), job.overrides)))


_SAVED: dict[tuple, dict] = {}  # (recipe.yaml's path, mtime, size) -> its fingerprint: a report plans ten times
# over the same few hundred run directories


def saved_fingerprint(run_dir: str) -> dict | None:
    """The fingerprint of the run in ``run_dir`` (its saved resolved recipe), None when there is none."""
    from acl_dist.config import read_yaml, recipe_from_dict, to_dict

    path = os.path.join(run_dir, "recipe.yaml")
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
    if key not in _SAVED:
        with open(path) as f:
            _SAVED[key] = fingerprint(to_dict(recipe_from_dict(read_yaml(f), strict=False)))
    return copy.deepcopy(_SAVED[key])


def finished(run_dir: str) -> bool:
    """The run holds a complete checkpoint at its own ``train.steps``."""
    saved = saved_fingerprint(run_dir)
    if saved is None:
        return False
    final = os.path.join(run_dir, "checkpoints", f"step-{saved['train']['steps']:08d}", "COMPLETE")
    return os.path.isfile(final)


def _differences(a: dict, b: dict) -> list[str]:
    return [f"{section}.{key} {a[section].get(key)!r} -> {b[section].get(key)!r}"
            for section in sorted(a) for key in sorted(set(a[section]) | set(b.get(section, {})))
            if a[section].get(key) != b.get(section, {}).get(key)]


def _finished_runs(runs_root: str) -> dict[str, str]:
    """{fingerprint as text: run directory} of every finished run under ``runs_root`` (links excluded)."""
    out: dict[str, str] = {}
    if not os.path.isdir(runs_root):
        return out
    for name in sorted(os.listdir(runs_root)):
        path = os.path.join(runs_root, name)
        if not os.path.islink(path) and os.path.isdir(path) and finished(path):
            out.setdefault(repr(saved_fingerprint(path)), path)
    return out


def plan(jobs: list[Job], runs_root: str) -> tuple[list[Job], dict[str, str]]:
    """(jobs to train, {job name: the run directory it shares}). Raises ReproError for a run directory that
    holds a run of other settings."""
    done, to_train, shares, pending = _finished_runs(runs_root), [], {}, {}
    for job in jobs:
        key = repr(fp := job_fingerprint(job))
        own = job.run_dir(runs_root)
        if os.path.lexists(own):
            saved = saved_fingerprint(own)
            if saved is not None and saved != fp:
                raise ReproError(f"{own} holds a run of other settings ({'; '.join(_differences(saved, fp)[:4])}): "
                                 "a recipe default moved since it was trained; move it away and run the report again")
            if not finished(own):
                to_train.append(job)  # resumes where it stopped
            pending.setdefault(key, own)
        elif key in done or key in pending:
            shares[job.name] = done.get(key) or pending[key]
        else:
            to_train.append(job)
            pending[key] = own
    return to_train, shares


def _link(name: str, target: str, runs_root: str) -> None:
    """``runs_root/name`` becomes a relative link to the run it shares."""
    os.symlink(os.path.relpath(target, runs_root), os.path.join(runs_root, name))


def _run_one(job: Job, runs_root: str, device: str = "cpu") -> str:
    run_dir = job.run_dir(runs_root)
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(run_dir, "train.log")
    start = ["-m", "repro.run_job", run_dir, job.then] if job.then else ["-m", "acl_dist", "train"]
    cmd = [sys.executable, *start, os.path.join(REPO, job.recipe),
           f"run.out_dir={runs_root}", f"run.name={job.name}", "train.progress=false", f"launch.device={device}",
           *job.overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "ACL_DIST_LAUNCHED"):
        env.pop(key, None)
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        code = subprocess.call(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise ReproError(f"run {job.name} failed with exit code {code}; see {log_path}")
    return run_dir


def run_jobs(jobs: list[Job], runs_root: str, parallel: int, what: str, device: str = "cpu") -> dict[str, str]:
    """Train every job not trained yet (``parallel`` at a time), link those that share another's run; returns
    {name: run_dir}. Raises ReproError on failure.

    ``device``: cpu (one thread per run), or cuda: ``parallel`` runs share the one visible GPU (small nets leave
    most of it idle, so a grid of runs trains in about the time of one)."""
    to_train, shares = plan(jobs, runs_root)
    done: dict[str, str] = {}
    errors: list[str] = []
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        futures = {pool.submit(_run_one, job, runs_root, device): job for job in to_train}
        for future in tqdm(as_completed(futures), total=len(to_train), desc=what, unit="run",
                           disable=True if QUIET["on"] else None):  # None: off when stderr is not a terminal
            job = futures[future]
            try:
                done[job.name] = future.result()
            except ReproError as err:
                errors.append(str(err))
    if errors:
        raise ReproError("; ".join(errors))
    for name, target in shares.items():
        _link(name, target, runs_root)
    return {job.name: job.run_dir(runs_root) for job in jobs}


def default_parallel() -> int:
    return max(1, min(4, os.cpu_count() or 1))
