"""What a recipe can run with, each rule written once, beside the schema: validation refuses a recipe with it
before any process starts, and the trainer (or ``cuda_graphs``) applies the same rule at start, when device and
process count are known. Plain functions of the recipe (and of a DeepSpeed JSON file): nothing here builds or
imports the training machinery.
"""

from __future__ import annotations

import importlib.util
import json

from acl_dist.errors import ConfigError
from acl_dist.methods.registry import method_class
from acl_dist.sections import Recipe

# log.trackers -> the module it needs: accelerate's trackers (accelerate.tracking.LOGGER_TYPE_TO_CLASS; a test
# keeps the two lists equal), named here so that validating a recipe imports no tracker library
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "aim": "aim", "comet_ml": "comet_ml",
            "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab", "trackio": "trackio"}
TRACKER_EXTRAS = {"tensorboard": "acl_dist", "wandb": "acl_dist[wandb]", "mlflow": "acl_dist[mlflow]",
                  "comet_ml": "comet-ml"}  # the pip name where it is not the tracker's


def missing_tracker_library(name: str) -> str | None:
    """The pip command that installs tracker ``name``'s library when it is not installed, else None: a recipe
    naming it is refused at load, not at its first log tick."""
    if importlib.util.find_spec(TRACKERS[name]) is None:
        return f"pip install {TRACKER_EXTRAS.get(name, name)}"
    return None


DEEPSPEED_LAYOUT = ("DeepSpeed engines broadcast parameters as bytes, which needs the default memory layout; "
                    "use train.channels_last: auto or never under DeepSpeed")


def cuda_graph_conflict(recipe: Recipe) -> str | None:
    """Why the recipe alone rules CUDA graphs out (None: it does not; device and processes are checked at
    start, in ``cuda_graphs.unsupported_reason``)."""
    t = recipe.train
    if t.mixed_precision == "fp16":
        return ("fp16's GradScaler decides on the host when to skip and rescale, which a CUDA graph cannot "
                "replay; use train.mixed_precision: bf16 or no")
    if t.compile:
        return "train.compile is on (train.compile and train.cuda_graphs are alternatives; pick one)"
    if recipe.launch.deepspeed:
        return "DeepSpeed engines step on the host; drop launch.deepspeed or train.cuda_graphs"
    if recipe.data.ada_target:
        return ("ADA (data.ada_target) moves its probability between steps from sums read across processes; a "
                "captured step is not tested with it: schedule the probability (data.augment_p) instead")
    if recipe.optim.lr_decay_to != 1 or recipe.optim.beta2_final is not None:
        return ("optimizer schedules (optim.lr_decay_to, optim.beta2_final) change Adam's settings every step, "
                "which a captured step keeps at their first values; the losses' own schedules (R3GAN's gamma) "
                "do replay")
    return None


NHWC_CUDA_MIN_RESOLUTION = 128  # see channels_last_wanted


def channels_last_wanted(recipe: Recipe, device_type: str, vector_data: bool) -> bool:
    """``train.channels_last`` for image nets. ``auto`` takes NHWC on the CPU, where oneDNN's NHWC convolutions
    made a whole acl_gan_gp step 1.2x faster (benchmarks/train_step.py), and on CUDA in bf16 from
    ``NHWC_CUDA_MIN_RESOLUTION`` up: graphed bf16 steps on an H100 ran 1.09-1.11x faster in NHWC than in NCHW
    at 128x128 and 1.12x at 256x256 (batch 64 and the largest that fits), while at 64x64 (H200, eager) it
    measured no gain. Never under DeepSpeed (``DEEPSPEED_LAYOUT``: ``always`` is refused there by
    validation) or for vector data."""
    mode = recipe.train.channels_last
    if vector_data or mode == "never":
        return False
    if mode == "always":
        return True
    if recipe.launch.deepspeed:
        return False
    if device_type == "cuda":
        return recipe.train.mixed_precision == "bf16" and recipe.model.resolution >= NHWC_CUDA_MIN_RESOLUTION
    return device_type == "cpu"


def deepspeed_conflict(recipe: Recipe, zero_stage: int) -> tuple[str, str] | None:
    """(key path, why) for the first setting DeepSpeed engines cannot run with (None: none)."""
    t = recipe.train
    if recipe.launch.process_group != "auto":
        return "launch.process_group", ("DeepSpeed sets up its own communication (NCCL on GPUs); leave "
                                        "launch.process_group at auto under DeepSpeed")
    if t.mixed_precision == "fp16":
        return "train.mixed_precision", ("fp16 needs one GradScaler shared by all phases, which DeepSpeed "
                                         "engines do not share; use bf16 under DeepSpeed")
    if t.compile:
        return "train.compile", ("DeepSpeed engines wrap the nets themselves and are not compiled here; set "
                                 "train.compile: false under DeepSpeed")
    if t.channels_last == "always":
        return "train.channels_last", DEEPSPEED_LAYOUT
    if zero_stage == 3:
        return _zero3_conflict(recipe)
    return None


def _zero3_conflict(recipe: Recipe) -> tuple[str, str] | None:
    """ZeRO-3 releases each parameter's gathered copy after its use in a backward pass, so a gradient
    penalty's second backward through the critic finds empty weights (DeepSpeed issue #3539: ZeRO-3 does not
    support backpropagating twice through one forward)."""
    keys = method_class(recipe.method.name).penalty_keys(recipe.method)
    if not keys:
        return None
    return "launch.deepspeed", (f"ZeRO-3 cannot train {recipe.method.name} with its gradient penalty "
                                f"({', '.join(keys)} > 0): the penalty backpropagates twice through the critic, "
                                "and ZeRO-3 frees the gathered weights after the first pass (DeepSpeed issue "
                                "#3539). Use ZeRO-1/2 (launch/deepspeed/zero2.json), which train every method")


def load_deepspeed_config(recipe: Recipe) -> dict:
    """The recipe's DeepSpeed JSON, with the fields the trainer owns filled in."""
    path = recipe.launch.deepspeed
    with open(path) as f:
        try:
            config = json.load(f)
        except json.JSONDecodeError as err:
            raise ConfigError("launch.deepspeed", f"{path} is not valid JSON: {err}") from None
    for section in ("fp16", "bf16"):
        if config.get(section, {}).get("enabled", False):
            raise ConfigError("launch.deepspeed", f"{path} enables {section}; set train.mixed_precision instead "
                              "(the trainer's autocast keeps fp32 master weights in every engine)")
    if "optimizer" in config:
        raise ConfigError("launch.deepspeed", f"{path} has an optimizer section; acl_dist passes torch's Adam "
                          "(DeepSpeed's JIT-builds FusedAdam for over a minute and knows no per-net settings)")
    config["train_micro_batch_size_per_gpu"] = recipe.train.batch_size
    config["gradient_accumulation_steps"] = 1
    if recipe.optim.grad_clip > 0:
        config["gradient_clipping"] = recipe.optim.grad_clip
    config.setdefault("steps_per_print", 10**9)
    return config
