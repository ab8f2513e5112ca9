"""`acl-dist repro NAME` (or ``python -m repro NAME`` in a checkout): regenerate a part of the reproduction
report under docs/results/.

The reports' code lives here, beside the package and outside it: it trains and measures with acl_dist as a user
would, and nothing in acl_dist imports it (``acl-dist repro`` runs ``python -m repro`` in the checkout).

Parts: ``prior`` (ACL paper Fig. 11), ``table1`` (Table 1 / Fig. 6-8 on the digits), ``interpolation``
(Fig. 10), ``ablation`` (how the ACL module is attached, each change alone and together), ``lazy`` (the
gradient penalty every k critic steps: FD and cost per k), ``mnist`` (does ACL improve its base: real MNIST,
held-out FD, selection and confirmation seeds), ``r3gan`` (R3GAN against WGAN-GP and ACL on R3GAN, on the
MNIST testbed), ``r3gan_screen`` (R3GAN given WGAN-GP's tuning effort, on the selection seeds), ``all``; and,
outside ``all``, ``campaign`` (every family trained to its plateau, selection and confirmation at that budget:
days of CPU time, run a session at a time with ``--time-budget MINUTES``, continued from the committed records
in docs/results/campaign/records.jsonl), and ``drift`` (why the campaign's acl_gan runs worsen late: their code
paths measured at every checkpoint).
``--budget full`` is what the committed report used; ``--budget tiny`` runs every part
in a minute or two with toy-sized nets (what the tests run); ``--budget gpu`` is mnist's grid for one GPU
(``--device cuda --jobs N``: N runs at once on it). Training runs go under ``--runs`` and resume.
"""

from __future__ import annotations

import argparse
import sys
import time

PARTS = ("prior", "table1", "interpolation", "ablation", "lazy", "mnist", "r3gan", "r3gan_screen")
CAMPAIGN = "campaign"  # not in ``all``: it trains for days, a session at a time (--time-budget)
DRIFT = "drift"  # not in ``all``: a diagnosis of the campaign's acl_gan runs (an hour of CPU)


def _part(name: str):
    import importlib

    return importlib.import_module(f"repro.{name}")


def run_repro(args: argparse.Namespace) -> int:
    from repro.jobs import QUIET, ReproError

    QUIET["on"] = args.quiet
    parts = PARTS if args.part == "all" else (args.part,)
    if args.time_budget is not None and parts != (CAMPAIGN,):
        print("acl-dist repro: --time-budget is the campaign's (acl-dist repro campaign --time-budget MINUTES)",
              file=sys.stderr)
        return 2
    if args.stage != "all" and parts != ("mnist",):
        print("acl-dist repro: --stage is mnist's (acl-dist repro mnist --stage ...)", file=sys.stderr)
        return 2
    if args.budget in ("gpu", "session") and not set(parts) <= {"mnist", "r3gan", "r3gan_screen"}:
        print(f"acl-dist repro: --budget {args.budget} is for mnist, r3gan and r3gan_screen", file=sys.stderr)
        return 2
    for name in parts:
        started = time.time()
        options = {"stage": args.stage} if name == "mnist" else {}
        if name == CAMPAIGN:
            options = {"time_budget_min": args.time_budget}
        try:
            path = _part(name).reproduce(args.out, args.runs, args.budget, args.jobs, device=args.device, **options)
        except ReproError as err:
            print(f"acl-dist repro {name}: error: {err}", file=sys.stderr)
            return 1
        print(f"{name}: {path} ({time.time() - started:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from repro.jobs import default_parallel

    p = argparse.ArgumentParser(prog="acl-dist repro", description=__doc__.splitlines()[0])
    p.add_argument("part", choices=(*PARTS, CAMPAIGN, DRIFT, "all"))
    p.add_argument("--budget", choices=("full", "session", "tiny", "gpu"), default="full",
                   help="full: the recipes' steps; session: mnist's and r3gan's grids at a third of the steps (what "
                   "one CPU session affords); tiny: seconds, toy-sized nets (tests); gpu: mnist's grid for one GPU")
    p.add_argument("--out", default="docs/results", help="report directory (default docs/results)")
    p.add_argument("--runs", default="runs/repro", help="training runs directory (default runs/repro)")
    p.add_argument("--jobs", type=int, default=default_parallel(), help="training runs at once (default: cores)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the training runs go: cpu (one thread each) or cuda (--jobs runs share one GPU)")
    p.add_argument("--stage", choices=("all", "select", "confirm"), default="all",
                   help="mnist: select (screens, writes mnist_selection.json), confirm (from that file), or all")
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="campaign: start a run only if its predicted time fits in MINUTES (0: rebuild the report "
                   "from the records, train nothing); default: no limit")
    p.add_argument("--quiet", action="store_true", help="no progress bars (off anyway when stderr is not a terminal)")
    return p


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    return run_repro(build_parser().parse_args(argv))
