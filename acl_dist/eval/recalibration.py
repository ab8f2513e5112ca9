"""Batch-norm statistics re-estimated on what sampling feeds the nets (``eval.bn_recalibration``).

Why: eval-mode batch norm normalises with running statistics gathered during training. Those can describe
other inputs than sampling feeds: ACL-GAN's Gx sees encoder codes in its reconstruction phase and Gz(z) codes
in its adversarial phases, and an EMA copy carries statistics of the live weights, not of its own. Running
the sampling nets in train mode on fresh noise and averaging the batch statistics gives eval mode the
statistics of the samples it draws. The noise is seeded and the global RNG untouched, so every rank gets the
same statistics (FID stays independent of the process count) and training draws the same numbers with and
without it (exact resume).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from acl_dist.methods.base import Method
from acl_dist.nets.norms import recalibrate_batch_norms
from acl_dist.sections import EvalConfig

SEED_OFFSET = 90_001  # added to run.seed: the noise that re-estimates batch norms before sampling


@torch.no_grad()
def recalibrate_sampling_nets(method: Method, nets: Mapping[str, nn.Module], cfg: EvalConfig, seed: int,
                              device: torch.device | str) -> int:
    """Re-estimate the batch norms of ``method.generate``'s nets (``nets`` overrides, e.g. EMA copies) from
    ``eval.bn_recalibration`` batches of ``eval.batch_size`` samples (``cfg``), on noise seeded from the run's
    ``seed``. Returns how many layers changed."""
    batches, batch_size = cfg.bn_recalibration, cfg.batch_size
    if batches <= 0:
        return 0
    modules = [method.net(name, nets) for name in method.sampling_nets]
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + SEED_OFFSET)  # priors draw from the global RNG: forked, untouched
        return recalibrate_batch_norms(
            modules, lambda: method.generate(method.sample_noise(batch_size, device), nets), batches)
