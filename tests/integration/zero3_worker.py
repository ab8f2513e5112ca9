"""Run by `accelerate launch` from test_zero3.py: every method ZeRO-3 accepts, trained on 2 gloo processes.

For each method, in this one process group (DeepSpeed's start-up is paid once): an uninterrupted run to step
4, and a run stopped at step 2 and resumed to 4 (a fresh Trainer, as a restarted job would build). The test
compares the checkpoints. Usage: zero3_worker.py OUT_DIR METHOD [METHOD ...]
"""

from __future__ import annotations

import os
import sys

from acl_dist.config import load_recipe
from acl_dist.distributed import leave_process_group
from acl_dist.training.trainer import Trainer
from tests.conftest import REPO, tiny_overrides


def main(out_dir: str, methods: list[str]) -> None:
    for method in methods:
        for name, stops in (("straight", (4,)), ("resumed", (2, 4))):
            for steps in stops:
                overrides = tiny_overrides(method, out_dir, f"run.name={method}-{name}", f"train.steps={steps}",
                                           "launch.deepspeed=launch/deepspeed/zero3.json", "train.ema=0.9")
                Trainer(load_recipe(os.path.join(REPO, f"recipes/digits/{method}.yaml"), overrides)).train()


if __name__ == "__main__":
    # Ends as `acl-dist train` ends: a gloo group left to interpreter shutdown can abort a rank ("terminate
    # called without an active exception", exit -6) after every run has finished (seen in CI, 1 run in ~5).
    try:
        main(sys.argv[1], sys.argv[2:])
    except BaseException:
        leave_process_group(wait_for_others=False)
        raise
    leave_process_group(wait_for_others=True)
