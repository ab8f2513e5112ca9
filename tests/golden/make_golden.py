"""Write tests/golden/steps.pt: what every method computes in a few steps from a fixed seed.

Run once, at the commit before a change that must not alter what users compute (the architecture
refactor of issue 13 was the first): ``OMP_NUM_THREADS=1 python tests/golden/make_golden.py``. The test
(tests/unit/test_golden.py) retrains the same configurations and compares parameters, EMA copies and
every logged metric. The configurations are explicit here, so later changes of recipe defaults do not
touch them.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.conftest import tiny_overrides  # noqa: E402

STEPS = 3
ACL_OPTIONS = ["method.code_generator=residual", "method.encoder_code_norm=batch",
               "method.generator_norm_stats=sampling_codes", "method.code_d_steps=2", "eval.bn_recalibration=2"]
CONFIGS = {  # name: (method, overrides)
    **{m: (m, []) for m in ("gan", "wgan_gp", "vae", "aae", "arae", "infogan", "acl_ae", "acl_gan", "acl_gan_gp",
                            "acl_sgan")},
    "acl_gan+options": ("acl_gan", ACL_OPTIONS + ["model.g_norm=batch"]),
    "acl_ae+wgan_code": ("acl_ae", ["method.code_loss=wgan_gp", "method.code_d_steps=2"]),
    "wgan_gp+lazy": ("wgan_gp", ["method.gp_every=2", "method.d_steps=2"]),
    "gan+zero2": ("gan", ["launch.deepspeed=launch/deepspeed/zero2.json"]),
    "acl_gan+zero2": ("acl_gan", ["launch.deepspeed=launch/deepspeed/zero2.json"]),
}
NOT_COMPUTED = ("images_per_s", "time", "rank_divergence")  # wall-clock, or a cross-rank check


def overrides(name: str, out_dir: str) -> list[str]:
    method, extra = CONFIGS[name]
    return tiny_overrides(method, out_dir, f"run.name={name}", f"train.steps={STEPS}", "train.ema=0.5",
                          "run.seed=3", "train.channels_last=never", *extra)


def run(name: str, out_dir: str) -> dict:
    """Train one configuration; its nets, EMA copies and per-step metrics."""
    from acl_dist.config import load_recipe
    from acl_dist.train.trainer import Trainer

    recipe = load_recipe(None, overrides(name, out_dir))
    trainer = Trainer(recipe)
    trainer.train()
    with open(os.path.join(recipe.run_dir, "metrics.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    metrics = [{k: v for k, v in row.items() if k not in NOT_COMPUTED} for row in logged]
    return {"nets": {k: v.detach().clone() for k, v in trainer.method.nets.state_dict().items()},
            "ema": trainer.ema.state_dict(), "metrics": metrics}


def machine() -> str:
    """What makes float results bit-comparable: the CPU model and the torch build."""
    model = platform.processor()
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    return f"{model} | torch {torch.__version__}"


if __name__ == "__main__":
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        golden = {"machine": machine(), "steps": STEPS, "runs": {name: run(name, out) for name in CONFIGS}}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "steps.pt")
    torch.save(golden, path)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB) on {golden['machine']}")
