"""The augmentation pipe: what every image critic sees of its images, built once and handed to the losses.

Why one object: augmentation is a property of the run's data (``data.augment``), not of any one method. The
trainer (and run loading) build it once from the recipe (``build_augment_pipe``) and pass it to the method,
whose adversaries apply it to reals and fakes alike and hand it to the penalty op, which applies it where the
penalty needs it (as EDM and stylegan2-ada hand one ``augment_pipe`` to their loss). A pipe may carry state
that belongs to the run, such as ADA's adaptive probability: ``state_dict`` / ``load_state_dict`` are saved
and restored with every checkpoint.

Pipes: ``AugmentPipe`` (nothing: the images as they are) and ``DiffAugmentPipe`` (DiffAugment's policies,
ops/diffaugment.py). Every pipe keeps images differentiable, so the generator is trained through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

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


def build_augment_pipe(policies: Sequence[str]) -> AugmentPipe:
    """The pipe of ``data.augment``: DiffAugment with those policies, or none."""
    return DiffAugmentPipe(policies) if policies else AugmentPipe()
