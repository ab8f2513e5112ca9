"""``python -m repro.run_job RUN_DIR MODULE:FUNCTION [train arguments]``: `acl-dist train` with the arguments,
then ``FUNCTION(RUN_DIR)`` in the same interpreter, its result written to ``RUN_DIR/after_training.json``.

Why: a campaign record needs a number computed from the finished run's checkpoint (the ACL runs' reconstruction
FD and code MMD², ``repro.table1.diagnostics``). Computed in the campaign's own process it mixed two versions of
the package when the code on disk changed during the hours the campaign lives (an ImportError cost a record
its diagnostics); computed in an interpreter of its own it cost a start-up (torch and its compiler stack: about
4 s on one thread) per run, most of a tiny run's time. The training process is fresh at the run's start and
has paid that start-up already.

A failing ``FUNCTION`` does not fail the run: its error is the result (``{"error": "..."}``), and the record keeps
it; hours of training are not lost to a diagnostic.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

RESULT = "after_training.json"


def main(argv: list[str]) -> int:
    run_dir, target, train_args = argv[0], argv[1], argv[2:]
    from acl_dist.cli import main as acl_dist_main

    code = acl_dist_main(["train", *train_args])
    if code:
        return code
    module, function = target.split(":")
    try:
        result = getattr(importlib.import_module(module), function)(run_dir)
    except Exception as err:  # the run is done and checkpointed: keep it, say what failed
        result = {"error": f"{type(err).__name__}: {err}"}
    with open(os.path.join(run_dir, RESULT + ".tmp"), "w") as f:
        json.dump(result, f)
    os.replace(os.path.join(run_dir, RESULT + ".tmp"), os.path.join(run_dir, RESULT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
