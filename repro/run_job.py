"""``python -m repro.run_job RUN_DIR NAME [train arguments]``: `acl-dist train` with the arguments, then the
after-training task ``NAME`` (``AFTER_TRAINING``) on RUN_DIR in the same interpreter, its result written to
``RUN_DIR/after_training.json``.

Why: a campaign record needs numbers computed from the finished run's checkpoint (the ACL runs' reconstruction
FD and code MMD², ``repro.table1.diagnostics``). Computed in the campaign's own process they mixed two versions
of the package when the code on disk changed during the hours the campaign lives (an ImportError cost a record
its diagnostics); computed in an interpreter of their own they cost a start-up (torch and its compiler stack:
about 4 s on one thread) per run, most of a tiny run's time. The training process is fresh at the run's start
and has paid that start-up already.

A failing task does not fail the run: its error is the result (``{"error": "..."}``), and the record keeps it;
hours of training are not lost to a diagnostic.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

RESULT = "after_training.json"


def _diagnostics(run_dir: str) -> dict:
    from repro.table1 import diagnostics

    return diagnostics(run_dir)


AFTER_TRAINING: dict[str, Callable[[str], dict]] = {"diagnostics": _diagnostics}  # NAME -> task(run_dir)


def main(argv: list[str]) -> int:
    run_dir, name, train_args = argv[0], argv[1], argv[2:]
    if name not in AFTER_TRAINING:
        print(f"repro.run_job: unknown after-training task {name!r}; known: {sorted(AFTER_TRAINING)}",
              file=sys.stderr)
        return 2
    from acl_dist.cli import main as acl_dist_main

    code = acl_dist_main(["train", *train_args])
    if code:
        return code
    try:
        result = AFTER_TRAINING[name](run_dir)
    except Exception as err:  # the run is done and checkpointed: keep it, say what failed
        result = {"error": f"{type(err).__name__}: {err}"}
    with open(os.path.join(run_dir, RESULT + ".tmp"), "w") as f:
        json.dump(result, f)
    os.replace(os.path.join(run_dir, RESULT + ".tmp"), os.path.join(run_dir, RESULT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
