"""Checkpoints that hold everything needed to continue, written atomically, and preemption signals.

Layout: ``RUN/checkpoints/step-00001000/`` with ``state.pt`` (nets, optimizers, EMA, scaler, step, data
position, counters, resolved recipe), ``rng-rank{r}.pt`` (each process's RNG states) and ``COMPLETE``. Each
is written into a temporary directory and renamed into place, so a crash mid-write never leaves something
that ``resume: auto`` would pick up. Multi-node runs need the run directory on a shared file system.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import signal
from typing import Any

import numpy as np
import torch

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
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointWriter:
    """Writes one checkpoint across ranks: every rank its RNG file, rank 0 the state and the rename.

    ``barrier`` is the trainer's collective barrier (a no-op on one process), passed in so this module
    stays free of process-group code.
    """

    def __init__(self, run_dir: str, rank: int, barrier, keep: int):
        self.root, self.rank, self.barrier, self.keep = checkpoint_dir(run_dir), rank, barrier, keep

    def save(self, name: str, state: dict[str, Any], collective=None) -> str:
        """``collective(tmp_dir)`` runs on every rank before the rename (DeepSpeed's partitioned states)."""
        final, tmp = os.path.join(self.root, name), os.path.join(self.root, f".tmp-{name}")
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
        self.barrier()
        if collective is not None:
            collective(tmp)
        torch.save(rng_state(), os.path.join(tmp, f"rng-rank{self.rank}.pt"))
        self.barrier()
        if self.rank == 0:
            torch.save(state, os.path.join(tmp, "state.pt"))
            open(os.path.join(tmp, COMPLETE), "w").close()
            _fsync_dir(tmp)
            self._replace(tmp, final)
            self._prune()
        self.barrier()
        return final

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


def load_state(path: str, rank: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(state, this rank's RNG state or None when the checkpoint came from fewer ranks)."""
    state = torch.load(os.path.join(path, "state.pt"), map_location="cpu", weights_only=False)
    rng_file = os.path.join(path, f"rng-rank{rank}.pt")
    rng = torch.load(rng_file, weights_only=False) if os.path.isfile(rng_file) else None
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
