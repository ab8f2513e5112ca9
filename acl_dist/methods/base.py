"""What a method is: its nets and its update phases (StyleGAN2-ADA's Gmain/Dmain/Dreg, generalised).

A method holds the maths only. The trainer runs each phase: it freezes every net the phase does not update,
evaluates the phase's loss under autocast, backpropagates, synchronises gradients across processes, clips
and steps the optimizers of the phase's nets. Methods never touch devices, process groups, scalers or files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

import torch
from torch import Tensor, nn

from acl_dist.methods.options import AdversarialOptions, MethodOptions
from acl_dist.ops.augment_pipe import AugmentPipe
from acl_dist.priors import Prior

if TYPE_CHECKING:
    from acl_dist.sections import ModelConfig

Batch = dict[str, Tensor]  # {"image": [B, C, H, W] or [B, 2], "label": [B]}
Metrics = dict[str, Tensor]


@dataclass
class StepContext:
    """What a loss may know about the step it runs in. Nothing here is distributed or device-specific
    beyond the device new noise is drawn on."""

    step: int  # generator step (0-based)
    iteration: int  # how many times this phase has run before, over the whole run
    device: torch.device
    grad_scale: Tensor | None = None  # fp16 GradScaler's current scale, for gradient penalties
    penalty_gain: float = 1.0  # the lazy schedule's weight of this iteration's gradient penalty (``Phase``): the
    # phase's penalty_every on the iterations that take it, 0 on the others (skip it)
    progress: Tensor | None = None  # the fraction of the schedules' horizon reached (train.schedule_images; the
    # run's length by default: step / train.steps), a 0-d device tensor for schedules (R3GAN's gamma), updated in
    # place by the trainer, so a captured CUDA graph reads each step's value


LossFn = Callable[[Batch, StepContext], tuple[Tensor, Metrics]]


@dataclass(frozen=True)
class Phase:
    """One update: the nets whose optimizers step, the loss, how often and how many times per step.

    Each repeat after the first draws a fresh batch (n_critic critic steps see n_critic batches).
    """

    name: str
    updates: tuple[str, ...]
    loss: LossFn
    repeats: int = 1
    every: int = 1
    penalty_every: int = 1  # lazy regularisation (StyleGAN2): the loss's gradient penalty on one iteration in
    # this many, weighted by it (``StepContext.penalty_gain``); the trainer keeps the schedule, so a CUDA graph
    # is captured per residue of it

    def penalty_gain(self, iteration: int) -> float:
        """The penalty's weight at this phase ``iteration``: ``penalty_every`` when it is due, else 0. Over any
        ``penalty_every`` iterations the expected gradient equals the dense penalty's."""
        return float(self.penalty_every) if iteration % self.penalty_every == 0 else 0.0


class Method(nn.Module):
    """Base class: subclasses build ``self.nets`` and return their phases.

    Class metadata, read without building anything (validation, the trainer's plans): ``Options``, the
    dataclass the recipe's ``method:`` section becomes; ``net_names``, the nets ``__init__`` builds, in order.
    """

    Options: type[MethodOptions] = MethodOptions
    net_names: tuple[str, ...] = ()  # every net __init__ builds (validation checks per-net recipe keys on it)
    needs_labels = False  # the data stream must deliver labels
    images_only = False  # no nets for vector data (the 2-D toys)
    ada_feedback = False  # its critic loss shows the augmentation pipe its real scores (ADA can adapt to them)
    sampling_nets: tuple[str, ...] = ()  # nets used by generate(), tracked by the EMA
    encode_nets: tuple[str, ...] = ()  # nets used by encode(); empty when the method has no encoder

    def __init__(self, cfg: MethodOptions, model: ModelConfig, data_dim: int | None = None,
                 augment: AugmentPipe | None = None):
        """Args:
            cfg: the method's own options (the recipe's ``method:`` section).
            model: the nets' shapes (``model:``).
            data_dim: vector size for vector (toy) data; None for images.
            augment: the augmentation pipe every image critic sees its images through (``data.augment``, built
                once by the trainer: ops/augment_pipe.py); None: no augmentation.
        """
        nn.Module.__init__(self)
        self.cfg, self.model = cfg, model
        self.augment = augment if augment is not None else AugmentPipe()
        self.data_dim = data_dim
        self.nets = nn.ModuleDict()
        self.prior = Prior(self.cfg.prior, self.noise_dim(), self.cfg.prior_modes, self.cfg.prior_radius,
                           self.cfg.prior_std)

    # -- what subclasses provide ---------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def generate(self, noise: Tensor, nets: Mapping[str, nn.Module] | None = None) -> Tensor:
        """Samples from noise drawn by :meth:`sample_noise`; ``nets`` overrides (e.g. EMA copies)."""
        raise NotImplementedError

    def encode(self, x: Tensor, nets: Mapping[str, nn.Module] | None = None) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no encoder")

    def decode(self, code: Tensor, nets: Mapping[str, nn.Module] | None = None) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no code decoder")

    # -- shared helpers ------------------------------------------------------------------------------
    def noise_dim(self) -> int:
        return self.model.code_dim

    def sample_noise(self, n: int, device: torch.device | str) -> Tensor:
        return self.prior.sample(n, device)

    def net(self, name: str, nets: Mapping[str, nn.Module] | None = None) -> nn.Module:
        """``nets[name]`` when overridden (EMA copies for sampling), else the trained net."""
        if nets is not None and name in nets:
            return nets[name]
        return self.nets[name]

    @classmethod
    def penalty_keys(cls, cfg) -> list[str]:
        """Recipe keys of the input-gradient penalties this configuration computes (their double backward
        constrains where it can run: DeepSpeed ZeRO-3 cannot backpropagate twice through its parameters)."""
        if not isinstance(cfg, AdversarialOptions):
            return []
        weight = cfg.gp_weight if cfg.gp_weight is not None else getattr(cls, "default_gp_weight", 0.0)
        return ["method.gp_weight"] if weight > 0 else []

    def trained_nets(self) -> list[str]:
        """Every net some phase updates, in a stable order (each gets an optimizer)."""
        names: list[str] = []
        for phase in self.phases():
            names += [n for n in phase.updates if n not in names]
        return names


def metrics(**values: Tensor) -> Metrics:
    """Detached scalars for logging (kept on device: the trainer reduces them once per logging tick), in float32
    or wider: bf16/fp16 values are widened, a float64 run (the golden test's) keeps its precision."""
    return {k: v.detach().to(torch.promote_types(v.dtype, torch.float32)) for k, v in values.items()}


_REGISTRY: dict[str, type[Method]] = {}  # filled by @register as the family modules load (methods.registry)


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Register a method class under the name recipes use (``method.name: acl_gan_gp``)."""

    def add(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        _REGISTRY[name] = cls
        return cls

    return add
