"""Everything that crosses processes during training, in one place (the trainer's only collective helpers).

Gradients are averaged explicitly after each phase's backward, as stylegan2-ada-pytorch does, rather than by
DistributedDataParallel hooks: a GAN phase freezes some nets, reuses others across phases, backpropagates
through double-backward penalties and calls batch-norm discriminators twice; DDP's reducer assumes one
forward/backward per iteration with every parameter used, and breaks on each of those.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """All-reduce (mean) the gradients of ``params`` in one flat bucket per dtype; no-op on one process."""
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    world = dist.get_world_size()
    for dtype in {g.dtype for g in grads}:
        group = [g for g in grads if g.dtype == dtype]
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        flat.div_(world)
        offset = 0
        for g in group:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Make every rank hold rank ``src``'s parameters and buffers (identical start, whatever the RNG)."""
    if not is_distributed():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src)


def mean_across_ranks(values: dict[str, Tensor]) -> dict[str, float]:
    """Average scalar metrics over ranks in a single collective; returns Python floats (one host sync)."""
    if not values:
        return {}
    keys = sorted(values)
    stacked = torch.stack([values[k].float().reshape(()) for k in keys])
    if is_distributed():
        dist.all_reduce(stacked)
        stacked /= dist.get_world_size()
    return dict(zip(keys, stacked.tolist()))


def max_across_ranks(t: Tensor) -> Tensor:
    """Element-wise max of ``t`` over ranks, in place, on the device (no host sync); ``t`` itself alone."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is set on any rank (a signal may reach only some processes)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def rank_divergence(modules: Iterable[nn.Module]) -> float:
    """Largest difference across ranks of per-net parameter checksums (0.0 when all ranks agree).

    Averaged gradients and a shared start keep ranks identical; this catches the day they are not (a
    rank-dependent branch, a missed sync) at the cost of one tiny collective per logging tick.
    """
    sums = [torch.stack([p.detach().double().sum() for p in m.parameters()]).sum() for m in modules]
    if not sums or not is_distributed():
        return 0.0
    local = torch.stack(sums)
    high, low = local.clone(), local.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).abs().max().item())


def leave_process_group(wait_for_others: bool) -> None:
    """Tear the process group down before the interpreter exits.

    Why: a gloo group left to interpreter shutdown can abort the process ("terminate called without an
    active exception", exit -6), which torchrun reports as a failed worker and SLURM as a FAILED job even
    though training finished. ``wait_for_others`` (after a clean finish) keeps rank 0's store alive until
    every rank is done with it; after an error a barrier could hang, so it is skipped.
    """
    if not dist.is_initialized():
        return
    if wait_for_others:
        dist.barrier()
    dist.destroy_process_group()
