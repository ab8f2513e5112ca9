"""Exact resume over WebDataset shards with data-loading workers, as the README promises and users run it.

The trainer and the shard stream together, with 0, 1 and 2 workers, on one process and on two gloo
processes: a run stopped inside an epoch and again exactly at an epoch boundary, then resumed, ends with
the same nets, EMA and optimizer states as an uninterrupted run; so does a run killed with SIGKILL.

Shards: 6 x 8 digits-like samples, batch 8, so one process has 6 batches per epoch and two processes have 3
per rank. The digits acl_gan_gp recipe runs 2 critic steps, so a step reads 2 batches: one process ends epoch
0 exactly at step 3, two processes end epoch 1 exactly at step 3.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time

import pytest
import torch

from acl_dist.config import load_recipe
from acl_dist.training.checkpoint import latest_checkpoint
from acl_dist.training.trainer import Trainer
from tests.conftest import PYTHON, REPO, tiny_overrides
from tests.integration.test_multiprocess_training import ACCELERATE, _env
from tests.unit.test_stream import make_shards

RECIPE = "recipes/digits/acl_gan_gp.yaml"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_shards(str(tmp_path_factory.mktemp("shards")), [8] * 6)


def _overrides(out_dir: str, name: str, steps: int, manifest: str, workers: int, *extra: str) -> list[str]:
    return tiny_overrides("acl_gan_gp", out_dir, f"run.name={name}", f"train.steps={steps}", "data.source=shards",
                          f"data.shards={manifest}", f"data.num_workers={workers}", "data.shuffle_buffer=16",
                          "model.g_norm=batch", *extra)


def _state(run_dir: str) -> dict:
    return torch.load(os.path.join(latest_checkpoint(run_dir), "state.pt"), map_location="cpu", weights_only=False)


def _assert_same_training_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and a["data_position"] == b["data_position"]
    for key, value in a["nets"].items():
        assert torch.equal(value, b["nets"][key]), f"net {key}"
    for net, tensors in a["ema"].items():
        for key, value in tensors.items():
            assert torch.equal(value, b["ema"][net][key]), f"ema {net}.{key}"
    for net, opt in a["optimizers"].items():
        for index, moments in opt["state"].items():
            for key, value in moments.items():
                assert torch.equal(value, b["optimizers"][net]["state"][index][key]), f"adam {net}.{index}.{key}"


def _recipe(out_dir: str, name: str, steps: int, manifest: str, workers: int):
    return load_recipe(os.path.join(REPO, RECIPE), _overrides(out_dir, name, steps, manifest, workers))


def _train_here(out_dir: str, name: str, steps: int, manifest: str, workers: int) -> None:
    Trainer(_recipe(out_dir, name, steps, manifest, workers)).train()


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_one_process_resumes_exactly_inside_an_epoch_and_at_its_boundary(workers, manifest, tmp_path):
    out = str(tmp_path)
    _train_here(out, "straight", 5, manifest, workers)
    for stop in (2, 3, 5):  # batches 4: inside epoch 0; 6: exactly its end; 10: inside epoch 1
        _train_here(out, "resumed", stop, manifest, workers)
        if stop == 3:
            assert _state(os.path.join(out, "resumed"))["data_position"] == (1, 0)
    resumed = _state(os.path.join(out, "resumed"))
    assert resumed["data_position"] == (1, 4)
    _assert_same_training_state(_state(os.path.join(out, "straight")), resumed)


def _wait_for_checkpoints(run_dir: str, count: int, proc: subprocess.Popen, seconds: float = 240) -> None:
    folder = os.path.join(run_dir, "checkpoints")
    deadline = time.time() + seconds
    while time.time() < deadline:
        done = [n for n in os.listdir(folder) if n.startswith("step-")] if os.path.isdir(folder) else []
        if len(done) >= count:
            return
        assert proc.poll() is None, "the run ended before it was killed"
        time.sleep(0.1)
    raise TimeoutError(f"{count} checkpoints did not appear in {run_dir}")


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (torchrun starts its ranks in sessions of their own, so a process
    group does not hold them)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher, every rank and every data worker at once, as a node failure would."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def test_one_process_resumes_exactly_after_sigkill_with_workers(manifest, tmp_path):
    out, workers = str(tmp_path), 2
    ov = _overrides(out, "killed", 100000, manifest, workers, "train.ckpt_every=4", "train.keep_checkpoints=100")
    proc = subprocess.Popen([PYTHON, "-m", "acl_dist", "train", RECIPE, *ov], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_checkpoints(os.path.join(out, "killed"), 2, proc)
    _kill_tree(proc)
    killed_at = _state(os.path.join(out, "killed"))["step"]
    _train_here(out, "killed", killed_at + 5, manifest, workers)  # resume: ends inside another epoch
    _train_here(out, "straight", killed_at + 5, manifest, workers)
    _assert_same_training_state(_state(os.path.join(out, "straight")), _state(os.path.join(out, "killed")))


def test_a_trainer_killed_alone_frees_its_run_directory_at_once_and_resumes_exactly(manifest, tmp_path):
    """SIGKILL to the trainer only, its 2 data workers left alive (they notice the dead parent seconds later):
    the run directory's lock is free within 0.5 s, so a retry at once resumes, bit-identical. Before, the
    workers held the inherited lock descriptor for about 5 s and an immediate retry exited 5."""
    import fcntl

    out, workers = str(tmp_path), 2
    ov = _overrides(out, "killed", 100000, manifest, workers, "train.ckpt_every=4", "train.keep_checkpoints=100")
    proc = subprocess.Popen([PYTHON, "-m", "acl_dist", "train", RECIPE, *ov], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_checkpoints(os.path.join(out, "killed"), 2, proc)
    orphans = _descendants(proc.pid)
    assert len(orphans) >= workers, "the data workers were not running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    try:
        fd = os.open(os.path.join(out, "killed", ".lock"), os.O_RDWR)
        deadline, free = time.time() + 0.5, False
        while not free and time.time() < deadline:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                free = True
            except BlockingIOError:
                time.sleep(0.02)
        os.close(fd)
        assert free, "the killed trainer's lock was still held 0.5 s later"
        killed_at = _state(os.path.join(out, "killed"))["step"]
        _train_here(out, "killed", killed_at + 5, manifest, workers)  # at once: the workers may still be alive
    finally:
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _train_here(out, "straight", killed_at + 5, manifest, workers)
    _assert_same_training_state(_state(os.path.join(out, "straight")), _state(os.path.join(out, "killed")))


def test_changed_worker_count_on_resume_is_named(manifest, tmp_path, caplog):
    out = str(tmp_path)
    _train_here(out, "run", 2, manifest, 2)
    with caplog.at_level(logging.WARNING, logger="acl_dist.training.trainer"):
        Trainer(_recipe(out, "run", 3, manifest, 1))
    assert "data.num_workers 2 -> 1" in caplog.text and "another order" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="acl_dist.training.trainer"):
        Trainer(_recipe(out, "run", 3, manifest, 2))
    assert "another order" not in caplog.text


def _launch_two(out_dir: str, name: str, steps: int, manifest: str, workers: int, *extra: str) -> None:
    cmd = ACCELERATE + ["--multi_gpu", "--num_processes", "2", "-m", "acl_dist", "train", RECIPE,
                        *_overrides(out_dir, name, steps, manifest, workers, *extra)]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


# Two processes with in-process reading and with two workers each (their interleaving); one worker's own resume is
# the one-process test's (workers 1 added nothing here but 50 s of the suite).
@pytest.mark.parametrize("workers", [0, 2])
def test_two_processes_resume_exactly_inside_an_epoch_and_at_its_boundary(workers, manifest, tmp_path):
    out = str(tmp_path)
    _launch_two(out, "straight", 4, manifest, workers)
    for stop in (1, 3, 4):  # batches per rank 2: inside epoch 0; 6: exactly the end of epoch 1; 8: inside epoch 2
        _launch_two(out, "resumed", stop, manifest, workers)
        if stop == 3:
            assert _state(os.path.join(out, "resumed"))["data_position"] == (2, 0)
    resumed = _state(os.path.join(out, "resumed"))
    assert resumed["data_position"] == (2, 2) and resumed["world_size"] == 2
    _assert_same_training_state(_state(os.path.join(out, "straight")), resumed)


def test_two_processes_resume_exactly_after_sigkill_with_workers(manifest, tmp_path):
    out, workers = str(tmp_path), 2
    cmd = ACCELERATE + ["--multi_gpu", "--num_processes", "2", "-m", "acl_dist", "train", RECIPE,
                        *_overrides(out, "killed", 100000, manifest, workers, "train.ckpt_every=2",
                                    "train.keep_checkpoints=100")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_checkpoints(os.path.join(out, "killed"), 2, proc)
    _kill_tree(proc)
    killed_at = _state(os.path.join(out, "killed"))["step"]
    _launch_two(out, "killed", killed_at + 4, manifest, workers)
    _launch_two(out, "straight", killed_at + 4, manifest, workers)
    _assert_same_training_state(_state(os.path.join(out, "straight")), _state(os.path.join(out, "killed")))
