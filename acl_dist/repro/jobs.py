"""Training runs for the reproduction reports: many small `acl_dist train` processes, a few at a time.

Why subprocesses: each run gets its own interpreter (clean RNG, one thread each with OMP_NUM_THREADS=1), so
``--jobs`` runs share the CPU cores without fighting over threads, and a crashed run does not take the
report down. Runs resume (``run.resume: auto``), so an interrupted `acl-dist repro` picks up where it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from tqdm import tqdm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ReproError(RuntimeError):
    """A training run of a report failed; the message names the run and its log."""


@dataclass
class Job:
    name: str  # run name, unique within the report
    recipe: str  # path relative to the repository
    overrides: list[str] = field(default_factory=list)

    def run_dir(self, runs_root: str) -> str:
        return os.path.join(runs_root, self.name)


def finished(job: Job, runs_root: str) -> bool:
    """The run holds a complete checkpoint at its ``train.steps`` (reports share runs: train each once)."""
    steps = [o.split("=", 1)[1] for o in job.overrides if o.startswith("train.steps=")]
    if not steps:
        return False
    final = os.path.join(job.run_dir(runs_root), "checkpoints", f"step-{int(steps[-1]):08d}", "COMPLETE")
    return os.path.isfile(final)


def _run_one(job: Job, runs_root: str) -> str:
    run_dir = job.run_dir(runs_root)
    if finished(job, runs_root):
        return run_dir
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(run_dir, "train.log")
    cmd = [sys.executable, "-m", "acl_dist", "train", os.path.join(REPO, job.recipe),
           f"run.out_dir={runs_root}", f"run.name={job.name}", "train.progress=false", "launch.device=cpu",
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


def run_jobs(jobs: list[Job], runs_root: str, parallel: int, what: str) -> dict[str, str]:
    """Train every job (``parallel`` at a time); returns {name: run_dir}. Raises ReproError on failure."""
    done: dict[str, str] = {}
    errors: list[str] = []
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        futures = {pool.submit(_run_one, job, runs_root): job for job in jobs}
        for future in tqdm(as_completed(futures), total=len(jobs), desc=what, unit="run"):
            job = futures[future]
            try:
                done[job.name] = future.result()
            except ReproError as err:
                errors.append(str(err))
    if errors:
        raise ReproError("; ".join(errors))
    return done


def default_parallel() -> int:
    return max(1, min(4, os.cpu_count() or 1))
