"""`acl-dist train|eval|sample|shard|submit|repro` and `python -m acl_dist ...`.

A user's problem (recipe, data, checkpoint, run directory; ``acl_dist.errors``) ends in one line and its exit
code, never a traceback. Options and ``key=value`` overrides may come in any order after the sub-command.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

from acl_dist.config import dump_recipe, find_recipe, load_recipe
from acl_dist.errors import UserFacingError

log = logging.getLogger("acl_dist")
LAUNCHED_ENV = "ACL_DIST_LAUNCHED"


def _add_train(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a recipe (re-launches through accelerate when it asks "
                                            "for more processes)")
    p.add_argument("recipe", help="YAML recipe: a path, or a shipped recipe's name (digits/acl_gan_gp)")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. train.steps=200")
    p.add_argument("--dry-run", action="store_true", help="print the resolved recipe and exit")
    p.set_defaults(func=run_train)


def _under_launcher() -> bool:
    return bool(os.environ.get(LAUNCHED_ENV) or os.environ.get("WORLD_SIZE") or os.environ.get("LOCAL_RANK"))


def accelerate_command(recipe, recipe_path: str, overrides: list[str]) -> tuple[list[str], dict[str, str]]:
    """The `accelerate launch` command (and environment) that runs this recipe on launch.num_processes."""
    launch = recipe.launch
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if launch.accelerate_config:
        cmd += ["--config_file", launch.accelerate_config]
    cmd += ["--num_processes", str(launch.num_processes), "--num_machines", str(launch.num_machines)]
    env = dict(os.environ, **{LAUNCHED_ENV: "1"})
    import torch

    if launch.device == "cpu" or not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "1"  # `--cpu --num_processes N` silently starts one process
    if launch.num_processes > 1:
        cmd.append("--multi_gpu")
    cmd += ["-m", "acl_dist", "train", recipe_path, *overrides]
    return cmd, env


def run_train(args) -> int:
    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        print(dump_recipe(recipe), end="")
        return 0
    if recipe.launch.num_processes * recipe.launch.num_machines > 1 and not _under_launcher():
        cmd, env = accelerate_command(recipe, os.path.abspath(find_recipe(args.recipe)), args.overrides)
        log.info("launching: %s", " ".join(cmd))
        return subprocess.call(cmd, env=env)
    from acl_dist.distributed import leave_process_group
    from acl_dist.training.trainer import Trainer

    try:
        result = Trainer(recipe).train()
    except UserFacingError:
        leave_process_group(wait_for_others=False)
        raise  # main() prints it as one line with its exit code
    _print_summary(result)
    leave_process_group(wait_for_others=True)
    return 0


def _print_summary(result) -> None:
    from accelerate.state import PartialState

    if not PartialState().is_main_process:
        return
    run = result.run_dir
    state = "stopped by signal" if result.stopped_by_signal else "finished"
    shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.metrics.items()))
    print(f"{state} at step {result.step}: {shown}")
    print(f"  run directory : {run}")
    print(f"  samples       : {os.path.join(run, 'samples')}")
    print(f"  metrics       : {os.path.join(run, 'metrics.jsonl')}")
    print(f"  checkpoint    : {result.checkpoint}")


class _IntermixedParser(argparse.ArgumentParser):
    """A sub-command parser that takes options and positionals in any order.

    ``acl-dist submit RECIPE --nodes 2 --time 1:00:00 key=value`` must work: plain argparse fills ``nargs="*"``
    positionals once, so an override after an option is "unrecognized". ``parse_known_intermixed_args`` reads
    all options first, then the positionals; argparse's sub-command action calls ``parse_known_args``, which
    is routed there (the intermixed parser itself calls ``parse_known_args`` back, hence the guard).
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acl-dist", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_IntermixedParser)
    _add_train(subparsers)
    for module in ("acl_dist.tools.shard", "acl_dist.tools.sample_eval", "acl_dist.submit", "acl_dist.demo"):
        _register_optional(module, subparsers)
    subparsers.add_parser("repro", help="regenerate the reproduction reports (docs/results/*.md) from a source "
                          "checkout: acl-dist repro PART [--budget ...]; see acl-dist repro --help", add_help=False)
    return parser


CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout this package runs from


def run_repro(argv: list[str]) -> int:
    """``acl-dist repro ...``: the reports' code lives in ``repro/`` of a source checkout, outside the package,
    which never imports it; this runs ``python -m repro`` there, with the same interpreter."""
    if not os.path.isfile(os.path.join(CHECKOUT, "repro", "__main__.py")):
        print(f"acl-dist repro: no repro/ beside the package ({CHECKOUT}): the reports run from a source checkout "
              "(git clone, then ./run demo)", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", "repro", *argv], cwd=CHECKOUT)


def _register_optional(module_name: str, subparsers) -> None:
    """Sub-commands living next to their owners register themselves."""
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        return
    module.register(subparsers)


def _setup_logging(verbose: bool) -> None:
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if verbose else (logging.INFO if rank == 0 else logging.WARNING)
    logging.basicConfig(level=level, format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["repro"]:
        return run_repro(argv[1:])
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except UserFacingError as err:
        print(f"acl-dist: error: {err}", file=sys.stderr)
        return err.exit_code
