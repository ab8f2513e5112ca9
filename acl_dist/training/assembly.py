"""How a run is put together from its recipe: the accelerator, the method with its augmentation pipe, the
updates (torch optimizers or DeepSpeed engines), compilation, the fixed noise of the sample grids and the
evaluator. A part of :class:`~acl_dist.training.trainer.Trainer`, which calls these once, in ``__init__``.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from acl_dist import distributed, rules
from acl_dist.config import Recipe
from acl_dist.errors import TrainingError
from acl_dist.methods.registry import build_method
from acl_dist.ops.augment_pipe import pipe_of
from acl_dist.training.eval_noise import evaluation_noise
from acl_dist.training.update import DeepSpeedUpdates, OptimizerUpdates, Updates


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


class RunAssembly:
    """The trainer's building steps (a mixin of ``Trainer``; they read and set its attributes)."""

    def _build_method(self):
        torch.manual_seed(self.recipe.run.seed)  # identical initial weights on every rank
        r = self.recipe
        self.augment = pipe_of(r.data).to(self.device)  # built once, handed to the losses
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
