"""Leaving the process group frees what holds it while the interpreter is whole (no abort at exit)."""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from tests.conftest import PYTHON, REPO

# In its own interpreter: the suite's in-process DeepSpeed tests leave a default group behind in this one.
SCRIPT = textwrap.dedent("""
    import sys, weakref
    import torch
    import torch.distributed as dist
    from torch import nn
    from acl_dist.distributed import leave_process_group

    class Cyclic:  # like a finished trainer: a DDP-wrapped net in a reference cycle, freed only by the collector
        def __init__(self):
            self.net = nn.parallel.DistributedDataParallel(nn.Linear(2, 2))
            self.me = self

    dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
    holder = Cyclic()
    holder.net(torch.ones(1, 2)).sum().backward()  # the reducer has run: it holds the group
    wrapper = weakref.ref(holder.net)
    del holder
    assert wrapper() is not None, "the cycle should keep it alive until a collection"
    leave_process_group(wait_for_others=True)
    assert not dist.is_initialized()
    print("freed" if wrapper() is None else "alive")
""")


@pytest.mark.slow  # starts processes
def test_leave_process_group_frees_ddp_wrappers_held_in_cycles(tmp_path):
    proc = subprocess.run([PYTHON, "-c", SCRIPT, str(tmp_path / "store")], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "freed"
