"""What a run is at a step, and how it comes back: the state a checkpoint holds, resuming from one (checking
it fits the recipe first), and writing one. A part of :class:`~acl_dist.training.trainer.Trainer`.
"""

from __future__ import annotations

import logging

from acl_dist.config import to_dict
from acl_dist.errors import CheckpointError
from acl_dist.training.checkpoint import (
    checkpoint_mismatches,
    latest_checkpoint,
    load_state,
    recipe_differences,
    set_rng_state,
)

log = logging.getLogger("acl_dist.training.trainer")  # every part of the trainer logs as the trainer


class RunState:
    """The trainer's state and checkpoints (a mixin of ``Trainer``)."""

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

    def save_checkpoint(self, name: str | None = None) -> str:
        with self._full_parameters(self.method.nets.values()):  # ZeRO-3: whole weights, for sample/eval too
            state = self.state_dict() if self.is_main else {}
        return self.checkpoints.save(name or f"step-{self.step:08d}", state, self.updates.save)
