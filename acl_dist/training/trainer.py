"""The training loop: devices, processes, precision, EMA, logging, samples, checkpoints. No loss formula.

One code path for one CPU core, one GPU, many GPUs and many nodes: accelerate provides the process group,
the device and autocast/GradScaler; the trainer runs the method's phases in order (freeze the other nets,
loss under autocast, backward, average gradients across ranks, clip, step) and owns everything written to
the run directory.

The class reads as Algorithm 1's outer loop (``train``/``_train``: step, EMA, log, outputs, stop); its parts
live beside it, each one concern: ``assembly`` (building a run), ``run_state`` (state, resume, checkpoints),
``step`` (one step's phases and updates), ``reporting`` (log ticks, evaluations, samples, trackers).
"""

from __future__ import annotations

import errno
import logging
import time
from dataclasses import dataclass

import torch

from acl_dist import distributed
from acl_dist.config import Recipe
from acl_dist.data.sources import open_source
from acl_dist.errors import RunDirectoryBusy, RunWriteError, TrainingError  # noqa: F401 (re-exported)
from acl_dist.training.assembly import RunAssembly, build_accelerator  # noqa: F401 (build_accelerator re-exported)
from acl_dist.training.checkpoint import (
    CheckpointWriter,
    RunLock,
    StopSignal,
    latest_checkpoint,
)
from acl_dist.training.cuda_graphs import GraphedStep, use_cuda_graphs
from acl_dist.training.ema import EMA
from acl_dist.training.outputs import MetricsLog
from acl_dist.training.reporting import RunReporting
from acl_dist.training.run_state import RunState
from acl_dist.training.step import StepRunner
from acl_dist.training.trackers import preflight

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: str
    step: int
    stopped_by_signal: bool
    metrics: dict[str, float]
    checkpoint: str | None


class Trainer(RunAssembly, RunState, StepRunner, RunReporting):
    """Builds everything from a recipe; ``train()`` runs to ``train.steps`` or a stop signal."""

    def __init__(self, recipe: Recipe, accelerator=None):
        self.recipe = recipe
        if recipe.log.trackers:  # on every rank, before anything is built or written: one line, exit 2
            preflight(recipe.log, recipe.run_dir, recipe.run.out_dir)
        self.accelerator = accelerator or build_accelerator(recipe)
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.device, self.is_main = self.accelerator.device, self.accelerator.is_main_process
        if self.world > 1 and self.is_main:
            log.info("%d processes, rank 0 on %s, process group %s", self.world, self.device,
                     distributed.backend_name())
        # Nets are built in torch's default floating dtype (float32 unless a caller, such as the float64 golden
        # test, set another); batches are cast to it, so the data path never decides the arithmetic.
        self.dtype = torch.get_default_dtype()
        self.source = open_source(recipe.data, recipe.model.resolution, recipe.model.channels)
        self.graphs = use_cuda_graphs(recipe, self.device, self.world)  # before the (capturable) optimizers
        self.channels_last = self._use_channels_last()
        self.run_dir = recipe.run_dir
        self.method, self.phases = self._build_method()
        self.scaler = getattr(self.accelerator, "scaler", None)
        self.ema = EMA(self._sampling_nets(), recipe.train.ema, recipe.train.ema_start)  # before any ZeRO-3 split
        self.updates = self._build_updates()
        self._maybe_compile()  # after the EMA's copies: those stay eager (they run once per grid or FID)
        torch.manual_seed(recipe.run.seed * 1000 + 17 + self.rank)  # per-rank noise from here on
        self.stream = self.source.stream(batch_size=recipe.train.batch_size, seed=recipe.run.seed, rank=self.rank,
                                         world_size=self.world, with_labels=self.method.needs_labels)
        self.step = 0
        # Device-side counters: non-finite losses are counted without a host sync, read once per log tick.
        self._bad_run = torch.zeros((), device=self.device)  # steps in a row with a non-finite loss
        self._skipped = torch.zeros((), device=self.device)  # updates skipped since the start
        self._step_bad = torch.zeros((), device=self.device)  # 1 when this step had a non-finite loss
        # step / train.steps on the device for the losses' schedules (StepContext.progress), set in place before
        # each step so a CUDA graph replays it
        self._progress = torch.zeros((), device=self.device, dtype=self.dtype)
        self.augment.bind_progress(self._progress)  # a scheduled augmentation probability follows it
        self._base_hparams = {name: [(g["lr"], tuple(g["betas"])) for g in opt.param_groups]
                              for name, opt in self.updates.optimizers.items()}
        self._skipped_logged = 0  # skipped updates already reported in the log
        self._data_logged: dict[str, int] = {}  # the stream's skip counters at the last log tick
        self.phase_iterations = {p.name: 0 for p in self.phases}
        self.checkpoints = CheckpointWriter(self.run_dir, self.rank, lambda flag: distributed.any_rank(
            flag, self.device), recipe.train.keep_checkpoints)
        self.fixed_noise = self._fixed_noise(64)
        self.evaluator = self._build_evaluator()
        self.resumed_from = self._maybe_resume()
        self.graphed = GraphedStep(self, self.control_period()) if self.graphs else None

    def train(self) -> TrainResult:
        """Run to ``train.steps`` or a stop signal, holding the run directory's lock (rank 0) throughout."""
        lock = self._lock_run_dir()
        try:
            return self._train()
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            raise RunWriteError(f"writing into {self.run_dir} failed ({err.strerror}: {err.filename}); the last "
                                f"complete checkpoint ({latest_checkpoint(self.run_dir) or 'none yet'}) is intact: "
                                "free some space, then run again (run.resume: auto continues from it)") from None
        finally:
            if lock is not None:
                lock.release()

    def _lock_run_dir(self) -> RunLock | None:
        """Rank 0 locks the run directory; every rank stops if it could not (see checkpoint.RunLock)."""
        lock, busy = (RunLock(self.run_dir) if self.is_main else None), None
        if lock is not None:
            try:
                lock.acquire()
            except RunDirectoryBusy as err:
                busy = err
        if distributed.any_rank(busy is not None, self.device):
            raise busy or RunDirectoryBusy(f"{self.run_dir} is being trained by another live process")
        return lock

    def _train(self) -> TrainResult:
        t = self.recipe.train
        self._write_run_files()
        metrics_log = MetricsLog(self.run_dir, self.is_main, self._open_trackers())
        stop, last, ckpt = StopSignal(), {}, None
        bar = self._progress_bar()
        batches, sums = iter(self.stream), {}
        tick_start, tick_steps = time.perf_counter(), 0
        try:
            while self.step < t.steps:
                self.train_step(batches, sums)
                self.step += 1
                tick_steps += 1
                with self._full_parameters(self._sampling_nets().values()):
                    self.ema.update(self._sampling_nets(), self.step, self._ema_decay())
                if bar is not None:
                    bar.update(1)
                if self.step % t.log_every == 0 or self.step == t.steps:
                    last = self._log_tick(metrics_log, sums, tick_steps, time.perf_counter() - tick_start, bar)
                    sums, tick_start, tick_steps = {}, time.perf_counter(), 0
                    self.check_bad_steps()  # here, not per step: reading the device stalls the GPU queue
                self._periodic_outputs(metrics_log)
                if self._stop_requested(stop):
                    self._finish_evaluation(metrics_log)
                    ckpt = self.save_checkpoint()
                    log.warning("stopped by signal at step %d; checkpoint %s", self.step, ckpt)
                    return TrainResult(self.run_dir, self.step, True, last, ckpt)
            self._finish_evaluation(metrics_log)
            ckpt = self.save_checkpoint()
            self._save_samples(metrics_log)
            return TrainResult(self.run_dir, self.step, False, last, ckpt)
        finally:
            stop.close()
            metrics_log.close()
            if bar is not None:
                bar.close()

    def _stop_requested(self, stop: StopSignal) -> bool:
        """Whether a stop signal reached any rank. One process reads its own flag every step; several agree on
        log ticks only (and at the last step), where the metrics' reduction syncs anyway: a per-step all-reduce
        read back on the host would stall the GPU queue every step. A signal is honoured within
        ``train.log_every`` steps (SLURM's warning comes minutes before the kill)."""
        t = self.recipe.train
        if self.world > 1 and self.step % t.log_every and self.step != t.steps:
            return False
        return distributed.any_rank(stop.received is not None, self.device)
