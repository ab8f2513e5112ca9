"""`acl-dist demo` (what `./run demo` runs): ACL-GAN-GP on the bundled handwritten digits, on this CPU.

Trains ``recipes/digits/acl_gan_gp.yaml`` (about 5 minutes on 2 cores), evaluates FID with the shipped
digits feature extractor during training, then draws the pictures `acl-dist sample` draws, and prints where
everything is and the run's digits FID. Anything after ``demo`` is a recipe override (``train.steps=300``).
"""

from __future__ import annotations

import argparse
import os
import sys

DEMO_RECIPE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes", "digits",
                           "acl_gan_gp.yaml")


def _last_fid(run_dir: str) -> tuple[int, float, float] | None:
    """(step, FID, best FID) from the run's eval.csv, or None when FID never ran."""
    from acl_dist.eval.tracker import read_history

    rows = [r for r in read_history(run_dir) if "fid" in r]
    if not rows:
        return None
    return int(rows[-1]["step"]), rows[-1]["fid"], min(r["fid"] for r in rows)


def run_demo(args: argparse.Namespace) -> int:
    from acl_dist.config import ConfigError, load_recipe
    from acl_dist.tools.run_loading import load_run
    from acl_dist.tools.sample_eval import write_samples
    from acl_dist.training.trainer import Trainer, TrainingError

    try:
        recipe = load_recipe(DEMO_RECIPE, ["launch.device=cpu", *args.overrides])
    except ConfigError as err:
        print(f"acl-dist demo: error: {err}", file=sys.stderr)
        return 2
    print(f"acl-dist demo: training {recipe.method.name} on the scikit-learn digits for {recipe.train.steps} "
          f"steps on the CPU ({DEMO_RECIPE}); run directory {recipe.run_dir}", flush=True)
    try:
        result = Trainer(recipe).train()
    except TrainingError as err:
        print(f"acl-dist demo: error: {err}", file=sys.stderr)
        return 1
    pictures = write_samples(load_run(result.run_dir), os.path.join(result.run_dir, "pictures"))
    run = result.run_dir
    print(f"\n{'stopped by signal' if result.stopped_by_signal else 'finished'} at step {result.step}")
    print(f"  run directory  : {run}")
    print(f"  resolved recipe: {os.path.join(run, 'recipe.yaml')}")
    print(f"  metrics        : {os.path.join(run, 'metrics.jsonl')} (TensorBoard: {os.path.join(run, 'tensorboard')})")
    print(f"  sample grids   : {os.path.join(run, 'samples')}")
    print(f"  checkpoint     : {result.checkpoint}")
    for what, path in pictures.items():
        print(f"  {what:<15}: {path}")
    fid = _last_fid(run)
    if fid is None:
        print("  FID            : not evaluated (eval.every is 0)")
    else:
        step, value, best = fid
        print(f"  metric curves  : {os.path.join(run, 'eval.png')} ({os.path.join(run, 'eval.csv')})")
        print(f"digits FID (digits-cnn features, {recipe.eval.num_samples} samples, EMA generator) at step "
              f"{step}: {value:.2f} (best {best:.2f})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="train ACL-GAN-GP on the bundled digits on the CPU and report FID",
                              description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="recipe overrides, key.path=value")
    p.set_defaults(func=run_demo)
