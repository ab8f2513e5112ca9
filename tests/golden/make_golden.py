"""Write tests/golden/steps.pt: what every method computes in a few steps from a fixed seed, in float32 and in
float64.

Run at the commit before a change that must not alter what users compute (the architecture refactors of
issues 13 and 25): ``OMP_NUM_THREADS=1 python tests/golden/make_golden.py``. The test
(tests/unit/test_golden.py) retrains the same configurations and compares parameters, EMA copies and every
logged metric:

- float32, what users run: bit for bit, on a machine whose numeric path (``machine()``) is the recorded one;
- float64, the same configurations with every net and batch in float64: on any CPU, to a tolerance that
  follows from float64 arithmetic (see the test's docstring).

The configurations are explicit here, so later changes of recipe defaults do not touch them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.conftest import tiny_overrides  # noqa: E402
from tests.numerics import default_dtype  # noqa: E402

STEPS = 3
ACL_OPTIONS = ["method.code_generator=residual", "method.encoder_code_norm=batch",
               "method.generator_norm_stats=sampling_codes", "method.code_d_steps=2", "eval.bn_recalibration=2"]
R3GAN_NETS = ["model.arch=r3gan", "model.r3gan_group_width=4"]
CONFIGS = {  # name: (method, overrides)
    **{m: (m, []) for m in ("gan", "wgan_gp", "vae", "aae", "arae", "infogan", "acl_ae", "acl_gan", "acl_gan_gp",
                            "acl_sgan")},
    "acl_gan+options": ("acl_gan", ACL_OPTIONS + ["model.g_norm=batch"]),
    "acl_ae+wgan_code": ("acl_ae", ["method.code_loss=wgan_gp", "method.code_d_steps=2"]),
    "wgan_gp+lazy": ("wgan_gp", ["method.gp_every=2", "method.d_steps=2"]),
    "gan+zero2": ("gan", ["launch.deepspeed=launch/deepspeed/zero2.json"]),
    "acl_gan+zero2": ("acl_gan", ["launch.deepspeed=launch/deepspeed/zero2.json"]),
    # R3GAN (issue 24): its nets, R1 + R2, the gamma/lr/beta2 schedules; ACL on it with DiffAugment, lazy R1 + R2
    "r3gan+schedules": ("r3gan", R3GAN_NETS + ["method.gamma=0.5", "method.gamma_final=0.05", "optim.beta1=0.0",
                                               "optim.lr_decay_to=0.5", "optim.beta2_final=0.99"]),
    "acl_r3gan+augment": ("acl_r3gan", R3GAN_NETS + ["data.augment=[translation,cutout,color]", "method.gp_every=2"]),
    # issue 30: stylegan2-ada's operations, p scheduled over the run (0, 0.3, 0.6 at the three steps)
    "r3gan+augment_ops": ("r3gan", R3GAN_NETS + [
        "data.augment_ops=[xflip,rotate90,xint,scale,rotate,aniso,xfrac,brightness,contrast,lumaflip,hue,saturation,"
        "cutout]", "data.augment_p=0.9"]),
}
NOT_COMPUTED = ("images_per_s", "time", "rank_divergence")  # wall-clock, or a cross-rank check
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def float64_steps(name: str) -> int:
    """Steps of a configuration in the float64 record. DeepSpeed's ZeRO optimizer keeps float32 master weights
    whatever the nets' dtype, so after its first update a ZeRO run is a float32 run, whose later steps can
    amplify a last-bit difference to a whole Adam step (see the test); its float64 record stops after one step."""
    return 1 if "zero2" in name else STEPS


def overrides(name: str, out_dir: str, steps: int = STEPS, extra: tuple[str, ...] = ()) -> list[str]:
    method, own = CONFIGS[name]
    return tiny_overrides(method, out_dir, f"run.name={name}", f"train.steps={steps}", "train.ema=0.5",
                          "run.seed=3", "train.channels_last=never", *own, *extra)


def run(name: str, out_dir: str, dtype: str = "float32", extra: tuple[str, ...] = ()) -> dict:
    """Train one configuration in ``dtype`` (``extra``: overrides after its own, for the test that a changed
    setting is caught); its nets, EMA copies and per-step metrics."""
    from acl_dist.config import load_recipe
    from acl_dist.training.trainer import Trainer

    steps = STEPS if dtype == "float32" else float64_steps(name)
    with default_dtype(DTYPES[dtype]):
        recipe = load_recipe(None, overrides(name, os.path.join(out_dir, dtype), steps, extra))
        trainer = Trainer(recipe)
        trainer.train()
    with open(os.path.join(recipe.run_dir, "metrics.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    metrics = [{k: v for k, v in row.items() if k not in NOT_COMPUTED} for row in logged]
    return {"nets": {k: v.detach().clone() for k, v in trainer.method.nets.state_dict().items()},
            "ema": trainer.ema.state_dict(), "metrics": metrics}


# Environment switches that pick other CPU kernels (and so other float32 roundings) on one machine.
NUMERIC_SWITCHES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                    "MKL_CBWR", "ONEDNN_DEFAULT_FPMATH_MODE")


def machine() -> str:
    """What makes float32 results bit-comparable: the CPU model and its instruction-set flags (one model name,
    such as a virtual machine's 'Intel(R) Xeon(R) Processor', covers several generations), the vector kernels
    torch dispatches to, the switches that change the kernels, and the torch build."""
    model, flags = platform.processor(), ""
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), model)
        flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags")), "")
    flag_hash = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:12]
    switches = ",".join(f"{k}={os.environ[k]}" for k in NUMERIC_SWITCHES if k in os.environ)
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{model} | flags {flag_hash} | {capability} | {switches or 'no switches'} | torch {torch.__version__}"


if __name__ == "__main__":
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        golden = {"machine": machine(), "steps": STEPS,
                  "runs": {dtype: {name: run(name, out, dtype) for name in CONFIGS} for dtype in DTYPES}}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "steps.pt")
    torch.save(golden, path)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB) on {golden['machine']}")
