"""Where a schedule is along its horizon: the fraction of the horizon's images seen, and the ramp a shape makes
of it. Shared by the trainer (learning rate, Adam beta2, the EMA's half-life) and the losses (R3GAN's gamma),
which receive the fraction as a device tensor (``StepContext.progress``).

Why images: a horizon counted in images over the whole batch (batch_size x processes a step) means the same at
every batch size and process count, as the published R3GAN and stylegan2-ada schedules do (linear over their
first 20M images, then held).
"""

from __future__ import annotations

import math

SHAPES = ("cosine", "linear")


def horizon_fraction(step: int, images_per_step: int, horizon_images: int, total_steps: int) -> float:
    """The fraction of the horizon reached after ``step`` steps, clamped to [0, 1]; a horizon of 0 is the whole
    run (``total_steps`` steps, so the fraction is step / total_steps exactly)."""
    horizon = horizon_images or total_steps * images_per_step
    return min(1.0, step * images_per_step / horizon)


def ramp(fraction: float, shape: str) -> float:
    """0 at the start of the horizon, 1 at its end: ``cosine`` (half a cosine) or ``linear``."""
    if shape == "linear":
        return fraction
    return 0.5 * (1 - math.cos(math.pi * fraction))


def ema_decay(halflife_images: int, fraction: float, images_per_step: int) -> float:
    """The EMA decay of one step whose half-life is ``halflife_images`` ramped linearly over the horizon
    (stylegan2-ada's ``0.5 ** (batch / ema_nimg)``): 0 (the copy follows the nets) at the start."""
    halflife = halflife_images * fraction
    return 0.5 ** (images_per_step / halflife) if halflife > 0 else 0.0
