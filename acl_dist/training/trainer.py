"""The training loop: devices, processes, precision, EMA, logging, samples, checkpoints. No loss formula.

One code path for one CPU core, one GPU, many GPUs and many nodes: accelerate provides the process group,
the device and autocast/GradScaler; the trainer runs the method's phases in order (freeze the other nets,
loss under autocast, backward, average gradients across ranks, clip, step) and owns everything written to
the run directory.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

from acl_dist import distributed, rules
from acl_dist.config import Recipe, dump_recipe, to_dict
from acl_dist.data.sources import open_source
from acl_dist.errors import CheckpointError, RunDirectoryBusy, RunWriteError, TrainingError
from acl_dist.eval.recalibration import recalibrate_sampling_nets
from acl_dist.methods.base import Phase, StepContext
from acl_dist.methods.registry import build_method
from acl_dist.ops.augment_pipe import build_augment_pipe
from acl_dist.pictures import save_samples
from acl_dist.training.checkpoint import (
    CheckpointWriter,
    RunLock,
    StopSignal,
    checkpoint_mismatches,
    latest_checkpoint,
    load_state,
    recipe_differences,
    set_rng_state,
)
from acl_dist.training.cuda_graphs import GraphedStep, use_cuda_graphs
from acl_dist.training.ema import EMA
from acl_dist.training.eval_noise import evaluation_noise
from acl_dist.training.outputs import MetricsLog
from acl_dist.training.trackers import open_trackers, preflight
from acl_dist.training.update import DeepSpeedUpdates, OptimizerUpdates, Updates

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: str
    step: int
    stopped_by_signal: bool
    metrics: dict[str, float]
    checkpoint: str | None


def build_accelerator(recipe: Recipe):
    """accelerate's Accelerator for this recipe's device and precision (the process group comes with it:
    ``launch.process_group: gloo`` asks for gloo on GPUs too, and accelerate then places rank r on GPU
    r mod the GPU count, so several processes can share one GPU)."""
    from accelerate import Accelerator, InitProcessGroupKwargs
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # a second run in one process (tests, repro) may change the precision;
    # the process group itself (PartialState) is kept.
    device = recipe.launch.device
    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("launch.device: cuda was asked for but no CUDA device is visible")
    group = recipe.launch.process_group
    handlers = [] if group == "auto" else [InitProcessGroupKwargs(backend=group)]
    return Accelerator(mixed_precision=recipe.train.mixed_precision, cpu=cpu, kwargs_handlers=handlers)


class Trainer:
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

    # -- building ------------------------------------------------------------------------------------
    def _build_method(self):
        torch.manual_seed(self.recipe.run.seed)  # identical initial weights on every rank
        r = self.recipe
        self.augment = build_augment_pipe(r.data.augment).to(self.device)  # built once, handed to the losses
        method = build_method(r.method, r.model, self.source.data_dim, self.augment).to(self.device)
        self.net_shapes = {k: tuple(v.shape) for k, v in method.nets.state_dict().items()}  # before any ZeRO-3
        if self.channels_last:
            method.to(memory_format=torch.channels_last)
        for net in method.nets.values():
            distributed.broadcast_module(net)
        return method, method.phases()

    def _use_channels_last(self) -> bool:
        """``train.channels_last`` (``rules.channels_last_wanted``: auto = NHWC on the CPU, not on CUDA or
        under DeepSpeed)."""
        return rules.channels_last_wanted(self.recipe, self.device.type, self.source.data_dim is not None)

    def _maybe_compile(self) -> None:
        """``train.compile``: torch.compile every net in place (state-dict keys and checkpoints unchanged).

        Gradient penalties run their double backward eagerly (torch.compile has none; see
        ops.gradient_penalty), so a penalised critic is compiled for its other forwards only.
        """
        t = self.recipe.train
        if not t.compile:
            return
        for net in self.method.nets.values():
            net.compile(backend=t.compile_backend, dynamic=False)

    def _build_updates(self) -> Updates:
        """Adam per trained net, stepped by torch (``OptimizerUpdates``) or by DeepSpeed engines
        (``DeepSpeedUpdates``, when the recipe names a DeepSpeed config); see training/update.py.

        Torch's Adam is the fused kernel where it runs, because it can skip a step on the device: it reads a
        ``found_inf`` tensor and leaves parameters and moments untouched where it is set, so a non-finite
        loss is skipped without the host ever reading the loss. DeepSpeed engines wrap the plain one.
        """
        o, nets = self.recipe.optim, self.method.nets
        fused = not self.recipe.launch.deepspeed and self.device.type in ("cuda", "cpu")
        capturable = fused and self.graphs  # its step is recorded in a CUDA graph
        optimizers = {name: torch.optim.Adam(nets[name].parameters(), lr=o.lr_per_net.get(name, o.lr),
                                             betas=tuple(o.betas_per_net.get(name, (o.beta1, o.beta2))),
                                             weight_decay=o.weight_decay, fused=fused, capturable=capturable)
                      for name in self.method.trained_nets()}
        if not self.recipe.launch.deepspeed:
            return OptimizerUpdates(nets, optimizers, self.device, self.accelerator, self.scaler, o.grad_clip)
        from acl_dist.training.deepspeed_engines import build_engines

        return DeepSpeedUpdates(nets, optimizers, self.device,
                                build_engines(dict(nets.items()), optimizers, self.recipe, self.device))

    def _sampling_nets(self) -> dict[str, nn.Module]:
        return {n: self.method.nets[n] for n in self.method.sampling_nets}

    def _fixed_noise(self, n: int) -> Tensor:
        """The same noise for every sample grid of a run (and on every rank)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.recipe.run.seed + 4242)
            return self.method.sample_noise(n, "cpu").to(self.device)

    def _build_evaluator(self):
        """The evaluator, built under a forked RNG: building its feature extractor initialises a net (global RNG
        draws) that would otherwise move training's noise whenever ``eval.every`` is on."""
        if self.recipe.eval.every <= 0:
            return None
        from acl_dist.eval.during_training import build_tracker

        r = self.recipe
        with evaluation_noise(r.run.seed, -1, self.rank, self.device):
            return build_tracker(r.eval, self.source, r.run.seed, self.run_dir,
                                 os.path.join(r.run.out_dir, ".fid_cache"), self.device, self.rank, self.world)

    # -- resume --------------------------------------------------------------------------------------
    def _maybe_resume(self) -> str | None:
        choice = self.recipe.run.resume
        path = latest_checkpoint(self.run_dir) if choice == "auto" else (None if choice == "none" else choice)
        if path is None:
            return None
        state, rng = load_state(path, self.rank)
        self._check_checkpoint_fits(path, state)
        self.load_state_dict(state)
        self.updates.load(path)
        if rng is not None and state.get("world_size") == self.world:
            set_rng_state(rng)
        else:
            log.warning("checkpoint %s came from %s processes, this run has %d: RNG streams start afresh",
                        path, state.get("world_size"), self.world)
        self._warn_if_data_layout_changed(path, state.get("data_layout"))
        log.info("resumed from %s at step %d", path, self.step)
        return path

    def _check_checkpoint_fits(self, path: str, state: dict) -> None:
        """A checkpoint of another recipe (another code_dim, a net more or less) stops the run with one line
        naming the mismatched tensors and the recipe keys that differ, before anything is loaded."""
        problems = checkpoint_mismatches(self.net_shapes, {k: tuple(v.shape) for k, v in state["nets"].items()})
        if problems:
            changed = recipe_differences(state.get("recipe", {}), to_dict(self.recipe), ("model", "method"))
            hint = f"; recipe keys that differ from the checkpoint's: {', '.join(changed)}" if changed else ""
            raise CheckpointError(f"checkpoint {path} does not fit this recipe: {'; '.join(problems)}{hint}. "
                                  "Resume with the recipe it was trained with, or start a new run.name")

    def _warn_if_data_layout_changed(self, path: str, saved: dict | None) -> None:
        """The data position is kept, but the order of the batches after it depends on the process and
        worker counts: say which changed, since the run is then no longer the uninterrupted one."""
        now = self.stream.layout
        changed = {k: (v, now.get(k)) for k, v in (saved or {}).items() if now.get(k) != v}
        if changed:
            what = ", ".join(f"{'data.num_workers' if k == 'num_workers' else 'processes'} {a} -> {b}"
                             for k, (a, b) in changed.items())
            log.warning("resuming %s with %s: the data stream continues from the saved position but in another "
                        "order than an uninterrupted run (exact resume needs the same process and worker counts)",
                        path, what)

    def state_dict(self) -> dict:
        return {
            "step": self.step, "world_size": self.world, "recipe": to_dict(self.recipe),
            "nets": self._nets_state(),
            "optimizers": self.updates.state_dict(),
            "ema": self.ema.state_dict(), "scaler": self.scaler.state_dict() if self.scaler else None,
            "data_position": self.stream.position, "data_layout": self.stream.layout,
            "phase_iterations": dict(self.phase_iterations),
            "bad_steps": self.bad_steps, "skipped_updates": self.skipped,
            "evaluator": self.evaluator.state_dict() if self.evaluator else None,
            "augment": self.augment.state_dict(),
        }

    def _nets_state(self) -> dict:
        """The nets' state dict; under ZeRO-3 (called inside ``_full_parameters``) copied out, since the
        gathered tensors are freed when the block ends."""
        state = self.method.nets.state_dict()
        return {k: v.clone() for k, v in state.items()} if self.updates.zero_stage == 3 else state

    def _full_parameters(self, modules, modifier_rank: int | None = None):
        """Whole parameters of ``modules`` inside the block under ZeRO-3, where each rank holds a slice (a
        collective: every rank enters it); a no-op otherwise (``Updates.full_parameters``)."""
        return self.updates.full_parameters(modules, modifier_rank)

    def load_state_dict(self, state: dict) -> None:
        with self._full_parameters(self.method.nets.values(), modifier_rank=0):  # ZeRO-3: rank 0's, scattered
            self.method.nets.load_state_dict(state["nets"])
        self.updates.load_state_dict(state["optimizers"])  # DeepSpeed's come from its own files (load)
        self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self._bad_run.fill_(state["bad_steps"])
        self._skipped.fill_(state.get("skipped_updates", 0))
        self.phase_iterations.update(state["phase_iterations"])
        self.stream.set_position(*state["data_position"])
        if self.evaluator is not None and state.get("evaluator"):
            self.evaluator.load_state_dict(state["evaluator"])
        self.augment.load_state_dict(state.get("augment") or {})  # ADA's probability, say (checkpoints before: none)

    # -- one step ------------------------------------------------------------------------------------
    def _to_device(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Batch to the device without stalling it: a copy from pageable host memory synchronises the
        stream, so CUDA batches go through pinned memory first (the DataLoader may have pinned them)."""
        pin = self.device.type == "cuda"
        out = {k: (v.pin_memory() if pin and v.device.type == "cpu" and not v.is_pinned() else v)
               .to(self.device, non_blocking=True) for k, v in batch.items()}
        if out["image"].is_floating_point() and out["image"].dtype != self.dtype:
            out["image"] = out["image"].to(self.dtype)
        if self.channels_last and out["image"].dim() == 4:
            out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
        return out

    def _grad_scale(self) -> Tensor | None:
        """The fp16 scaler's current scale as a device tensor (no host sync), for gradient penalties."""
        if self.scaler is None or not self.scaler.is_enabled():
            return None
        return self.scaler._get_scale_async()

    def train_step(self, batches: Iterator[dict[str, Tensor]], sums: dict[str, Tensor]) -> None:
        """One training step: replayed from a CUDA graph under ``train.cuda_graphs``, else ``run_step``."""
        self._progress.fill_(self.step / self.recipe.train.steps)
        self._apply_optimizer_schedules()
        if self.graphed is not None:
            self.graphed(batches, sums)
        else:
            self.run_step(batches, sums)

    def _apply_optimizer_schedules(self) -> None:
        """``optim.lr_decay_to`` / ``optim.beta2_final``: each net's learning rate and Adam beta2 on a cosine from
        their own values at step 0 to the final ones at the last step (host floats; ``rules`` keeps such runs
        out of CUDA graphs, which would not see them change)."""
        o = self.recipe.optim
        if o.lr_decay_to == 1 and o.beta2_final is None:
            return
        ramp = 0.5 * (1 - math.cos(math.pi * self.step / self.recipe.train.steps))  # 0 at the start, 1 at the end
        for name, opt in self.updates.optimizers.items():
            for group, (lr, (beta1, beta2)) in zip(opt.param_groups, self._base_hparams[name]):
                group["lr"] = lr * (1 + (o.lr_decay_to - 1) * ramp)
                if o.beta2_final is not None:
                    group["betas"] = (beta1, beta2 + (o.beta2_final - beta2) * ramp)

    def control_period(self) -> int:
        """Phase iterations after which a step's Python decisions repeat (CUDA graphs capture one per residue):
        the lazy penalties' schedules (``Phase.penalty_every``); nothing else in a loss branches on the step."""
        return math.lcm(*(p.penalty_every for p in self.phases))

    def control_pattern(self, period: int) -> tuple:
        """This step's Python decisions: which phases are due, where each phase is in ``period`` (what a CUDA
        graph must be captured per; see cuda_graphs)."""
        due = tuple(self.step % p.every == 0 for p in self.phases)
        return due, tuple(n % period for n in self.phase_iterations.values())

    def batches_per_step(self) -> int:
        """How many batches ``run_step`` draws at this step: one, plus one per repeat of a due phase."""
        return 1 + sum(p.repeats - 1 for p in self.phases if self.step % p.every == 0)

    def run_step(self, batches: Iterator[dict[str, Tensor]], sums: dict[str, Tensor]) -> None:
        """Every phase due at this step, in order; repeats after the first draw fresh batches."""
        batch = self._to_device(next(batches))
        self._step_bad.zero_()
        for phase in self.phases:
            if self.step % phase.every:
                continue
            for repeat in range(phase.repeats):
                if repeat:
                    batch = self._to_device(next(batches))
                self.run_phase(phase, batch, sums)
        self._bad_run.add_(1).mul_(self._step_bad)  # +1 on a bad step, back to 0 on a good one

    @property
    def bad_steps(self) -> int:
        """Steps in a row, up to now, with a non-finite loss (reads the device: not for the hot path)."""
        return int(self._bad_run.item())

    @property
    def skipped(self) -> int:
        """Updates skipped for a non-finite loss since the start (reads the device)."""
        return int(self._skipped.item())

    def check_bad_steps(self) -> None:
        """Stop once ``train.max_bad_steps`` steps in a row had non-finite losses (one host read per call)."""
        bad = self.bad_steps
        if bad >= self.recipe.train.max_bad_steps:
            raise TrainingError(f"{bad} steps in a row had non-finite losses (train.max_bad_steps="
                                f"{self.recipe.train.max_bad_steps}), the last at step {self.step}. Lower "
                                f"optim.lr, try train.mixed_precision: bf16 or no, or resume from an earlier "
                                f"checkpoint.")

    def run_phase(self, phase: Phase, batch: dict[str, Tensor], sums: dict[str, Tensor]) -> None:
        """One update of the phase's nets (under DeepSpeed: one backward per net, see deepspeed_engines).

        Metrics add up as means over the phase's repeats (and DeepSpeed's per-net passes), so a D loss logs
        the same value whatever ``d_steps`` is."""
        groups = self.updates.groups(phase.updates)
        share = len(groups) * phase.repeats
        for updates in groups:
            values = self._update(phase, updates, batch)
            for key, value in (values or {}).items():
                sums[f"{phase.name}/{key}"] = sums.get(f"{phase.name}/{key}", 0) + value / share
        self.phase_iterations[phase.name] += 1

    def _update(self, phase: Phase, updates: tuple[str, ...], batch: dict[str, Tensor]) -> dict:
        """Freeze every other net, evaluate the phase's loss under autocast, update ``updates`` (skipped on
        the device, and counted, when the loss is non-finite on some rank)."""
        for name, net in self.method.nets.items():
            net.requires_grad_(name in updates)
        iteration = self.phase_iterations[phase.name]
        ctx = StepContext(self.step, iteration, self.device, grad_scale=self._grad_scale(), progress=self._progress,
                          penalty_gain=phase.penalty_gain(iteration))
        with self._autocast():
            loss, values = phase.loss(batch, ctx)
        bad = self.updates.apply(updates, loss)  # [1]
        self._step_bad.copy_(torch.maximum(self._step_bad, bad[0]))
        self._skipped.add_(bad[0])
        return values

    def _autocast(self):
        """accelerate's autocast; under CUDA graphs a plain one without the weight-cast cache, which a
        graph capture must not use (PyTorch's CUDA-graph notes)."""
        if self.graphs:
            dtype = torch.bfloat16 if self.recipe.train.mixed_precision == "bf16" else torch.float32
            return torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32,
                                  cache_enabled=False)
        return self.accelerator.autocast()

    # -- the loop ------------------------------------------------------------------------------------
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
                    self.ema.update(self._sampling_nets(), self.step)
                if bar is not None:
                    bar.update(1)
                if self.step % t.log_every == 0 or self.step == t.steps:
                    last = self._log_tick(metrics_log, sums, tick_steps, time.perf_counter() - tick_start, bar)
                    sums, tick_start, tick_steps = {}, time.perf_counter(), 0
                    self.check_bad_steps()  # here, not per step: reading the device stalls the GPU queue
                self._periodic_outputs(metrics_log)
                if self._stop_requested(stop):
                    ckpt = self.save_checkpoint()
                    log.warning("stopped by signal at step %d; checkpoint %s", self.step, ckpt)
                    return TrainResult(self.run_dir, self.step, True, last, ckpt)
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

    def _progress_bar(self):
        if not (self.is_main and self.recipe.train.progress):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.recipe.train.steps, initial=self.step, desc=self.recipe.method.name,
                    unit="step", dynamic_ncols=True)

    def _log_tick(self, metrics_log: MetricsLog, sums: dict, steps: int, seconds: float, bar) -> dict:
        """Average the interval's metrics over steps and ranks in one collective; write JSONL/TensorBoard.

        ``data/corrupt_samples`` and ``data/unreadable_shards`` are what the shard stream skipped during the
        interval, summed over ranks (the mean of world x count is the sum)."""
        skipped_data = {f"data/{k}": torch.tensor(float(v * self.world), device=self.device)
                        for k, v in self._data_skips().items()}
        values = distributed.mean_across_ranks({**{k: v / steps for k, v in sums.items()}, **skipped_data})
        images = steps * self.recipe.train.batch_size * self.world
        values["images_per_s"] = images / max(seconds, 1e-9)
        skipped = self.skipped
        if skipped > self._skipped_logged:
            log.warning("step %d: %d updates skipped for non-finite losses so far (%d steps in a row now)",
                        self.step, skipped, self.bad_steps)
        self._skipped_logged = skipped
        values["skipped_updates"] = float(skipped)
        with self._full_parameters(self.method.nets.values()):
            values["rank_divergence"] = distributed.rank_divergence(self.method.nets.values())
        metrics_log.write(self.step, values)
        if bar is not None:
            hidden = ("skipped_updates", "rank_divergence", "data/corrupt_samples", "data/unreadable_shards")
            shown = {k.split("/")[-1]: f"{v:.3g}" for k, v in values.items() if k not in hidden}
            bar.set_postfix(shown, refresh=False)
        return values

    def _data_skips(self) -> dict[str, int]:
        """Corrupt samples and unreadable shards this rank's stream skipped since the last call (shards only)."""
        stats = getattr(self.stream, "stats", {})
        names = {"corrupt_skipped": "corrupt_samples", "shard_errors": "unreadable_shards"}
        out = {names[k]: v - self._data_logged.get(k, 0) for k, v in stats.items() if k in names}
        self._data_logged = dict(stats)
        return out

    def _periodic_outputs(self, metrics_log: MetricsLog) -> None:
        t, e = self.recipe.train, self.recipe.eval
        if t.sample_every and self.step % t.sample_every == 0:
            self._save_samples(metrics_log)
        if self.evaluator is not None and self.step % e.every == 0:
            self._recalibrate_sampling_nets()
            with evaluation_noise(self.recipe.run.seed, self.step, self.rank, self.device):  # training's RNG untouched
                score = self.evaluator.evaluate(self.step, self.generate)
            metrics_log.write(self.step, {f"eval/{k}": v for k, v in score.items()})
            plot = self.evaluator.plot_path
            if plot and os.path.isfile(plot):
                metrics_log.image(self.step, "eval", plot)
            if self.evaluator.is_best:
                self.save_checkpoint("best")
        if t.ckpt_every and self.step % t.ckpt_every == 0 and self.step < t.steps:
            self.save_checkpoint()

    # -- outputs -------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int) -> Tensor:
        """n samples from the EMA nets on this rank's device (what FID and grids use)."""
        out = []
        for start in range(0, n, self.recipe.eval.batch_size):
            m = min(self.recipe.eval.batch_size, n - start)
            out.append(self.method.generate(self.method.sample_noise(m, self.device), nets=self.ema.nets).float())
        return torch.cat(out)

    def _recalibrate_sampling_nets(self) -> None:
        """``eval.bn_recalibration``: the EMA copies' batch norms get statistics of fresh samples (see
        eval/recalibration.py); the next EMA update copies the training statistics back."""
        recalibrate_sampling_nets(self.method, self.ema.nets, self.recipe.eval, self.recipe.run.seed, self.device)

    @torch.no_grad()
    def _save_samples(self, metrics_log: MetricsLog | None = None) -> None:
        if not self.is_main:
            return
        self._recalibrate_sampling_nets()
        samples = self.method.generate(self.fixed_noise, nets=self.ema.nets).float().cpu()
        reference = None
        if self.source.data_dim is not None:
            reference = self.stream.data[:2000]
        path = save_samples(samples, os.path.join(self.run_dir, "samples", f"step-{self.step:08d}.png"), reference)
        if metrics_log is not None:
            metrics_log.image(self.step, "samples", path)

    def _open_trackers(self) -> list:
        """``log.trackers`` on rank 0 (resuming their runs), with the resolved recipe as their config."""
        if not self.is_main:
            return []
        r = self.recipe
        return open_trackers(r.log, self.run_dir, r.run.name, r.run.out_dir, to_dict(r))

    def save_checkpoint(self, name: str | None = None) -> str:
        with self._full_parameters(self.method.nets.values()):  # ZeRO-3: whole weights, for sample/eval too
            state = self.state_dict() if self.is_main else {}
        return self.checkpoints.save(name or f"step-{self.step:08d}", state, self.updates.save)

    def _write_run_files(self) -> None:
        if self.is_main:
            os.makedirs(self.run_dir, exist_ok=True)
            with open(os.path.join(self.run_dir, "recipe.yaml"), "w") as f:
                f.write(dump_recipe(self.recipe))
        distributed.barrier()
