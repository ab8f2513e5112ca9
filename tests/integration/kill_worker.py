"""`acl-dist train` that kills itself with SIGKILL at a chosen moment, as a node failure would there.

    python tests/integration/kill_worker.py eval TRAIN_ARGS...        # inside the 2nd evaluation, samples drawn
    python tests/integration/kill_worker.py checkpoint TRAIN_ARGS...  # halfway through the 1st state.pt

Run under ``accelerate launch`` every rank runs this; at ``eval`` every rank dies, at ``checkpoint`` rank 0 (the
one writing) does, and the launcher ends the others.
"""

from __future__ import annotations

import os
import signal
import sys


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_in_second_evaluation() -> None:
    from acl_dist.eval import during_training

    original, calls = during_training.TrainingEvaluator.evaluate, []

    def evaluate(self, step, generate):
        calls.append(step)
        if len(calls) == 2:
            generate(4)  # in the middle of it: samples drawn, nothing written yet
            _die()
        return original(self, step, generate)

    during_training.TrainingEvaluator.evaluate = evaluate


def _kill_in_first_state_write() -> None:
    from acl_dist.training import checkpoint

    real = checkpoint.torch.save

    def save(obj, path, *args, **kwargs):
        if os.path.basename(str(path)) == "state.pt":
            real(obj, path, *args, **kwargs)
            with open(path, "r+b") as f:  # half of it reached the disk
                f.truncate(os.path.getsize(path) // 2)
            _die()
        return real(obj, path, *args, **kwargs)

    checkpoint.torch.save = save


if __name__ == "__main__":
    moment, args = sys.argv[1], sys.argv[2:]
    {"eval": _kill_in_second_evaluation, "checkpoint": _kill_in_first_state_write}[moment]()
    from acl_dist import cli

    sys.exit(cli.main(args))
