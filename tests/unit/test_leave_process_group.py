"""Leaving the process group frees what holds it while the interpreter is whole (no abort at exit)."""

from __future__ import annotations

import weakref

import torch
import torch.distributed as dist
from torch import nn

from acl_dist.distributed import leave_process_group


class _Cyclic:
    """Like a finished trainer: a DDP-wrapped net inside a reference cycle, so only the collector frees it."""

    def __init__(self) -> None:
        self.net = nn.parallel.DistributedDataParallel(nn.Linear(2, 2))
        self.me = self


def test_leave_process_group_frees_ddp_wrappers_held_in_cycles(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        holder = _Cyclic()
        holder.net(torch.ones(1, 2)).sum().backward()  # the reducer has run: it holds the group
        wrapper = weakref.ref(holder.net)
        del holder
        assert wrapper() is not None  # the cycle keeps it: without a collection it lives to interpreter exit
        leave_process_group(wait_for_others=True)
        assert wrapper() is None and not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
