"""The Python API: load a recipe, train it, load a run back and sample from it, without the command line.

    import acl_dist
    recipe = acl_dist.load_recipe("digits/gan", ["train.steps=200"])
    result = acl_dist.train(recipe)              # result.run_dir, result.metrics
    run = acl_dist.load_run(result.run_dir)      # the EMA sampling nets of its newest checkpoint
    images = run.sample(16)                      # [16, C, H, W] in [-1, 1]

``acl_dist.<name>`` reaches these lazily (``acl_dist/__init__.py``), so ``import acl_dist`` stays cheap.
"""

from __future__ import annotations

from acl_dist.config import load_recipe
from acl_dist.sections import Recipe
from acl_dist.tools.run_loading import LoadedRun, load_run
from acl_dist.training.trainer import Trainer, TrainResult

__all__ = ["LoadedRun", "Recipe", "TrainResult", "load_recipe", "load_run", "train"]


def train(recipe: Recipe) -> TrainResult:
    """Train ``recipe`` in this process (one process: CPU or one GPU; several processes go through
    ``accelerate launch -m acl_dist train``; a script of your own launched on several processes ends, as that
    command does, with ``acl_dist.distributed.leave_process_group(wait_for_others=True)``: a gloo group left to
    interpreter shutdown can abort a rank after training finished). Returns the run directory, the last step,
    the final metrics and the last checkpoint; a run directory with a checkpoint resumes (``run.resume: auto``).

    Raises:
        acl_dist.errors.UserFacingError: the recipe, data, a checkpoint or the run directory is not usable (its
            message says why; the CLI prints it as one line).
    """
    return Trainer(recipe).train()
