"""Exponential moving average of the sampling nets (what grids, FID and `acl-dist sample` use)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps averaged copies of some nets: p_ema <- decay * p_ema + (1 - decay) * p; buffers are copied.

    Before ``start`` steps the copies simply follow the nets (early weights are poor anchors).
    """

    def __init__(self, nets: dict[str, nn.Module], decay: float, start: int = 0):
        self.decay, self.start = decay, start
        self.nets = {name: copy.deepcopy(net).eval().requires_grad_(False) for name, net in nets.items()}

    @torch.no_grad()
    def update(self, nets: dict[str, nn.Module], step: int, decay: float | None = None) -> None:
        """One step of the average; ``decay`` overrides the fixed one (a scheduled half-life, say)."""
        if decay is None:
            decay = self.decay if step >= self.start else 0.0
        for name, ema_net in self.nets.items():
            source = nets[name]
            ema_params = list(ema_net.parameters())
            src_params = [p.detach() for p in source.parameters()]
            if decay == 0.0:
                torch._foreach_copy_(ema_params, src_params)
            else:
                torch._foreach_lerp_(ema_params, src_params, 1.0 - decay)
            for b_ema, b in zip(ema_net.buffers(), source.buffers()):
                b_ema.copy_(b)

    def state_dict(self) -> dict:
        return {name: net.state_dict() for name, net in self.nets.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, net in self.nets.items():
            net.load_state_dict(state[name])
