"""The GPU checks for high resolution (issue 15) in one time-boxed run; ``benchmarks/gpu.sh`` runs it.

    python benchmarks/gpu_checks.py [--out DIR] [--smoke] [--budget S] [--only NAME,...] [--train-steps N]
    environment instead of flags: OUT, GPU_CHECK_SMOKE=1, GPU_CHECK_BUDGET, GPU_CHECK_ONLY, GPU_CHECK_TRAIN_STEPS

Steps, most valuable first (``plan``). Each runs in its own process group under a time box; the run as a
whole ends by ``--budget`` seconds, and while the early steps run, the time the shard and training steps
need is kept back for them, so a slow benchmark cannot starve the training run:

    gpu          nvidia-smi: which GPU, its memory and driver
    preflight    torch, CUDA and every module the steps import: a missing wheel stops the run here, in seconds
    cuda-tests   tests/unit/test_cuda.py
    step128      whole acl_gan_gp step vs the plain loop, 128 px, batch 64, bf16, CUDA graphs, NCHW and NHWC
    step256      the same at 256 px
    step256-max  the same at the largest batch that fits (the MFU goal: >= 10 %)
    memory       peak memory of a real bf16 step, plain vs activation checkpointing, 64-512 px, batch 16
    r3gan256     r3gan step vs its plain loop, 256 px, batch 64, bf16, the r3gan_ffhq256 recipe's nets, and a
                 torch.profiler table of our step's top kernels (issue 24; before step128 in the plan)
    r3gan256-max the same at the largest batch that fits (the goal: MFU >= 15 %, >= 1.5x the plain loop)
    augment      stylegan2-ada's wavelet resampling vs a convolutional version and bilinear, 64 and 256 px,
                 3 channels, batch 32, forward and backward (benchmarks/augment.py; issue 30)
    two-proc-gpu recipes/mnist/r3gan.yaml in 2 processes on the one GPU (launch.process_group: gloo; NCCL refuses
                 two ranks on one device): the multi-process CUDA path, evaluation included, and the ranks' parameters
                 agreeing at every log tick
    r3gan-mnist  recipes/mnist/r3gan.yaml on the GPU for 5 minutes, FD every 2,000 steps
    shard256     the shipped digits as WebDataset shards at 256 px (``acl-dist shard builtin:digits``)
    train256     recipes/acl_gan_gp_ffhq256.yaml on those shards, bf16: FID (digits-cnn) six times, grids
    step128-max  the largest batch at 128 px
    recipe256    the ffhq256 recipe's own nets (3 channels, 64-512 wide, checkpointing) at its batch 16
    step64       the README table's 64 px row again (a regression check)

The step benchmarks use the nets of recipes/digits/acl_gan_gp.yaml, as the README's speed table does.

What comes back is flat in ``--out`` (the device tool returns at most 8 files, 2 folders deep):
gpu-checks.log (every step's whole output), summary.txt (each step's status, time and key lines; rewritten
after every step, so a run cut short still has one), and from the training run train256-eval.csv,
train256-eval.png (the FID curve), train256-metrics.jsonl, train256-samples-first.png and -last.png.

``--smoke`` (GPU_CHECK_SMOKE=1) runs the same plan on the CPU at 16-32 px, batch 4, a few steps, skipping
what needs a GPU: the plumbing is checked before any GPU time is spent.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FFHQ256 = "recipes/acl_gan_gp_ffhq256.yaml"
R3GAN256 = "recipes/r3gan_ffhq256.yaml"
RUN_NAME = "ffhq256-digits"
MIN_BOX_S = 15  # a step given less than this is skipped: it would only start and be killed
MAX_FILE = 15 * 2**20  # the device tool returns files up to 16 MiB; PNGs above this are shrunk
BENCH_KEEP = (r"\w+ step, |FLOPs|median|speed-up|resident|batch \d+: |largest batch|Error"
              r"|^\s*(Name|aten::|void |\S*kernel)")  # the last: a --profile table's rows
NHWC_VARIANTS = ["--variant", "train.channels_last=never", "--variant", "train.channels_last=always"]
PREFLIGHT = """
import sys, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
      torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
import acl_dist.cli, acl_dist.data.stream, acl_dist.eval.tracker, acl_dist.training.trainer  # what the steps import
import torch_fidelity, webdataset, ffmpeg  # the wheels the GPU image lacks (benchmarks/gpu_wheels.sh)
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit("no CUDA device visible")
print("imports ok")
"""
# `python -m acl_dist` in this process, printing the run's CUDA memory peak on the way out (the trainer logs
# none; "trains without running out of memory on one 80 GB GPU" wants the number)
TRAIN_WITH_PEAK = """
import atexit, runpy, sys, torch
def peak():
    if not torch.cuda.is_initialized():
        print("peak CUDA memory: none (no CUDA in this run)", flush=True)
        return
    print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB allocated, "
          f"{torch.cuda.max_memory_reserved() / 2**20:.0f} MiB reserved", flush=True)
atexit.register(peak)
sys.argv[0] = "acl_dist"
runpy.run_module("acl_dist", run_name="__main__", alter_sys=True)
"""
# `acl-dist train` in 2 processes, then the run's log read back: the ranks' largest parameter divergence over
# the log ticks (0.0 when gradients were averaged and the start broadcast), and the steps reached
TWO_PROCESSES = """
import json, os, subprocess, sys
run_dir, argv = sys.argv[1], sys.argv[2:]
code = subprocess.call([sys.executable, "-m", "acl_dist", "train", *argv])
rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))] if code == 0 else []
divergence = max((r.get("rank_divergence", float("nan")) for r in rows), default=float("nan"))
from acl_dist.eval.tracker import read_history
fids = [round(r["fid"], 1) for r in read_history(run_dir)] if code == 0 else []
print(f"two processes: exit {code}, {len(rows)} log rows, last step {rows[-1]['step'] if rows else None}, "
      f"largest rank divergence {divergence}, FD {fids}", flush=True)
sys.exit(code or (0 if divergence == 0.0 else 1))
"""


@dataclass
class Settings:
    """One run's choices: where files go, CPU smoke or GPU, the time budget, which steps."""

    out: str
    scratch: str  # shards and the training run's directory (large; not returned)
    smoke: bool = False
    budget: float = 400.0
    only: list[str] = field(default_factory=list)
    train_steps: int = 300
    python: str = sys.executable

    @property
    def device(self) -> str:
        return "cpu" if self.smoke else "cuda"

    def res(self, r: int) -> int:
        """Smoke mode shrinks resolutions so that a CPU core gets through: 128 -> 16, 256 -> 32."""
        return {64: 16, 128: 16, 256: 32}[r] if self.smoke else r


@dataclass
class Step:
    """One command of the plan, with its time box and what of its output goes into the summary."""

    name: str  # what --only selects
    title: str
    argv: list[str]
    box_s: int  # most seconds it may run
    keep: str = r"."  # regex: output lines copied into the summary
    reserve_s: int = 0  # seconds kept back for it while the steps before it run
    needs: str = ""  # a step that must have succeeded first
    cuda_only: bool = False  # skipped in smoke mode
    fatal: bool = False  # the run stops if this fails
    collect: Callable[[Settings], list[str]] | None = None  # after it ran (ok or not): files copied to out


@dataclass
class Result:
    name: str
    status: str  # ok | failed (exit N) | timed out after N s | skipped (why)
    seconds: float = 0.0
    kept: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def bench(s: Settings, name: str, title: str, res: int, batch: str, box_s: int, *extra: str) -> Step:
    """A ``benchmarks/train_step.py`` step: bf16, graphs on (always on CUDA: off would be a failure); smoke
    mode takes batch 4 (max: 2 or 4) and one timed step per side."""
    argv = [s.python, "benchmarks/train_step.py", "--device", s.device, "--precision", "bf16",
            "--resolution", str(s.res(res)), *extra]
    if s.smoke:
        small = ["--max-batch-start", "2", "--max-batch-cap", "4"] if batch == "max" else []
        argv += ["--batch", "max" if batch == "max" else "4", *small, "--rounds", "1", "--steps", "1",
                 "--warmup", "1", "--flops"]
    else:
        rounds = ["--rounds", "3", "--steps", "2"] if batch == "max" else ["--rounds", "5", "--steps", "3"]
        argv += ["--batch", batch, *rounds, "--warmup", "6", "--set", "train.cuda_graphs=always"]
    return Step(name, title, argv, box_s, keep=BENCH_KEEP)


def train_overrides(s: Settings) -> list[str]:
    """The 256 px recipe as it is, on the digits shards: only data, length, outputs and evaluation set here."""
    n = s.train_steps
    out = [f"data.shards={s.scratch}/digits256/manifest.json", "data.flip=false", f"run.out_dir={s.scratch}/runs",
           f"run.name={RUN_NAME}", "run.resume=none", f"train.steps={n}", f"train.log_every={max(1, n // 12)}",
           f"train.sample_every={max(1, n // 3)}", "train.ckpt_every=0", "train.progress=false",
           "log.trackers=[]", f"eval.every={max(1, n // 6)}", "eval.feature_extractor=digits-cnn",
           f"launch.device={s.device}"]
    if s.smoke:  # small nets, few samples: the same code paths in seconds
        out += ["model.resolution=32", "model.base_channels=8", "model.max_channels=16", "model.acl_hidden=16",
                "train.batch_size=4", "eval.num_samples=64", "data.num_workers=1"]
    else:
        out += ["eval.num_samples=1000"]
    return out


def r3gan_mnist_overrides(s: Settings) -> list[str]:
    """R3GAN's MNIST-5k recipe on the device: 30,000 steps (the 5-minute box stops it first on an H100 if it is
    slower than 100 steps/s), FD every 2,000 steps; the smoke run takes 4 steps."""
    n = 4 if s.smoke else 30000
    return [f"run.out_dir={s.scratch}/runs", "run.name=r3gan-mnist", "run.resume=none", f"train.steps={n}",
            f"train.log_every={max(1, n // 30)}", f"eval.every={max(1, n // 15)}", "train.ckpt_every=0",
            "train.progress=false", "log.trackers=[]", f"launch.device={s.device}",
            f"train.sample_every={n}"] + (["eval.num_samples=64", "train.batch_size=4"] if s.smoke else [])


def two_process_overrides(s: Settings) -> list[str]:
    """R3GAN's MNIST-5k recipe in 2 processes sharing the device over gloo: 200 steps, FD twice (the gathered
    evaluation crosses processes too); the smoke run takes 4 steps on the CPU."""
    n = 4 if s.smoke else 200
    return [f"run.out_dir={s.scratch}/runs", "run.name=two-proc", "run.resume=none", f"train.steps={n}",
            f"train.log_every={max(1, n // 10)}", f"eval.every={max(1, n // 2)}", "train.ckpt_every=0",
            "train.progress=false", "log.trackers=[]", f"launch.device={s.device}", "launch.num_processes=2",
            "launch.process_group=gloo", f"train.sample_every={n}"] + \
        (["eval.num_samples=64", "train.batch_size=4"] if s.smoke else [])


def plan(s: Settings) -> list[Step]:
    """Every step, most valuable first (see the module docstring)."""
    py, res256 = s.python, str(s.res(256))
    memory = ["--resolutions", "16", "32", "--batch", "2", "--step"] if s.smoke else \
        ["--resolutions", "64", "128", "256", "512", "--batch", "16"]
    return [
        Step("gpu", "the GPU", ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                                "--format=csv"], 20, cuda_only=True),
        Step("preflight", "torch, CUDA and the imports", [py, "-c", PREFLIGHT, s.device], 60, fatal=True),
        Step("cuda-tests", "CUDA tests", [py, "-m", "pytest", "-q", "-m", "cuda", "tests/unit/test_cuda.py",
                                          "-p", "no:cacheprovider", "-rfE"], 120,
             keep=r"passed|failed|error|skipped|FAILED|ERROR"),
        # R3GAN (issue 24): its 256 px step against a plain loop of the same nets, at batch 64 (with a profile of
        # our step's top kernels) and the largest batch; R3GAN on MNIST-5k for 5 minutes with FD as it goes
        bench(s, "r3gan256", "r3gan step 256 px, batch 64, ffhq256 recipe's nets", 256, "64", 90,
              "--recipe", R3GAN256, "--profile"),
        bench(s, "r3gan256-max", "r3gan step 256 px, largest batch", 256, "max", 150, "--recipe", R3GAN256),
        # stylegan2-ada's geometric resampling (issue 30): the wavelet path against a convolutional version and
        # bilinear, forward and backward, at the ffhq recipes' 3 channels
        Step("augment", "wavelet vs bilinear resampling, 3 channels",
             [py, "benchmarks/augment.py", "--device", s.device, "--channels", "3",
              *(["--batch", "4", "--sizes", "16", "--rounds", "1"] if s.smoke else
                ["--batch", "32", "--sizes", "64", "256", "--rounds", "5"])], 60,
             keep=r"px|ours|reference|bilinear|Error"),
        Step("two-proc-gpu", "2 processes on the one GPU over gloo, recipes/mnist/r3gan.yaml, 200 steps",
             [py, "-c", TWO_PROCESSES, f"{s.scratch}/runs/two-proc", "recipes/mnist/r3gan.yaml",
              *two_process_overrides(s)], 120, keep=r"two processes:|process group|Error|error:"),
        Step("r3gan-mnist", "recipes/mnist/r3gan.yaml on the GPU, 5 minutes",
             [py, "-c", TRAIN_WITH_PEAK, "train", "recipes/mnist/r3gan.yaml", *r3gan_mnist_overrides(s)], 330,
             keep=r"fid |finished at step|graph|peak CUDA|Error|out of memory"),
        bench(s, "step128", "step 128 px, batch 64, NCHW vs NHWC", 128, "64", 60, *NHWC_VARIANTS),
        bench(s, "step256", "step 256 px, batch 64, NCHW vs NHWC", 256, "64", 75, *NHWC_VARIANTS),
        bench(s, "step256-max", "step 256 px, largest batch, NCHW vs NHWC", 256, "max", 150, *NHWC_VARIANTS),
        Step("memory", "peak memory of a real bf16 step, plain vs checkpointing",
             [py, "benchmarks/memory.py", "--device", s.device, "--precision", "bf16", *memory], 60,
             keep=r"^\s*(res|\d+) |ACL-GAN-GP|Error"),
        Step("shard256", "digits -> shards at 256 px", [py, "-m", "acl_dist", "shard", "builtin:digits",
                                                         f"{s.scratch}/digits256", "--resolution", res256,
                                                         "--max-count", "300", "--no-progress"], 40,
             keep=r"shard:|Error", reserve_s=20),  # 6 shards: one at least per DataLoader worker (4)
        Step("train256", f"{FFHQ256} on the digits shards, {s.train_steps} steps",
             [py, "-c", TRAIN_WITH_PEAK, "train", FFHQ256, *train_overrides(s)], 170,
             keep=r"fid |finished at step|graph|peak CUDA|Error|out of memory", reserve_s=130, needs="shard256",
             collect=collect_training),
        bench(s, "step128-max", "step 128 px, largest batch, NCHW vs NHWC", 128, "max", 100, *NHWC_VARIANTS),
        bench(s, "recipe256", "step 256 px with the ffhq256 recipe's nets, its batch 16", 256, "16", 60,
              "--recipe", FFHQ256),
        bench(s, "step64", "step 64 px, batch 64 (README table row)", 64, "64", 40),
    ]


def selected(steps: list[Step], only: list[str]) -> list[Step]:
    """The steps ``only`` names (all when empty), with what they need; gpu and preflight always run."""
    if not only:
        return steps
    unknown = set(only) - {st.name for st in steps}
    if unknown:
        raise SystemExit(f"gpu_checks: no step named {', '.join(sorted(unknown))}")
    wanted = set(only) | {"gpu", "preflight"} | {st.needs for st in steps if st.name in only and st.needs}
    return [st for st in steps if st.name in wanted]


def box_for(steps: list[Step], i: int, left: float) -> float:
    """Seconds step ``i`` may run: its own box, less what the later steps' reserves keep back."""
    return min(steps[i].box_s, left - sum(later.reserve_s for later in steps[i + 1:]))


def run_command(step: Step, box: float, log) -> tuple[str, str]:
    """Run ``step.argv`` in its own process group, output appended to ``log``; (status, its output)."""
    log.flush()
    start = log.tell()
    try:
        proc = subprocess.Popen(step.argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        log.write(f"{e}\n")
        return f"failed ({type(e).__name__})", str(e)
    try:
        rc = proc.wait(timeout=box)
        status = "ok" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired:
        stop_group(proc)
        status = f"timed out after {box:.0f} s"
    log.flush()
    with open(log.name) as f:
        f.seek(start)
        return status, f.read()


def stop_group(proc: subprocess.Popen) -> None:
    """End the step's process group (its DataLoader workers, a probe child): TERM, then KILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def run_step(step: Step, box: float, s: Settings, log) -> Result:
    log.write(f"\n===== {step.name}: {step.title} (box {box:.0f} s)\n$ {' '.join(step.argv)}\n")
    t0 = time.monotonic()
    status, output = run_command(step, box, log)
    result = Result(step.name, status, time.monotonic() - t0,
                    [line for line in output.splitlines() if re.search(step.keep, line)][-40:])
    if step.collect is not None:
        result.kept += [f"-> {name}" for name in step.collect(s)]
    log.write(f"----- {step.name}: {status} in {result.seconds:.0f} s\n")
    # one line here; the whole output is in the log, the key lines in the summary printed last (the device
    # tool's reply keeps only the last 12,000 characters of what is printed)
    print(f"===== {step.name}: {step.title}: {status} in {result.seconds:.0f} s", flush=True)
    return result


def skip_reason(step: Step, s: Settings, results: dict[str, Result]) -> str:
    if step.cuda_only and s.smoke:
        return "needs a GPU; smoke mode"
    if step.needs and not (step.needs in results and results[step.needs].ok):
        return f"{step.needs} did not succeed"
    return ""


def run_all(s: Settings) -> list[Result]:
    """Every selected step in order, within the budget; the summary rewritten after each."""
    steps = selected(plan(s), s.only)
    deadline, results = time.monotonic() + s.budget, {}
    path = os.path.join(s.out, "gpu-checks.log")
    open(path, "w").close()
    with open(path, "a") as log:  # appended to by every step's process too (O_APPEND: no lost lines)
        log.write(f"gpu_checks {time.strftime('%Y-%m-%d %H:%M:%S')}: {'smoke (CPU)' if s.smoke else 'GPU'}, "
                  f"budget {s.budget:.0f} s, scratch {s.scratch}\n")
        for i, step in enumerate(steps):
            box = box_for(steps, i, deadline - time.monotonic())
            why = skip_reason(step, s, results) or ("no time left" if box < MIN_BOX_S else "")
            if why:
                print(f"===== {step.name}: skipped ({why})", flush=True)
                log.write(f"\n===== {step.name}: skipped ({why})\n")
            results[step.name] = Result(step.name, f"skipped ({why})") if why else run_step(step, box, s, log)
            write_summary(s, list(results.values()))
            if step.fatal and not results[step.name].ok:
                log.write(f"{step.name} failed: the run stops here\n")
                break
    return list(results.values())


def write_summary(s: Settings, results: list[Result]) -> str:
    lines = [f"{'step':<12} {'status':<34} {'s':>5}"]
    for r in results:
        lines.append(f"{r.name:<12} {r.status:<34} {r.seconds:5.0f}")
        lines += [f"    {k.rstrip()[:320]}" for k in r.kept]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(s.out, "summary.txt"), "w") as f:
        f.write(text)
    return text


def collect_training(s: Settings) -> list[str]:
    """Copy the training run's small files into ``out``, flat: the FID table and curve, the metrics, the
    first and last sample grids (shrunk if a grid is larger than the device tool returns)."""
    run_dir = os.path.join(s.scratch, "runs", RUN_NAME)
    grids = sorted(glob.glob(os.path.join(run_dir, "samples", "step-*.png")))
    wanted = {"eval.csv": "eval.csv", "eval.png": "eval.png", "metrics.jsonl": "metrics.jsonl"}
    files = {f"train256-{v}": os.path.join(run_dir, k) for k, v in wanted.items()}
    if grids:
        files.update({"train256-samples-first.png": grids[0], "train256-samples-last.png": grids[-1]})
    copied = []
    for name, src in files.items():
        if os.path.isfile(src):
            copy_within_limit(src, os.path.join(s.out, name))
            copied.append(name)
    return copied


def copy_within_limit(src: str, dst: str) -> None:
    """Copy; a PNG above ``MAX_FILE`` is halved in size until it fits (the device tool drops larger files)."""
    shutil.copyfile(src, dst)
    if not dst.endswith(".png"):
        return
    from PIL import Image

    while os.path.getsize(dst) > MAX_FILE:
        with Image.open(dst) as im:
            im = im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)
        im.save(dst, optimize=True)


def parse_args(argv: list[str] | None = None) -> Settings:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=env("OUT") or os.path.join(REPO, "runs", "gpu-checks"))
    p.add_argument("--smoke", action="store_true", default=env("GPU_CHECK_SMOKE", "") not in ("", "0"))
    p.add_argument("--budget", type=float, default=float(env("GPU_CHECK_BUDGET") or 0),
                   help="seconds for the whole run (default 400 on a GPU, 900 in smoke mode)")
    p.add_argument("--only", default=env("GPU_CHECK_ONLY", ""), help="comma-separated step names")
    p.add_argument("--train-steps", type=int, default=int(env("GPU_CHECK_TRAIN_STEPS") or 0))
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    return Settings(out=os.path.abspath(args.out), scratch=tempfile.mkdtemp(prefix="acl_gpu_checks_"),
                    smoke=args.smoke, budget=args.budget or (900.0 if args.smoke else 400.0),
                    only=[n for n in args.only.split(",") if n],
                    train_steps=args.train_steps or (4 if args.smoke else 300))


def main(argv: list[str] | None = None) -> int:
    s = parse_args(argv)
    t0 = time.monotonic()
    try:
        results = run_all(s)
    finally:
        shutil.rmtree(s.scratch, ignore_errors=True)
    print(f"\n===== summary ({time.monotonic() - t0:.0f} s of a {s.budget:.0f} s budget; files in {s.out}: "
          f"{', '.join(sorted(os.listdir(s.out)))})")
    print(write_summary(s, results), end="")
    return 0 if all(r.ok or r.status.startswith("skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
