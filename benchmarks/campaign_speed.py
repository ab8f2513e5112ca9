"""The campaign's speed on this CPU, per family: threads against jobs, evaluation's share, where a step goes.

    python benchmarks/campaign_speed.py [--methods gan acl_gan wgan_gp acl_gan_gp r3gan acl_r3gan]
                                        [--seconds 12] [--profile-steps 4] [--r3gan-variants]

Each method trains its ``recipes/mnist`` recipe at the campaign's settings (``repro.campaign``: batch, EMA,
evaluation of 5,000 samples in FD + KID), each measurement in fresh processes:

- **threads vs jobs** on two cores: one run on 1 thread, one run on 2 threads, and two 1-thread runs at once (they
  wait for each other after their warm-up, then time the same window). Printed: the 2-thread speed-up of one run,
  and the two runs' summed throughput over one 2-thread run (above 1: two jobs of one thread use the cores better).
- **evaluation's share**: one evaluation (after a first one that builds the reference statistics) against the
  training steps between two evaluations (``eval.every``), both on 1 thread.
- **where a step goes**: ``torch.profiler`` over a few steps on 1 thread, self CPU time by cause: dense, grouped
  and depthwise convolutions (R3GAN's FIR resampling and its critic's 4x4 head are the depthwise ones), forward
  and backward (the penalty's double backward is backward convolutions too), matrix products, the optimizers'
  and EMA's foreach kernels, and the rest (elementwise, copies, Python).
- ``--r3gan-variants``: r3gan's cost by cause, side by side on 1 thread: the recipe, R1 + R2 every 4th step
  (``method.gp_every=4``, WGAN-GP's lazy regularisation), dense 3x3 convolutions in its blocks
  (``model.r3gan_group_width`` = the widest block), both, NCHW instead of the CPU's default NHWC, and no
  augmentation (stylegan2-ada's pipe off).

Only ratios are printed (the benchmark rule: absolute times only from a GPU); seconds per step are this machine's
and appear only as the base of each ratio. Nothing else may run on the cores meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

METHODS = ("gan", "acl_gan", "wgan_gp", "acl_gan_gp", "r3gan", "acl_r3gan")
R3GAN_VARIANTS = {"recipe": [], "lazy R1+R2 (gp_every 4)": ["method.gp_every=4"],
                  "dense 3x3 (no groups)": ["model.r3gan_group_width=128"],
                  "lazy + dense": ["method.gp_every=4", "model.r3gan_group_width=128"],
                  "NCHW (channels_last never)": ["train.channels_last=never"],
                  "no augmentation": ["data.augment_ops=[]", "data.augment_p=0"]}
CAUSES = ("conv dense fwd", "conv dense bwd", "conv grouped fwd", "conv grouped bwd", "conv depthwise fwd",
          "conv depthwise bwd", "matmul", "optimizer + EMA", "rest")


# -- the worker: one training process ---------------------------------------------------------------------------
def build_trainer(method: str, extra: list[str], out_dir: str):
    """A Trainer of ``method``'s campaign run (seed 0, its recipe), writing nothing that matters."""
    from acl_dist.config import load_recipe
    from acl_dist.training.trainer import Trainer
    from repro.campaign import Settings, spec

    s = Settings()
    job = spec(method, "recipe", {}, 0, s.long_steps).job(s)
    overrides = [*job.overrides, f"run.out_dir={out_dir}", "run.name=bench", "run.resume=none", "train.progress=false",
                 f"train.sample_every={s.long_steps}", *extra]
    return Trainer(load_recipe(job.recipe, overrides))


def wait_for_peers(barrier: str, peers: int) -> None:
    """Say this process is ready, then wait until ``peers`` processes are (files in the ``barrier`` directory)."""
    open(os.path.join(barrier, f"{os.getpid()}.ready"), "w").close()
    while len([n for n in os.listdir(barrier) if n.endswith(".ready")]) < peers:
        time.sleep(0.01)


def timed_steps(step, seconds: float) -> float:
    """Seconds per step over at least ``seconds`` (whole steps, at least 3)."""
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        step()
        n += 1
    return (time.perf_counter() - start) / n


def profile_causes(step, steps: int) -> dict[str, float]:
    """Self CPU time of ``steps`` steps by cause (fractions summing to 1)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    totals: dict[str, float] = defaultdict(float)
    for ev in prof.events():
        totals[cause(ev.name, ev.input_shapes or [], getattr(ev, "concrete_inputs", None) or [])] += \
            ev.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    return {k: v / whole for k, v in totals.items()}


def cause(name: str, shapes: list, values: list) -> str:
    """The cause an op's self time counts under (see CAUSES). Convolutions by their groups (the last plain int
    among the op's arguments, as the profiler records them) against their input's channels: 1 group dense, one
    per channel depthwise, else grouped."""
    if "conv" in name and name != "aten::convolution_overrideable":
        backward = "backward" in name
        inp = shapes[1] if backward and len(shapes) > 1 else (shapes[0] if shapes else [])
        groups = [v for v in values if type(v) is int]
        if len(inp) == 4 and groups:
            g = groups[-1]
            kind = "dense" if g == 1 else "depthwise" if g == inp[1] else "grouped"
            return f"conv {kind} {'bwd' if backward else 'fwd'}"
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"):
        return "matmul"
    if "_foreach" in name or "Optimizer" in name or name.startswith("aten::lerp"):
        return "optimizer + EMA"
    return "rest"


def worker(args: argparse.Namespace) -> None:
    import torch
    from train_step import our_step  # this folder is on the path of a script run from it

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        trainer = build_trainer(args.method, args.set, out)
        step = our_step(trainer)  # one step as Trainer.train runs it, EMA included
        for _ in range(args.warmup):
            step()
        result = {"threads": args.threads}
        if args.barrier:
            wait_for_peers(args.barrier, args.peers)
        result["step_s"] = timed_steps(step, args.seconds)
        result["batch"] = trainer.recipe.train.batch_size
        if args.eval:
            from acl_dist.training.eval_noise import evaluation_noise

            ev, r = trainer.evaluator, trainer.recipe
            for i in range(2):  # the first builds the reference statistics, as a run's first evaluation does
                start = time.perf_counter()
                with evaluation_noise(r.run.seed, trainer.step, 0, trainer.device):
                    ev.evaluate(trainer.step + i, trainer.generate)
                result["eval_s"] = time.perf_counter() - start
            result["eval_every"] = r.eval.every
        if args.profile_steps:
            result["causes"] = profile_causes(step, args.profile_steps)
    print("RESULT " + json.dumps(result), flush=True)


# -- the parent: launches workers, prints ratios ---------------------------------------------------------------
def run_workers(method: str, threads: int, jobs: int, seconds: float, extra: list[str] = (),
                evaluate: bool = False, profile_steps: int = 0) -> list[dict]:
    """``jobs`` workers of ``threads`` threads each at once; their results."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as barrier:
        cmd = [sys.executable, __file__, "--worker", method, "--threads", str(threads), "--seconds", str(seconds),
               "--barrier", barrier, "--peers", str(jobs), "--profile-steps", str(profile_steps),
               *(["--eval"] if evaluate else []), *[a for o in extra for a in ("--set", o)]]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(jobs)]
        outs, errs = zip(*(p.communicate() for p in procs))
    if any(p.returncode for p in procs):
        raise SystemExit(f"a worker of {method} failed ({[p.returncode for p in procs]}):\n{errs[0][-3000:]}")
    return [json.loads(next(line[7:] for line in out.splitlines() if line.startswith("RESULT "))) for out in outs]


def images_per_s(r: dict) -> float:
    return r["batch"] / r["step_s"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seconds", type=float, default=12.0, help="timed window per measurement")
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--profile-steps", type=int, default=4)
    p.add_argument("--r3gan-variants", action="store_true")
    p.add_argument("--worker", choices=METHODS, dest="method", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--barrier", default="", help=argparse.SUPPRESS)
    p.add_argument("--peers", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--eval", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.method:
        return worker(args)

    print(f"campaign speed on {os.cpu_count()} cores; each row from fresh processes, {args.seconds:.0f} s windows")
    rows, causes, base = [], {}, None
    for method in args.methods:
        alone = run_workers(method, 1, 1, args.seconds, evaluate=True, profile_steps=args.profile_steps)[0]
        two_threads = run_workers(method, 2, 1, args.seconds)[0]
        two_jobs = run_workers(method, 1, 2, args.seconds)
        base = base or images_per_s(alone)
        summed = sum(images_per_s(r) for r in two_jobs)
        eval_share = alone["eval_s"] / (alone["eval_s"] + alone["eval_every"] * alone["step_s"])
        rows.append((method, base / images_per_s(alone), images_per_s(two_threads) / images_per_s(alone),
                     summed / images_per_s(two_threads), summed / images_per_s(alone), eval_share,
                     alone["eval_s"] / alone["step_s"]))
        causes[method] = alone["causes"]
        print(f"  {method}: done", flush=True)
    print(f"\n| method | time per image / {args.methods[0]}'s (1 thread) | 1 run: 2 threads / 1 thread | "
          "2 runs x 1 thread / 1 run x 2 threads | 2 runs x 1 thread / 1 run x 1 thread | evaluation's share of a run "
          "| one evaluation, in training steps |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for m, cost, t2, jobs_vs_threads, jobs_vs_one, share, eval_steps in rows:
        print(f"| {m} | {cost:.2f} | {t2:.2f}x | {jobs_vs_threads:.2f}x | {jobs_vs_one:.2f}x | {100 * share:.0f}% | "
              f"{eval_steps:.0f} |")
    print(f"\nself CPU time by cause, 1 thread, {args.profile_steps} steps (% of the step):\n")
    print("| method | " + " | ".join(CAUSES) + " |")
    print("| --- |" + " --- |" * len(CAUSES))
    for m, shares in causes.items():
        print(f"| {m} | " + " | ".join(f"{100 * shares.get(c, 0):.0f}" for c in CAUSES) + " |")
    if args.r3gan_variants:
        print("\nr3gan by cause, 1 thread, variants one after another in fresh processes:\n")
        print("| variant | time per image / recipe's | self CPU time by cause (top 3) |")
        print("| --- | --- | --- |")
        ref = None
        for label, extra in R3GAN_VARIANTS.items():
            r = run_workers("r3gan", 1, 1, args.seconds, extra, profile_steps=args.profile_steps)[0]
            ref = ref or r["step_s"]
            top = sorted(r["causes"].items(), key=lambda kv: -kv[1])[:3]
            print(f"| {label} `{' '.join(extra)}` | {r['step_s'] / ref:.2f} | "
                  + ", ".join(f"{k} {100 * v:.0f}%" for k, v in top) + " |", flush=True)


if __name__ == "__main__":
    main()
