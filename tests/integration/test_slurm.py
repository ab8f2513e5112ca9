"""A real SLURM cluster (slurm/local-cluster.sh: munged, slurmctld, two slurmd "nodes" on this host) runs
`acl-dist submit` jobs: the real template, sbatch, one `accelerate launch` per node and the real trainer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from acl_dist.training.checkpoint import latest_checkpoint, load_state
from tests.conftest import PYTHON, REPO, tiny_overrides

pytestmark = pytest.mark.slurm

CLUSTER = os.path.join(REPO, "slurm", "local-cluster.sh")

# Joins the job's process group through accelerate, all-reduces, and writes what it saw. In "preempt" mode the
# first run waits for USR1 (as the trainer does: finish, checkpoint, exit 0); the requeued run just finishes.


def _run(*cmd: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """Start a private local cluster once per session (own state dir and ports); stop what it started."""
    if os.geteuid() != 0:
        pytest.skip("needs root: slurm/local-cluster.sh installs Debian's slurm and runs slurmctld/slurmd as root")
    state = str(tmp_path_factory.mktemp("slurm-state"))
    env = dict(os.environ, ACL_DIST_SLURM_DIR=state, ACL_DIST_SLURM_PORT="16917", ACL_DIST_SLURM_NODES="2")
    start = subprocess.run([CLUSTER, "start"], env=env, capture_output=True, text=True, timeout=300)
    if start.returncode == 3:  # the script's "cannot install": apt unreachable
        pytest.skip(f"slurm is not installed and could not be installed: {start.stderr.strip()}")
    assert start.returncode == 0, start.stderr
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = os.path.join(state, "slurm.conf")  # sbatch/scontrol here and in the jobs
    try:
        yield state
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        subprocess.run([CLUSTER, "stop"], env=env, capture_output=True, text=True, timeout=120)


def _job(job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict (JobState, Restarts, ExitCode...)."""
    text = _run("scontrol", "show", "job", "-o", job_id).stdout
    return dict(field.split("=", 1) for field in text.split() if "=" in field)


def _wait(what: str, predicate, timeout: float, job_id: str, log: str | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    logs = open(log).read()[-4000:] if log and os.path.exists(log) else ""
    pytest.fail(f"timed out after {timeout}s waiting for {what}; job: {_job(job_id)}\nlog:\n{logs}")


def _submit(tmp_path, steps: int, *extra: str) -> tuple[str, str, str]:
    """`acl-dist submit` a tiny 2-node CPU acl_gan_gp run; returns (job id, run dir, log file)."""
    log = str(tmp_path / "job-%j.out")
    overrides = tiny_overrides("acl_gan_gp", str(tmp_path), f"train.steps={steps}", *extra)
    cmd = [PYTHON, "-m", "acl_dist", "submit", "recipes/digits/acl_gan_gp.yaml", *overrides, "--cpu",
           "--nodes", "2", "--gpus-per-node", "1", "--time", "5", "--signal-seconds", "60", "--output", log]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.split("submitted job")[1].strip()
    return job_id, os.path.join(str(tmp_path), "acl_gan_gp"), log.replace("%j", job_id)


def _metrics(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.endswith("\n")]


def _release(job_id: str, log: str) -> None:
    """Start a requeued job now rather than after SLURM's ~120 s begin-time delay.

    Not too early: slurmd revokes the old run's credential with one-second resolution, and a run started in
    that same second dies as "Killing non-startable batch job: Job credential revoked" (seen here)."""

    def pending_again():
        job = _job(job_id)
        return job.get("JobState") == "PENDING" and job.get("Restarts") == "1"

    _wait("the job to be requeued (PENDING, Restarts=1)", pending_again, 90, job_id, log)
    time.sleep(2)
    _run("scontrol", "update", f"jobid={job_id}", "StartTime=now")


def _finished(job_id: str) -> str | None:
    state = _job(job_id).get("JobState")
    return state if state in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"} else None


def test_two_node_training_job_trains_in_one_process_group(slurm_cluster, tmp_path):
    started = time.time()
    job_id, run_dir, log = _submit(tmp_path, 6, "train.log_every=2")
    state = _wait("the job to finish", lambda: _finished(job_id), 180, job_id, log)
    text = open(log).read()
    assert state == "COMPLETED", text[-4000:]
    lines = _metrics(run_dir)
    assert lines[-1]["step"] == 6 and all(line["rank_divergence"] == 0.0 for line in lines)
    ckpt = latest_checkpoint(run_dir)
    saved, rng = load_state(ckpt, 1)
    assert saved["world_size"] == 2 and rng is not None  # rank 1 (second slurmd) wrote its RNG state
    assert "on n[1-2], 2 processes, rendezvous 127.0.0.1:" in text  # head NodeAddr looked up by the template
    print(f"2-node training job: {time.time() - started:.1f}s")


def test_usr1_checkpoints_requeues_and_resumes(slurm_cluster, tmp_path):
    """What --signal=B:USR1@S does at the time limit, sent early: only the batch shell gets USR1."""
    started = time.time()
    total = 300
    job_id, run_dir, log = _submit(tmp_path, total, "train.log_every=5")
    _wait("training to be under way", lambda: any(line["step"] >= 10 for line in _metrics(run_dir)), 180, job_id, log)
    _run("scancel", "--signal=USR1", "--batch", job_id)
    _release(job_id, log)
    state = _wait("the requeued job to finish", lambda: _finished(job_id), 240, job_id, log)
    text = open(log).read()
    assert state == "COMPLETED", text[-4000:]
    stopped = re.search(r"stopped by signal at step (\d+)", text)
    assert stopped and 10 <= int(stopped.group(1)) < total, text[-4000:]
    assert f"step-{int(stopped.group(1)):08d} at step {stopped.group(1)}" in text  # resumed where it stopped
    assert "requeueing job" in text and "restart 1 on" in text  # one log, appended by both runs
    assert _metrics(run_dir)[-1]["step"] == total and _job(job_id)["Restarts"] == "1"
    print(f"preempted at step {stopped.group(1)}, requeued, resumed, finished: {time.time() - started:.1f}s")
