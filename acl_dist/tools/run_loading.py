"""A trained run, back from its checkpoint: the recipe it was trained with, its method and sampling nets.

Why a module of its own: `acl-dist sample`, `acl-dist eval` and `acl-dist repro` all start from a run
directory or one checkpoint and need the same thing; none of them needs optimizers, data streams or a
process group, so the trainer is not involved.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
from torch import nn

from acl_dist.config import Recipe, recipe_from_dict
from acl_dist.data.sources import TrainingSource, open_source, source_class
from acl_dist.errors import CheckpointError
from acl_dist.eval.recalibration import recalibrate_sampling_nets
from acl_dist.methods.base import Method
from acl_dist.methods.registry import build_method
from acl_dist.ops.augment_pipe import pipe_of
from acl_dist.training.checkpoint import load_state, resolve_checkpoint


@dataclass
class LoadedRun:
    recipe: Recipe
    method: Method
    nets: dict[str, nn.Module]  # what generate()/encode()/decode() should use: EMA copies when asked
    step: int
    checkpoint: str

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
        """``n`` samples [n, C, H, W] in [-1, 1] (points [n, 2] for toy data) from the loaded sampling nets, on
        noise seeded with ``seed`` (the global RNG is left as it was)."""
        device = torch.device(device) if device is not None else next(self.method.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            out = self.method.generate(self.method.sample_noise(n, device), self.nets).float()
        return out.clamp(-1, 1) if out.dim() == 4 else out  # images are [-1, 1]; toy points are not

    def source(self) -> TrainingSource:
        """The run's training source (its data, if it can be read here: shards may have moved)."""
        r = self.recipe
        return open_source(r.data, r.model.resolution, r.model.channels)

    @property
    def run_dir(self) -> str:
        """The run directory the checkpoint belongs to (``<run>/checkpoints/<name>``)."""
        return os.path.dirname(os.path.dirname(self.checkpoint))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name}: no CUDA device is visible")
    return torch.device(name)


def load_run(path: str, device: torch.device | str = "cpu", ema: bool = True) -> LoadedRun:
    """Load ``path`` (a run directory, whose newest complete checkpoint is used, or a checkpoint directory).

    Args:
        ema: sample with the EMA copies of the sampling nets (what the trainer's grids and FID use).
    Raises:
        CheckpointError: nothing loadable there (no complete checkpoint, damaged or unsafe files).
    """
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such run or checkpoint directory")
    try:
        checkpoint = resolve_checkpoint(path)
    except FileNotFoundError as err:
        raise CheckpointError(str(err)) from None
    state, _ = load_state(checkpoint, 0)
    recipe = recipe_from_dict(state["recipe"], strict=False)  # as trained; not re-validated (data may move)
    device = torch.device(device)
    data_dim = source_class(recipe.data.source).data_dim
    method = build_method(recipe.method, recipe.model, data_dim, pipe_of(recipe.data)).to(device)
    try:
        method.nets.load_state_dict(state["nets"])
    except RuntimeError as err:  # the recipe stored beside the nets does not describe them: damaged
        raise CheckpointError(f"{checkpoint}: its nets do not match its own recipe ({str(err)[:200]})") from None
    method.eval().requires_grad_(False)
    nets: dict[str, nn.Module] = dict(method.nets.items())
    if ema and state.get("ema"):
        for name, tensors in state["ema"].items():
            copy_net = copy.deepcopy(method.nets[name])
            copy_net.load_state_dict(tensors)
            nets[name] = copy_net.eval().requires_grad_(False)
    recalibrate_sampling_nets(method, nets, recipe.eval, recipe.run.seed, device)  # as the trainer does
    return LoadedRun(recipe, method, nets, int(state["step"]), checkpoint)
