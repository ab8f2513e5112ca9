"""One training step: every phase due, each phase's update under autocast, with non-finite losses skipped and
counted on the device, and the optimizers' schedules. A part of :class:`~acl_dist.training.trainer.Trainer`;
``cuda_graphs.GraphedStep`` captures ``run_step``.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor

from acl_dist import distributed
from acl_dist.errors import TrainingError
from acl_dist.methods.base import Phase, StepContext
from acl_dist.schedules import ema_decay, horizon_fraction
from acl_dist.schedules import ramp as schedule_ramp


class StepRunner:
    """The trainer's step (a mixin of ``Trainer``)."""

    def train_step(self, batches: Iterator[dict[str, Tensor]], sums: dict[str, Tensor]) -> None:
        """One training step: replayed from a CUDA graph under ``train.cuda_graphs``, else ``run_step``."""
        self._progress.fill_(self.schedule_fraction())
        self._apply_optimizer_schedules()
        if self.graphed is not None:
            self.graphed(batches, sums)
        else:
            self.run_step(batches, sums)
        self.augment.end_step(self.images_per_step(), distributed.sum_across_ranks)  # ADA adjusts its p here

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

    def images_per_step(self) -> int:
        """Images a step draws over the whole batch (its first batch on every rank: what schedules count)."""
        return self.recipe.train.batch_size * self.world

    def schedule_fraction(self, step: int | None = None) -> float:
        """How far along ``train.schedule_images`` (the run's length when 0) the run is at ``step``, in [0, 1]."""
        t = self.recipe.train
        return horizon_fraction(self.step if step is None else step, self.images_per_step(), t.schedule_images,
                                t.steps)

    def _ema_decay(self) -> float | None:
        """``train.ema_halflife_images``: this step's EMA decay, its half-life ramped over the horizon; None: the
        EMA's own fixed decay (``train.ema`` after ``train.ema_start``)."""
        t = self.recipe.train
        if not t.ema_halflife_images:
            return None
        return ema_decay(t.ema_halflife_images, self.schedule_fraction(), self.images_per_step())

    def _apply_optimizer_schedules(self) -> None:
        """``optim.lr_decay_to`` / ``optim.beta2_final``: each net's learning rate and Adam beta2 from their own
        values at step 0 to the final ones at the end of the horizon (``optim.schedule``: cosine or linear), held
        after it (host floats; ``rules`` keeps such runs out of CUDA graphs, which would not see them change)."""
        o = self.recipe.optim
        if o.lr_decay_to == 1 and o.beta2_final is None:
            return
        ramp = schedule_ramp(self.schedule_fraction(), o.schedule)  # 0 at the start, 1 at the horizon
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

    def _autocast(self):
        """accelerate's autocast; under CUDA graphs a plain one without the weight-cast cache, which a
        graph capture must not use (PyTorch's CUDA-graph notes)."""
        if self.graphs:
            dtype = torch.bfloat16 if self.recipe.train.mixed_precision == "bf16" else torch.float32
            return torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32,
                                  cache_enabled=False)
        return self.accelerator.autocast()
