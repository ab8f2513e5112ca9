"""Faults and untrusted input, as a user meets them: one line and a documented exit code, no traceback, no
code run from a file, nothing lost (docs/reliability.md lists each promise and the test here that keeps it).

Exit codes (acl_dist/errors.py): 2 recipe or command line, 3 data, 4 checkpoint, 5 run directory busy,
6 run directory not writable.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time

import numpy as np
import pytest
import torch

from acl_dist.config import load_recipe
from acl_dist.errors import CheckpointError, DataError, RunDirectoryBusy, RunWriteError
from acl_dist.training import checkpoint as checkpoint_module
from acl_dist.training.checkpoint import complete_checkpoints, latest_checkpoint, load_state, verify_safe
from acl_dist.training.trainer import Trainer
from tests.conftest import PYTHON, REPO, tiny_overrides
from tests.unit.test_stream import make_shards

RECIPE = "recipes/digits/acl_gan.yaml"


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "ACL_DIST_LAUNCHED"):
        env.pop(key, None)
    return subprocess.run([PYTHON, "-m", "acl_dist", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _one_line_error(proc: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("acl-dist: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for word in words:
        assert word in errors[0], errors[0]


def _overrides(out: str, name: str, *extra: str) -> list[str]:
    return tiny_overrides("acl_gan", out, f"run.name={name}", *extra)


# -- data ------------------------------------------------------------------------------------------------


def _truncate(path: str, keep: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(keep)


@pytest.fixture
def unmanifested_shards(tmp_path):
    """Four tars written by 'another tool' (no manifest.json), the third cut in the middle of a member."""
    root = tmp_path / "shards"
    make_shards(str(root), [16] * 4)
    os.remove(root / "manifest.json")
    third = root / "shard-000002.tar"
    _truncate(str(third), os.path.getsize(third) // 2 + 100)
    return str(root / "shard-{000000..000003}.tar")


def test_shards_without_manifest_honour_skip_when_counting(unmanifested_shards, tmp_path, caplog):
    recipe = load_recipe(None, _overrides(str(tmp_path), "skip", "data.source=shards",
                                          f"data.shards={unmanifested_shards}", "train.steps=3"))
    trainer = Trainer(recipe)  # counting the tars used to raise whatever data.corrupt said
    assert 48 <= trainer.stream.plan.shards.total < 64  # the cut shard counts what could be read
    assert "skipping unreadable shard data" in caplog.text and "shard-000002.tar" in caplog.text
    assert trainer.train().step == 3


def test_shards_without_manifest_under_raise_stop_with_one_line(unmanifested_shards, tmp_path):
    proc = _cli("train", RECIPE, *_overrides(str(tmp_path), "raise", "data.source=shards",
                                             f"data.shards={unmanifested_shards}", "data.corrupt=raise"))
    _one_line_error(proc, 3, "shard-000002.tar", "data.corrupt: raise")


def _corrupt_one_image(root: str) -> str:
    """Replace sample s00005's image bytes by junk in its shard; returns the shard path."""
    path = os.path.join(root, "shard-000000.tar")
    out = path + ".new"
    with tarfile.open(path) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.startswith("s00005."):
                data = b"not an image"
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    os.replace(out, path)
    return path


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_sample_under_raise_names_shard_and_key_in_one_line(workers, tmp_path):
    root = str(tmp_path / "shards")
    manifest = make_shards(root, [16] * 2)
    _corrupt_one_image(root)
    proc = _cli("train", RECIPE, *_overrides(str(tmp_path), "raise", "data.source=shards", f"data.shards={manifest}",
                                             "data.corrupt=raise", f"data.num_workers={workers}",
                                             "data.shuffle_buffer=1", "train.steps=6"))
    _one_line_error(proc, 3, "s00005", "shard-000000.tar", "cannot identify image file")
    assert "BytesIO" not in proc.stderr


def test_skipped_samples_are_counted_in_metrics_and_tensorboard(tmp_path):
    root = str(tmp_path / "shards")
    manifest = make_shards(root, [16] * 2)
    _corrupt_one_image(root)
    recipe = load_recipe(None, _overrides(str(tmp_path), "counted", "data.source=shards", f"data.shards={manifest}",
                                          "data.shuffle_buffer=1", "train.steps=8", "train.log_every=2",
                                          "log.trackers=[tensorboard]"))
    Trainer(recipe).train()
    lines = [json.loads(line) for line in open(os.path.join(recipe.run_dir, "metrics.jsonl")) if "images_per_s" in line]
    assert all("data/corrupt_samples" in line and "data/unreadable_shards" in line for line in lines)
    corrupt = sum(line["data/corrupt_samples"] for line in lines)
    assert corrupt == 2  # 8 steps x 1 batch of 8 = 64 samples: both passes over the bad one
    events = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(recipe.run_dir, "tensorboard")) for f in fs]
    assert any(b"data/corrupt_samples" in open(path, "rb").read() for path in events)


def _serve_shard_via_pipe(tmp_path, fail_times: int) -> str:
    """A pipe: URL whose command fails its first ``fail_times`` runs, then streams the shard."""
    root = str(tmp_path / "shards")
    make_shards(root, [16] * 2)
    counter = tmp_path / "runs"
    script = tmp_path / "serve.sh"
    script.write_text(f"#!/bin/sh\nn=$(cat {counter} 2>/dev/null || echo 0)\necho $((n+1)) > {counter}\n"
                      f"if [ \"$n\" -lt {fail_times} ]; then exit 1; fi\ncat \"$1\"\n")
    script.chmod(0o755)
    return f"pipe:{script} {root}/shard-00000{{0..1}}.tar"


def test_pipe_shard_failing_once_is_retried_and_gives_the_same_data(tmp_path):
    from acl_dist.data.sources.shards import ShardOptions
    from acl_dist.data.stream import build_shard_stream

    def batches(spec: str) -> list[torch.Tensor]:
        cfg = ShardOptions(source="shards", shards=spec, shuffle_buffer=1, corrupt="raise")
        s = build_shard_stream(cfg, resolution=8, channels=1, batch_size=8, seed=0, rank=0, world_size=1,
                               with_labels=True)
        it = iter(s)
        return [next(it)["label"] for _ in range(4)]

    flaky = _serve_shard_via_pipe(tmp_path, fail_times=1)
    local = str(tmp_path / "shards" / "shard-00000{0..1}.tar")
    assert [b.tolist() for b in batches(flaky)] == [b.tolist() for b in batches(local)]
    assert int((tmp_path / "runs").read_text()) > 2  # the first run failed and was retried


def test_pipe_shard_failing_for_good_meets_the_corrupt_policy(tmp_path):
    from acl_dist.data.stream import resolve_shards

    flaky = _serve_shard_via_pipe(tmp_path, fail_times=100)
    with pytest.raises(DataError, match="data.corrupt: raise"):
        resolve_shards(flaky, corrupt="raise", retries=1)
    with pytest.raises(DataError, match="none of the 2 shards"):
        resolve_shards(flaky, corrupt="skip", retries=1)


# -- checkpoints -----------------------------------------------------------------------------------------


class _RunsCode:
    """Unpickling this runs a shell command: what a crafted checkpoint would hold."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def trained(tmp_path):
    recipe = load_recipe(os.path.join(REPO, RECIPE), _overrides(str(tmp_path), "trained", "train.steps=2"))
    Trainer(recipe).train()
    return recipe


@pytest.mark.parametrize("victim", ["state.pt", "rng-rank0.pt"])
def test_crafted_checkpoint_never_runs_code_on_sample_or_resume(victim, trained, tmp_path):
    ckpt = latest_checkpoint(trained.run_dir)
    marker = tmp_path / "pwned"
    path = os.path.join(ckpt, victim)
    payload = torch.load(path, weights_only=False)
    payload["extra"] = _RunsCode(str(marker))
    torch.save(payload, path)
    _one_line_error(_cli("sample", ckpt, "--no-video"), 4, victim, "could run code", "refusing")
    _one_line_error(_cli("train", RECIPE, *_overrides(str(tmp_path), "trained", "train.steps=4")), 4, victim)
    assert not marker.exists()


def test_crafted_deepspeed_partition_is_refused_before_deepspeed_reads_it(tmp_path):
    folder = tmp_path / "deepspeed" / "G"
    folder.mkdir(parents=True)
    torch.save({"optimizer_state_dict": {"x": torch.zeros(2)}}, folder / "ok.pt")
    verify_safe(str(tmp_path / "deepspeed"))
    torch.save({"x": _RunsCode(str(tmp_path / "pwned"))}, folder / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    with pytest.raises(CheckpointError, match="could run code"):
        verify_safe(str(tmp_path / "deepspeed"))
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_of_an_older_format_still_loads(trained):
    """RNG files written before this change held numpy's own tuple: allow-listed numpy arrays, no code."""
    ckpt = latest_checkpoint(trained.run_dir)
    rng_file = os.path.join(ckpt, "rng-rank0.pt")
    rng = torch.load(rng_file, weights_only=True)
    rng["numpy"] = np.random.get_state()
    torch.save(rng, rng_file)
    _, loaded = load_state(ckpt, 0)
    assert loaded["numpy"][0] == "MT19937"
    resumed = Trainer(load_recipe(os.path.join(REPO, RECIPE), _overrides(os.path.dirname(trained.run_dir),
                                                                          "trained", "train.steps=3")))
    assert resumed.step == 2


def test_damaged_checkpoint_is_one_line(trained):
    ckpt = latest_checkpoint(trained.run_dir)
    _truncate(os.path.join(ckpt, "state.pt"), 100)
    _one_line_error(_cli("eval", ckpt, "--num-samples", "10"), 4, "cannot be read", "state.pt")


def test_resume_with_another_recipe_names_the_mismatch(trained, tmp_path):
    out = os.path.dirname(trained.run_dir)
    proc = _cli("train", RECIPE, *_overrides(out, "trained", "train.steps=4", "model.code_dim=6"))
    _one_line_error(proc, 4, "does not fit this recipe", "model.code_dim 4 -> 6", "] in the checkpoint, [")
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint.*method.name 'acl_gan' -> 'acl_sgan'"):
        Trainer(load_recipe(os.path.join(REPO, RECIPE), _overrides(out, "trained", "method.name=acl_sgan")))


def _fill_disk_on(name: str, monkeypatch) -> None:
    """torch.save of ``name`` fails as it does on a full disk: part of the file written, then RuntimeError."""
    real = torch.save

    def save(obj, path, *args, **kwargs):
        if os.path.basename(str(path)) == name:
            with open(path, "wb") as f:
                f.write(b"PK\x03\x04partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save)


def test_disk_full_while_checkpointing_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    def recipe(steps: int):
        return load_recipe(None, _overrides(str(tmp_path), "full", f"train.steps={steps}", "train.ckpt_every=2"))

    Trainer(recipe(2)).train()
    good = latest_checkpoint(recipe(2).run_dir)
    _fill_disk_on("state.pt", monkeypatch)
    with pytest.raises(RunWriteError, match=r"could not write checkpoint .*step-00000004.*step-00000002.* is intact"):
        Trainer(recipe(6)).train()
    monkeypatch.undo()
    assert complete_checkpoints(recipe(2).run_dir) == [good]
    assert not [n for n in os.listdir(os.path.dirname(good)) if n.startswith(".tmp")]
    load_state(good, 0)
    resumed = Trainer(recipe(6))
    assert resumed.step == 2 and resumed.train().step == 6


def _can_mount_tmpfs(path: str) -> bool:
    os.makedirs(path, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", path], capture_output=True)
    return proc.returncode == 0


def test_real_full_disk_stops_with_exit_6_and_resumes(tmp_path):
    """The same on a real 2 MiB tmpfs (where the machine lets tests mount one; the test above covers the rest)."""
    mount = str(tmp_path / "small")
    if shutil.which("mount") is None or not _can_mount_tmpfs(mount):
        pytest.skip("this machine does not let tests mount a tmpfs")
    try:
        proc = _cli("train", RECIPE, *_overrides(mount, "full", "train.steps=400", "train.ckpt_every=1",
                                                 "train.keep_checkpoints=1000", "model.code_dim=16",
                                                 "model.base_channels=16", "model.max_channels=32"))
        _one_line_error(proc, 6, "could not write", "is intact")
        run_dir = os.path.join(mount, "full")
        last = latest_checkpoint(run_dir)
        assert last is not None
        load_state(last, 0)
    finally:
        subprocess.run(["umount", mount])


def _start_holder(out: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([PYTHON, "-m", "acl_dist", "train", RECIPE,
                             *_overrides(out, "shared", "train.steps=100000")], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(out, "shared", "metrics.jsonl")):
        assert proc.poll() is None and time.time() < deadline, "the first run did not start"
        time.sleep(0.2)
    return proc


def test_second_live_run_on_one_directory_is_refused_and_a_dead_one_leaves_no_lock(tmp_path):
    out = str(tmp_path)
    holder = _start_holder(out)
    try:
        proc = _cli("train", RECIPE, *_overrides(out, "shared", "train.steps=3"))
        _one_line_error(proc, 5, "another live process", f"pid {holder.pid}")
        with pytest.raises(RunDirectoryBusy):
            Trainer(load_recipe(os.path.join(REPO, RECIPE), _overrides(out, "shared", "train.steps=3"))).train()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    result = Trainer(load_recipe(os.path.join(REPO, RECIPE), _overrides(out, "shared", "run.resume=none",
                                                                        "train.steps=2"))).train()
    assert result.step == 2  # the killed holder's lock went with it


def test_a_busy_message_names_a_holder_only_while_it_is_alive():
    import socket

    from acl_dist.training.checkpoint import describe_holder

    gone = subprocess.Popen([PYTHON, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    assert describe_holder(f"pid {os.getpid()} on {host} since now") == f" (pid {os.getpid()} on {host} since now)"
    dead = describe_holder(f"pid {gone.pid} on {host} since now")
    assert f"pid {gone.pid}, has exited" in dead and "still holds the lock" in dead
    assert describe_holder(f"pid {gone.pid} on another-host since now").startswith(f" (pid {gone.pid} on another")
    assert describe_holder("") == ""


def test_sigterm_while_a_checkpoint_is_written_leaves_it_whole_and_resume_exact(tmp_path, monkeypatch):
    """The signal lands in the middle of writing state.pt: that checkpoint still completes, the run then
    checkpoints and stops, and resuming from it ends where an uninterrupted run ends."""
    def recipe(name: str, steps: int):
        return load_recipe(None, _overrides(str(tmp_path), name, f"train.steps={steps}", "train.ckpt_every=2"))

    real = torch.save
    fired = []

    def save(obj, path, *args, **kwargs):
        if os.path.basename(str(path)) == "state.pt" and not fired:
            fired.append(path)
            os.kill(os.getpid(), signal.SIGTERM)  # delivered now, while the checkpoint is half written
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save)
    result = Trainer(recipe("stopped", 6)).train()
    monkeypatch.undo()
    assert result.stopped_by_signal and result.step == 2  # the signal came during step 2's checkpoint
    run_dir = recipe("stopped", 6).run_dir
    assert [os.path.basename(c) for c in complete_checkpoints(run_dir)] == ["step-00000002"]
    assert not [n for n in os.listdir(os.path.dirname(complete_checkpoints(run_dir)[0])) if n.startswith(".")]
    for ckpt in complete_checkpoints(run_dir):
        load_state(ckpt, 0)
    Trainer(recipe("stopped", 6)).train()
    Trainer(recipe("straight", 6)).train()
    a = load_state(latest_checkpoint(recipe("straight", 6).run_dir), 0)[0]["nets"]
    b = load_state(latest_checkpoint(run_dir), 0)[0]["nets"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- the command line ------------------------------------------------------------------------------------


def test_options_and_overrides_mix_in_any_order(tmp_path):
    proc = _cli("train", RECIPE, "--dry-run", "train.steps=7", f"run.out_dir={tmp_path}")
    assert proc.returncode == 0 and "steps: 7" in proc.stdout, proc.stderr
    proc = _cli("submit", RECIPE, "--nodes", "2", "--time", "1:00:00", "train.steps=5", "--dry-run", "--cpu")
    assert proc.returncode == 0, proc.stderr
    assert "train.steps=5" in proc.stdout and "--nodes=2" in proc.stdout


def test_bad_override_is_exit_2_in_one_line(tmp_path):
    _one_line_error(_cli("train", RECIPE, "model.resolution=96", f"run.out_dir={tmp_path}"), 2, "model.resolution")


def test_bad_recipe_file_is_exit_2_with_the_key_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  resolution: 96\n")
    proc = subprocess.run([PYTHON, "-m", "acl_dist", "train", str(bad)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert "model.resolution: 96 is not a power of two" in proc.stderr
    assert "Traceback" not in proc.stderr
