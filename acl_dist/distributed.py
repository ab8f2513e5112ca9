"""Everything that crosses processes, in one place: the trainer's collectives and evaluation's.

Gradients are averaged explicitly after each phase's backward, as stylegan2-ada-pytorch does, rather than by
DistributedDataParallel hooks: a GAN phase freezes some nets, reuses others across phases, backpropagates
through double-backward penalties and calls batch-norm discriminators twice; DDP's reducer assumes one
forward/backward per iteration with every parameter used, and breaks on each of those.
"""

from __future__ import annotations

import gc
from typing import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def backend_name() -> str:
    """The default process group's backend (nccl, gloo), "none" without one."""
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else "none"


def comm_device() -> torch.device:
    """Where tensors must be to cross processes: NCCL moves CUDA tensors only; gloo takes CPU tensors."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


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
    """Average scalar metrics over ranks in a single collective; returns Python floats (one host sync).

    Reduced in float32, or in float64 when a value is float64 (a float64 run keeps its precision in the log)."""
    if not values:
        return {}
    keys = sorted(values)
    wide = torch.float64 if any(v.dtype == torch.float64 for v in values.values()) else torch.float32
    stacked = torch.stack([values[k].to(wide).reshape(()) for k in keys])
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

    The collection first: a finished trainer sits in reference cycles (phases hold its bound methods), so its
    DDP wrappers, which hold the gloo group, would otherwise live until interpreter shutdown and the group's
    C++ destructor would join its worker threads there, the abort above (seen once in 2-process CI runs).
    """
    if not dist.is_initialized():
        return
    gc.collect()  # free whatever still holds the group (a finished trainer's DDP wrappers) while Python is whole
    if wait_for_others:
        dist.barrier()
    dist.destroy_process_group()


# -- evaluation: sums, broadcasts and a gather to rank 0 -------------------------------------------------


def sum_across_ranks(t: Tensor) -> Tensor:
    """Element-wise sum of ``t`` over ranks (one all-reduce), on the CPU; ``t`` itself without a process group."""
    if not is_distributed():
        return t
    flat = t.to(comm_device()).clone()
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    return flat.cpu()


def broadcast_tensor(t: Tensor | None, shape: tuple[int, ...], dtype: torch.dtype, src: int = 0) -> Tensor:
    """Rank ``src``'s tensor (of ``shape`` and ``dtype``) on every rank, on the CPU; other ranks pass None."""
    if not is_distributed():
        assert t is not None
        return t
    if dist.get_rank() == src:
        buf = t.to(device=comm_device(), dtype=dtype).contiguous()
    else:
        buf = torch.zeros(shape, dtype=dtype, device=comm_device())
    dist.broadcast(buf, src=src)
    return buf.cpu()


def broadcast_floats(values: list[float] | None, count: int, src: int = 0) -> list[float]:
    """Rank ``src``'s ``count`` floats on every rank (float64, so a float survives exactly)."""
    local = torch.tensor(values, dtype=torch.float64) if values is not None else None
    return broadcast_tensor(local, (count,), torch.float64, src).tolist()


def broadcast_float(value: float | None, src: int = 0) -> float:
    """Rank ``src``'s float on every rank (identity without a process group)."""
    return broadcast_floats(None if value is None else [float(value)], 1, src)[0]


def gather_rows_to_main(rows: Tensor, chunk_rows: int = 4096) -> Tensor | None:
    """Every rank's ``rows`` [n_r, d], concatenated in rank order as float32 [sum n_r, d] on rank 0; None elsewhere.

    Why rank 0 only, and in chunks: KID and precision/recall need the feature vectors themselves, which have no
    small summary. Rank 0 receives them all, N·d float32 numbers (4·N·d bytes: 10,000 Inception features are
    82 MB; a share shorter than the longest is padded, at most one row per rank when shares are even), in
    rounds of at most ``chunk_rows`` rows per rank, so rank 0 stages at most world·chunk_rows·d numbers at once
    besides the result. The other ranks send their rows and receive only the row counts (one number per
    rank). Rows may differ in count between ranks (a share of N is not always even); ``d`` may not.
    """
    rows = rows.detach().float()  # [n_r, d]
    if not is_distributed():
        return rows.cpu()
    rank, world = dist.get_rank(), dist.get_world_size()
    device, dim = comm_device(), rows.shape[1]
    counts = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([rows.shape[0]], dtype=torch.int64, device=device))
    counts = [int(c.item()) for c in counts]
    parts: list[list[Tensor]] = [[] for _ in range(world)]
    for start in range(0, max(counts), chunk_rows):
        size = min(chunk_rows, max(counts) - start)  # rows of the longest share this round; others pad to it
        piece = torch.zeros(size, dim, dtype=torch.float32, device=device)
        mine = rows[start : start + size]
        piece[: len(mine)] = mine.to(device)
        bucket = [torch.empty_like(piece) for _ in range(world)] if rank == 0 else None
        dist.gather(piece, bucket, dst=0)
        if rank == 0:
            for r, got in enumerate(bucket):
                parts[r].append(got[: max(0, min(size, counts[r] - start))].cpu())
    if rank != 0:
        return None
    return torch.cat([torch.cat(p) if p else torch.zeros(0, dim) for p in parts])
