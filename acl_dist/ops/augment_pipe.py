"""The augmentation pipe: what every image critic sees of its images, built once and handed to the losses.

Why one object: augmentation is a property of the run's data (``data.augment``), not of any one method. The
trainer (and run loading) build it once from the recipe (``build_augment_pipe``) and pass it to the method,
whose adversaries apply it to reals and fakes alike and hand it to the penalty op, which applies it where the
penalty needs it (as EDM and stylegan2-ada hand one ``augment_pipe`` to their loss). A pipe may carry state
that belongs to the run, such as ADA's adaptive probability: ``state_dict`` / ``load_state_dict`` are saved
and restored with every checkpoint.

Pipes: ``AugmentPipe`` (nothing: the images as they are), ``DiffAugmentPipe`` (DiffAugment's policies,
ops/diffaugment.py) and ``AdaAugmentPipe`` (stylegan2-ada's operations, ops/ada_ops.py, each with a probability
``p`` that is either scheduled over the horizon, as R3GAN trains, or adapted by ADA's rule). Every pipe keeps
images differentiable, so the generator is trained through it.

ADA's loop, and who owns what: the critic loss shows the pipe its real scores (``observe``: device sums, no host
read); the trainer ends every step with ``end_step(images, reduce)``, and every ``interval`` steps the pipe
reduces its sums across processes with the trainer's ``reduce`` and moves ``p`` by
``sign(E[sign D(real)] - target) * images / speed_images`` (Karras et al. 2020, eq. in section 3). ``p`` is a
device tensor, saved with the checkpoint, so a resumed run continues the same ``p``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from acl_dist.ops import ada_ops
from acl_dist.ops.diffaugment import augment


class AugmentPipe:
    """No augmentation: the critic sees the images themselves. The interface every pipe has."""

    policies: tuple[str, ...] = ()

    def __call__(self, images: Tensor) -> Tensor:
        """What the critic sees of ``images`` [B, C, H, W] (real or generated), differentiably."""
        return images

    @property
    def active(self) -> bool:
        """Whether the pipe changes anything (a critic step may skip calling it when not)."""
        return False

    def to(self, device: torch.device | str) -> "AugmentPipe":
        return self

    def bind_progress(self, progress: Tensor) -> None:
        """The run's schedule fraction (a 0-d device tensor the trainer fills every step); unused here."""

    def observe(self, real_scores: Tensor) -> None:
        """The critic's scores of real images at this critic step (ADA's feedback); unused here."""

    def end_step(self, images: int, reduce: Callable[[Tensor], Tensor]) -> None:
        """After every training step of ``images`` images (all processes); ``reduce`` sums a tensor across them."""

    def state_dict(self) -> dict[str, Tensor]:
        """The pipe's state that a resumed run must continue from (none here)."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got {sorted(state)}: the checkpoint was "
                             "trained with another augmentation (data.augment)")


class DiffAugmentPipe(AugmentPipe):
    """DiffAugment (Zhao et al. 2020): every image its own draw of ``policies`` (color, translation, cutout)."""

    def __init__(self, policies: Sequence[str]):
        self.policies = tuple(policies)

    def __call__(self, images: Tensor) -> Tensor:
        return augment(images, self.policies)

    @property
    def active(self) -> bool:
        return True


class AdaAugmentPipe(AugmentPipe):
    """stylegan2-ada's operations (``ops``), each image its own draws, with probability ``p``: scheduled
    (``target`` 0: ``p_max`` times the run's schedule fraction, linear from 0 as R3GAN's presets ramp it) or
    adaptive (ADA: from 0, toward keeping E[sign(D(real))] at ``target``); geometric operations resampled by
    ``resample`` (``wavelet`` as published, or ``bilinear``: ops/ada_ops.py)."""

    def __init__(self, ops: Sequence[str], p_max: float = 0.0, target: float = 0.0, speed_images: int = 500_000,
                 interval: int = 4, resample: str = "bilinear"):
        unknown = [o for o in ops if o not in ada_ops.OPS]
        if unknown:
            raise ValueError(f"unknown augmentation ops {unknown}; known: {', '.join(ada_ops.OPS)}")
        if resample not in ada_ops.RESAMPLE:
            raise ValueError(f"unknown resampling {resample!r}; known: {', '.join(ada_ops.RESAMPLE)}")
        self.policies, self.resample = tuple(ops), resample
        self.p_max, self.target, self.speed_images, self.interval = p_max, target, speed_images, interval
        self.p = torch.zeros([])  # ADA's probability (adaptive pipes only)
        self._signs = torch.zeros([])  # sum of sign(D(real)) since the last adjustment
        self._count = torch.zeros([])  # real scores seen since then
        self._steps = 0  # training steps since then (host: the trainer counts steps, not the device)
        self._progress: Tensor | None = None

    @property
    def adaptive(self) -> bool:
        return self.target > 0

    @property
    def active(self) -> bool:
        return True

    def to(self, device: torch.device | str) -> "AdaAugmentPipe":
        self.p, self._signs, self._count = (t.to(device) for t in (self.p, self._signs, self._count))
        return self

    def bind_progress(self, progress: Tensor) -> None:
        self._progress = progress

    def probability(self) -> Tensor:
        """This step's ``p`` (0-d, on the device)."""
        if self.adaptive:
            return self.p
        if self._progress is None:
            return self.p.new_full([], self.p_max)  # no schedule bound (a pipe used outside the trainer): p_max
        return self.p_max * self._progress.to(self.p.dtype)

    def __call__(self, images: Tensor) -> Tensor:
        return ada_ops.augment(images, self.policies, self.probability(), self.resample)

    def observe(self, real_scores: Tensor) -> None:
        if self.adaptive:
            scores = real_scores.detach().float()
            self._signs.add_(torch.sign(scores).sum())
            self._count.add_(scores.numel())

    def end_step(self, images: int, reduce: Callable[[Tensor], Tensor]) -> None:
        if not self.adaptive:
            return
        self._steps += 1
        if self._steps < self.interval:
            return
        sums = reduce(torch.stack([self._signs, self._count])).to(self.p.device)  # [2]: every process's reals
        rt = sums[0] / sums[1].clamp(min=1)
        adjust = torch.sign(rt - self.target) * (images * self._steps / self.speed_images)
        self.p.copy_((self.p + adjust).clamp(0, 1))
        self._signs.zero_()
        self._count.zero_()
        self._steps = 0

    def state_dict(self) -> dict[str, Tensor]:
        return {"p": self.p.clone(), "signs": self._signs.clone(), "count": self._count.clone(),
                "steps": torch.tensor(self._steps)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if set(state) != {"p", "signs", "count", "steps"}:
            raise ValueError(f"AdaAugmentPipe's state is p, signs, count, steps; got {sorted(state)}: the checkpoint "
                             "was trained with another augmentation (data.augment, data.augment_ops)")
        self.p.copy_(state["p"])
        self._signs.copy_(state["signs"])
        self._count.copy_(state["count"])
        self._steps = int(state["steps"])


def build_augment_pipe(policies: Sequence[str], ops: Sequence[str] = (), p_max: float = 0.0, ada_target: float = 0.0,
                       ada_kimg: int = 500, ada_interval: int = 4, resample: str = "bilinear") -> AugmentPipe:
    """The pipe of the recipe's ``data:`` section: stylegan2-ada's ``augment_ops`` (scheduled to ``augment_p``,
    or adapted toward ``ada_target``; geometric ones resampled by ``resample``), DiffAugment's ``augment``
    policies, or none."""
    if ops:
        return AdaAugmentPipe(ops, p_max, ada_target, ada_kimg * 1000, ada_interval, resample)
    return DiffAugmentPipe(policies) if policies else AugmentPipe()


def pipe_of(data) -> AugmentPipe:
    """The pipe a recipe's ``data:`` section asks for (what the trainer and run loading build)."""
    return build_augment_pipe(data.augment, data.augment_ops, data.augment_p, data.ada_target, data.ada_kimg,
                              data.ada_interval, data.augment_resample)
