"""Checkpoints that hold everything needed to continue, written atomically, and preemption signals.

Layout: ``RUN/checkpoints/step-00001000/`` with ``state.pt`` (nets, optimizers, EMA, scaler, step, data
position, counters, resolved recipe), ``rng-rank{r}.pt`` (each process's RNG states) and ``COMPLETE``. Each
is written into a temporary directory and renamed into place, so a crash mid-write never leaves something
that ``resume: auto`` would pick up. Multi-node runs need the run directory on a shared file system.

Safety: checkpoints travel between people and clusters, and unpickling can run code. Every file is read
with ``torch.load(weights_only=True)``: tensors, plain containers and numbers, plus an allow-list of
data-only classes (numpy arrays in RNG files of older runs; DeepSpeed's loss scaler, ZeRO stage enum and
fragment addresses in its optimizer partitions, which are checked this way before DeepSpeed reads them).
Anything else is refused with :class:`CheckpointError`. What acl_dist writes is plain: numpy's RNG state is
stored as a tensor and numbers.

Failures to write (disk full) remove the temporary directory, leave the previous checkpoint as it was and
raise :class:`RunWriteError` on every rank. :class:`RunLock` keeps a second live process out of a run
directory (an flock, which the kernel drops when its holder dies, so a crash never leaves it stuck).
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import glob
import logging
import os
import pickle
import random
import re
import shutil
import signal
import socket
import weakref
import zipfile
from typing import Any, Callable

import numpy as np
import torch

from acl_dist.errors import CheckpointError, RunDirectoryBusy, RunWriteError

log = logging.getLogger(__name__)
STEP_DIR = re.compile(r"^step-(\d{8})$")
COMPLETE = "COMPLETE"


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def complete_checkpoints(run_dir: str) -> list[str]:
    """Complete step checkpoints, oldest first."""
    root = checkpoint_dir(run_dir)
    if not os.path.isdir(root):
        return []
    names = sorted(n for n in os.listdir(root) if STEP_DIR.match(n)
                   and os.path.isfile(os.path.join(root, n, COMPLETE)))
    return [os.path.join(root, n) for n in names]


def latest_checkpoint(run_dir: str) -> str | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_checkpoint(path: str) -> str:
    """A checkpoint directory from a checkpoint path or a run directory (its newest complete checkpoint)."""
    if os.path.isfile(os.path.join(path, COMPLETE)):
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"no complete checkpoint in {path}")
    return latest


def rng_state() -> dict[str, Any]:
    """Every RNG of this process, as tensors and plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        numpy_state = (numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                       numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    np.random.set_state(numpy_state)  # older checkpoints stored numpy's own tuple
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _allowed_globals() -> list:
    """Data-only classes a checkpoint may hold besides tensors and plain values (see the module doc)."""
    allowed = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    try:  # DeepSpeed's optimizer partitions; only importable where DeepSpeed is installed
        from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
        from deepspeed.runtime.zero.config import ZeroStageEnum
        from deepspeed.utils.tensor_fragment import fragment_address

        allowed += [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]
    except ImportError:
        pass
    return allowed


def safe_load(path: str) -> Any:
    """``torch.load`` that never runs code from the file; CheckpointError names the file and the reason."""
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _unsafe_globals(path)
        raise CheckpointError(f"{path} holds objects whose loading could run code ({found or err}); refusing "
                              "to load it. acl_dist writes only tensors and plain values: this file was "
                              "altered or comes from another program") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(f"{path} cannot be read ({type(err).__name__}: {str(err)[:200]}); the checkpoint "
                              "is damaged: resume from an earlier one (run.resume: PATH)") from None


def _unsafe_globals(path: str) -> str:
    try:
        return ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)[:5])
    except Exception:  # the listing is a courtesy; the refusal stands without it
        return ""


def verify_safe(directory: str) -> None:
    """Read every ``.pt`` file under ``directory`` with :func:`safe_load` (for files a library loads itself,
    like DeepSpeed's partitions: if they pass here, unpickling them can only build allow-listed data)."""
    for path in sorted(glob.glob(os.path.join(directory, "**", "*.pt"), recursive=True)):
        safe_load(path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointWriter:
    """Writes one checkpoint across ranks: every rank its RNG file, rank 0 the state and the rename.

    ``any_rank(flag)`` is the trainer's collective "did any rank fail?" (a barrier too; the plain flag on one
    process), passed in so this module stays free of process-group code. A failed write on any rank removes
    the temporary directory and raises :class:`RunWriteError` on every rank.
    """

    def __init__(self, run_dir: str, rank: int, any_rank: Callable[[bool], bool], keep: int):
        self.root, self.rank, self.any_rank, self.keep = checkpoint_dir(run_dir), rank, any_rank, keep

    def save(self, name: str, state: dict[str, Any], collective=None) -> str:
        """``collective(tmp_dir)`` runs on every rank before the rename (DeepSpeed's partitioned states)."""
        final, tmp = os.path.join(self.root, name), os.path.join(self.root, f".tmp-{name}")

        def prepare() -> None:
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)

        def rank_files() -> None:
            if collective is not None:
                collective(tmp)
            torch.save(rng_state(), os.path.join(tmp, f"rng-rank{self.rank}.pt"))

        self._stage(final, tmp, prepare if self.rank == 0 else None)
        self._stage(final, tmp, rank_files)
        self._stage(final, tmp, (lambda: self._commit(state, tmp, final)) if self.rank == 0 else None)
        return final

    def _stage(self, final: str, tmp: str, work: Callable[[], None] | None) -> None:
        """Run this rank's part of a checkpoint, then agree with every rank on whether all parts worked."""
        error: BaseException | None = None
        try:
            if work is not None:
                work()
        except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
            error = err
        if self.any_rank(error is not None):
            if self.rank == 0:
                shutil.rmtree(tmp, ignore_errors=True)
            raise RunWriteError(self._failure(final, error)) from None

    def _failure(self, final: str, error: BaseException | None) -> str:
        root = os.path.dirname(self.root)
        latest = latest_checkpoint(root)
        free = shutil.disk_usage(self.root).free if os.path.isdir(self.root) else 0
        what = (f"{type(error).__name__}: {str(error)[:160]}" if error is not None
                else "another rank failed to write its part")
        return (f"could not write checkpoint {final} ({what}; {free / 2**20:.1f} MiB free there). The last "
                f"complete checkpoint ({latest or 'none yet'}) is intact: free some space, then run again "
                f"(run.resume: auto continues from it)")

    def _commit(self, state: dict[str, Any], tmp: str, final: str) -> None:
        torch.save(state, os.path.join(tmp, "state.pt"))
        open(os.path.join(tmp, COMPLETE), "w").close()
        _fsync_dir(tmp)
        self._replace(tmp, final)
        self._prune()

    @staticmethod
    def _replace(tmp: str, final: str) -> None:
        old = final + ".old"
        if os.path.exists(final):
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)

    def _prune(self) -> None:
        run_dir = os.path.dirname(self.root)
        for path in complete_checkpoints(run_dir)[:-self.keep]:
            shutil.rmtree(path, ignore_errors=True)


class RunLock:
    """An exclusive lock on a run directory for as long as a trainer writes into it (rank 0 holds it).

    ``fcntl.flock`` on ``RUN/.lock``: the kernel drops it when the last descriptor of its open file goes,
    however the holder dies, so a crashed or killed run never leaves the directory locked. The lock belongs to
    the trainer alone: a forked child (a DataLoader worker) inherits the descriptor, and would keep the lock
    for the seconds it outlives a killed parent (torch's workers look for a dead parent every 5 s), refusing an
    immediate resume; so every fork closes it in the child (``os.register_at_fork``). A non-inheritable
    descriptor is not enough: that flag acts at exec, and fork copies the descriptor anyway. The file says who
    holds it, for the message. On shared file systems flock needs lock support (NFSv4, Lustre with ``flock``).
    """

    _held: "weakref.WeakSet[RunLock]"  # the locks this process holds, closed in its forked children

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.read(fd, 512).decode("utf-8", "replace").strip()
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise RunDirectoryBusy(f"{os.path.dirname(self.path)} is being trained by another live process"
                                       f"{describe_holder(holder)}; stop it first, or train under another run.name"
                                       ) from None
            raise
        os.ftruncate(fd, 0)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode())
        self._fd = fd
        RunLock._held.add(self)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        RunLock._held.discard(self)

    def _forget_in_child(self) -> None:
        """In a forked child: close the inherited descriptor without unlocking (the parent still holds it)."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None


RunLock._held = weakref.WeakSet()


def _close_run_locks_in_child() -> None:
    for lock in list(RunLock._held):
        lock._forget_in_child()
    RunLock._held.clear()


os.register_at_fork(after_in_child=_close_run_locks_in_child)


def describe_holder(text: str) -> str:
    """" (pid N on HOST since ...)" for the message, naming a pid only while that process is alive: on this host
    a dead pid is said to be gone (something it left, such as a child, still holds the lock)."""
    match = re.match(r"pid (\d+) on (\S+)", text)
    if not match:
        return ""
    pid, host = int(match.group(1)), match.group(2)
    if host == socket.gethostname() and not _alive(pid):
        return f" (its last holder, pid {pid}, has exited; a process it started still holds the lock)"
    return f" ({text})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def checkpoint_mismatches(expected: dict[str, tuple], saved: dict[str, tuple], most: int = 4) -> list[str]:
    """Why a checkpoint's net tensors cannot load into nets of ``expected`` shapes (empty: they can)."""
    problems = [f"{k} is {list(saved[k])} in the checkpoint, {list(v)} here"
                for k, v in expected.items() if k in saved and tuple(saved[k]) != tuple(v)]
    missing = sorted(set(expected) - set(saved))
    extra = sorted(set(saved) - set(expected))
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing from the checkpoint, e.g. {', '.join(missing[:2])}")
    if extra:
        problems.append(f"{len(extra)} tensor(s) this recipe has no place for, e.g. {', '.join(extra[:2])}")
    return problems[:most]


def recipe_differences(saved: dict, current: dict, sections: tuple[str, ...]) -> list[str]:
    """``section.key old -> new`` for the keys of ``sections`` that differ between two recipe dicts."""
    out = []
    for section in sections:
        old, new = saved.get(section, {}) or {}, current.get(section, {}) or {}
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                out.append(f"{section}.{key} {old.get(key)!r} -> {new.get(key)!r}")
    return out


def load_state(path: str, rank: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(state, this rank's RNG state or None when the checkpoint came from fewer ranks), loaded safely."""
    state_file = os.path.join(path, "state.pt")
    if not os.path.isfile(state_file):
        raise CheckpointError(f"{path} is not a checkpoint (no state.pt)")
    state = safe_load(state_file)
    if not isinstance(state, dict) or not {"step", "nets", "recipe"} <= set(state):
        raise CheckpointError(f"{state_file} is not an acl_dist checkpoint (no step, nets and recipe)")
    rng_file = os.path.join(path, f"rng-rank{rank}.pt")
    rng = safe_load(rng_file) if os.path.isfile(rng_file) else None
    return state, rng


class StopSignal:
    """SIGTERM / SIGUSR1 (SLURM preemption, ``scancel --signal``) set a flag; the trainer finishes the step,
    checkpoints and exits 0. Restores the previous handlers on close."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.received: int | None = None
        self._previous = {}
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner's worker thread)
                pass

    def _handle(self, signum, frame) -> None:
        self.received = signum
        log.warning("received %s: finishing this step, then checkpointing and exiting", signal.Signals(signum).name)

    def close(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
