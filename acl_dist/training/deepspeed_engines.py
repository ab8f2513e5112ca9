"""DeepSpeed for GANs: one engine per trained net (G, D, E, Gz, Dc), each stepped directly.

Why not accelerate's DeepSpeed integration: its multi-model path prepares two models, but
``accelerator.backward`` then fails inside ZeRO's ``reduce_ipg_grads``; calling each engine's ``backward`` and
``step`` works. Why one backward per trained net: a phase that updates two nets (E and Gx in ACL-GAN's
reconstruction) cannot hand one loss to two engines, since each engine's backward runs its own gradient
partitioning epilogue; so the trainer evaluates such a phase once per net, with only that net unfrozen
(ZeRO-2 also asserts "Gradient computed twice" if a frozen net's parameters receive gradients).

Mixed precision stays with the trainer's autocast (``train.mixed_precision``); engines keep fp32 master
weights, so the DeepSpeed JSON must not enable its own fp16/bf16 sections.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Iterable, Iterator

import torch
from torch import nn

from acl_dist.rules import load_deepspeed_config

if TYPE_CHECKING:
    from acl_dist.sections import Recipe

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _launcher_environment() -> Iterator[None]:
    """The variables a launcher would set (rank 0 of 1, a free local port), while DeepSpeed starts up on one
    process, restored afterwards: left behind, they would tell subprocesses this process starts (a test's
    trainer, `acl-dist repro`'s runs) that they are rank 0 of a launched group and send them to its port."""
    saved = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE")}
    if saved["MASTER_PORT"] is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    for key, value in (("MASTER_ADDR", "127.0.0.1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(key, value)  # deepspeed.initialize asserts LOCAL_RANK, which only launchers set
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _ensure_process_group(device: torch.device) -> None:
    """DeepSpeed needs a process group even on one process; accelerate starts none there."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo" if device.type == "cpu" else "nccl", rank=0, world_size=1)


def _skip_cpu_shared_memory_op() -> None:
    """On CPU, DeepSpeed JIT-compiles a shared-memory all-reduce op at its first initialize (about a minute
    here); gloo's all-reduce is what tests and CPU runs need, so mark the op unavailable instead."""
    import deepspeed.ops

    if deepspeed.ops.__compatible_ops__.get("deepspeed_shm_comm", False):
        log.info("DeepSpeed on CPU: using gloo's all-reduce instead of JIT-building deepspeed_shm_comm")
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def build_engines(nets: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer], recipe: Recipe,
                  device: torch.device) -> dict[str, object]:
    """One DeepSpeed engine per trained net, in the optimizers' order (the same on every rank)."""
    import deepspeed

    if device.type == "cpu":
        _skip_cpu_shared_memory_op()
    config = load_deepspeed_config(recipe)
    engines = {}
    with _launcher_environment():
        _ensure_process_group(device)
        for name, optimizer in optimizers.items():
            engine, _, _, _ = deepspeed.initialize(model=nets[name], optimizer=optimizer, config=dict(config))
            engines[name] = engine
    stage = config.get("zero_optimization", {}).get("stage", 0)
    log.info("DeepSpeed ZeRO stage %d: one engine for each of %s", stage, ", ".join(engines))
    return engines


def zero_stage(engines: dict[str, object]) -> int:
    """The ZeRO stage the engines run (0 without engines)."""
    return next(iter(engines.values())).zero_optimization_stage() if engines else 0


def _partitioned(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    """Parameters ZeRO-3 has split across ranks (they carry ``ds_id``; a rank holds only its slice)."""
    return [p for m in modules for p in m.parameters() if hasattr(p, "ds_id")]


@contextlib.contextmanager
def full_parameters(modules: Iterable[nn.Module], modifier_rank: int | None = None) -> Iterator[None]:
    """Every rank sees the whole parameters of ``modules`` inside the block, under ZeRO-3; elsewhere a no-op.

    A collective under ZeRO-3: every rank must enter it. ``modifier_rank=r``: what rank r writes into the
    parameters is partitioned back to every rank on exit (loading a checkpoint); None: read only (EMA,
    checkpoint export, rank-divergence checks).
    """
    params = _partitioned(modules)
    if not params:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=modifier_rank):
        yield


def save_engines(engines: dict[str, object], directory: str) -> None:
    """Collective: every rank writes its ZeRO partitions (optimizer state) under ``directory/<net>``."""
    for name, engine in engines.items():
        engine.save_checkpoint(directory, tag=name, save_latest=False)


def load_engines(engines: dict[str, object], directory: str) -> None:
    for name, engine in engines.items():
        path, _ = engine.load_checkpoint(directory, tag=name, load_optimizer_states=True,
                                         load_lr_scheduler_states=False)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed state for {name} in {directory}")
