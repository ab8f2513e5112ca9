"""How a phase's loss becomes an update of its nets: torch optimizers, or DeepSpeed engines, behind one interface.

The trainer calls the same methods whichever mechanism runs (``groups``, ``apply``, ``state_dict`` /
``load_state_dict``, ``save`` / ``load`` of the files a mechanism keeps itself, ``full_parameters``), so
the loop never branches on DeepSpeed (torchtitan's ``OptimizersContainer`` is the model).

What differs, and stays inside:
- torch optimizers (:class:`OptimizerUpdates`): one backward for all of a phase's nets, gradients averaged
  across ranks after it, clipped, and a fused Adam step that skips itself on the device when the loss was
  non-finite (``found_inf``), so the host never reads the loss;
- DeepSpeed (:class:`DeepSpeedUpdates`): one backward per net (each engine runs its own gradient
  partitioning epilogue, see ``deepspeed_engines``), the non-finite check on the host (engines step there),
  partitioned optimizer states in files of their own, and under ZeRO-3 parameters gathered on request.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterable

import torch
from torch import Tensor, nn

from acl_dist import distributed

log = logging.getLogger(__name__)


def step_unless(optimizer: torch.optim.Optimizer, bad: Tensor) -> None:
    """``optimizer.step()`` unless ``bad`` [1] is 1.0, decided on the device where the optimizer can.

    Fused Adam takes ``found_inf`` (the attribute GradScaler sets) and leaves parameters, moments and the
    step count as they were where it is non-zero; other optimizers need the host to read the flag.
    """
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer.found_inf = bad.reshape(())  # fused Adam subtracts it from its 0-d step counters
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not bool(bad.item()):
        optimizer.step()


class Updates:
    """The interface; ``optimizers`` holds one Adam per trained net (DeepSpeed engines wrap them)."""

    zero_stage = 0

    def __init__(self, nets: nn.ModuleDict, optimizers: dict[str, torch.optim.Optimizer], device: torch.device):
        self.nets, self.optimizers, self.device = nets, optimizers, device

    def groups(self, names: tuple[str, ...]) -> list[tuple[str, ...]]:
        """The nets of a phase, split into what one backward updates."""
        raise NotImplementedError

    def apply(self, names: tuple[str, ...], loss: Tensor) -> Tensor:
        """Backpropagate ``loss`` into ``names`` and step them, unless the loss is non-finite on some rank.

        Returns the skip flag [1] on the device (1.0: skipped), for the trainer's counters.
        """
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Optimizer states that go into ``state.pt`` (empty where the mechanism keeps its own files)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def save(self, directory: str) -> None:
        """Collective: the files the mechanism keeps itself, under ``directory`` (every rank writes its part)."""

    def load(self, directory: str) -> None:
        """Restore what ``save`` wrote."""

    def full_parameters(self, modules: Iterable[nn.Module], modifier_rank: int | None = None):
        """Whole parameters inside the block where ranks hold slices (ZeRO-3); a no-op elsewhere."""
        return contextlib.nullcontext()


class OptimizerUpdates(Updates):
    """torch optimizers: one backward per phase, gradients averaged across ranks, clipped, fused step."""

    def __init__(self, nets: nn.ModuleDict, optimizers: dict[str, torch.optim.Optimizer], device: torch.device,
                 accelerator, scaler, grad_clip: float):
        super().__init__(nets, optimizers, device)
        self.accelerator, self.scaler, self.grad_clip = accelerator, scaler, grad_clip

    def groups(self, names: tuple[str, ...]) -> list[tuple[str, ...]]:
        return [names]

    def apply(self, names: tuple[str, ...], loss: Tensor) -> Tensor:
        bad = distributed.max_across_ranks((~torch.isfinite(loss.detach())).float().reshape(1))  # [1], no sync
        for name in names:
            self.optimizers[name].zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self._step(names, bad)
        return bad

    def _step(self, names: tuple[str, ...], bad: Tensor) -> None:
        """Average, clip, step; ``bad`` [1] (1.0: some rank's loss was non-finite) skips on the device.

        Under fp16 the GradScaler finds the same non-finite gradients itself, skips and lowers its scale.
        """
        params = [p for n in names for p in self.nets[n].parameters()]
        distributed.average_gradients(params)
        opts = [self.optimizers[n] for n in names]
        if self.grad_clip > 0:
            if self.scaler is not None:
                for opt in opts:
                    self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        for opt in opts:
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                step_unless(opt, bad)
        if self.scaler is not None:
            self.scaler.update()  # once per phase: each phase is its own backward/step pair

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])


class DeepSpeedUpdates(Updates):
    """One DeepSpeed engine per trained net, stepped directly (see ``deepspeed_engines``)."""

    def __init__(self, nets: nn.ModuleDict, optimizers: dict[str, torch.optim.Optimizer], device: torch.device,
                 engines: dict[str, object]):
        from acl_dist.training.deepspeed_engines import zero_stage

        super().__init__(nets, optimizers, device)
        self.engines = engines
        self.zero_stage = zero_stage(engines)

    def groups(self, names: tuple[str, ...]) -> list[tuple[str, ...]]:
        return [(name,) for name in names]

    def apply(self, names: tuple[str, ...], loss: Tensor) -> Tensor:
        if distributed.any_rank(not bool(torch.isfinite(loss)), self.device):  # engines step on the host
            log.warning("non-finite loss (%s) for %s: update skipped", loss.detach().float().item(), ", ".join(names))
            return torch.ones(1, device=self.device)
        (name,) = names
        self.engines[name].backward(loss)
        self.engines[name].step()
        return torch.zeros(1, device=self.device)

    def save(self, directory: str) -> None:
        from acl_dist.training.deepspeed_engines import save_engines

        save_engines(self.engines, os.path.join(directory, "deepspeed"))

    def load(self, directory: str) -> None:
        from acl_dist.training.checkpoint import verify_safe
        from acl_dist.training.deepspeed_engines import load_engines

        verify_safe(os.path.join(directory, "deepspeed"))  # DeepSpeed unpickles its files itself
        load_engines(self.engines, os.path.join(directory, "deepspeed"))

    def full_parameters(self, modules: Iterable[nn.Module], modifier_rank: int | None = None):
        if self.zero_stage != 3:
            return contextlib.nullcontext()
        from acl_dist.training.deepspeed_engines import full_parameters

        return full_parameters(modules, modifier_rank)
