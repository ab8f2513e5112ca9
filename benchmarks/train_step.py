"""A full ACL-GAN-GP (or R3GAN) step: acl_dist's trainer vs a plain single-file PyTorch loop, side by side.

    python benchmarks/train_step.py [--recipe recipes/digits/acl_gan_gp.yaml] [--resolution 32]
                                    [--batch 64|max] [--rounds 7] [--steps 5] [--warmup 6]
                                    [--device cpu|cuda] [--precision no|bf16] [--threads N] [--flops]
                                    [--set train.compile=true ...] [--variant "train.channels_last=always" ...]
                                    [--max-batch-start 64] [--max-batch-cap 1024] [--peak-tflops F]

Both sides train the same nets (built from ``--recipe``, resized to ``--resolution``), with the same losses,
per-net Adam settings (``optim.lr_per_net`` / ``optim.betas_per_net``), d_steps, gradient penalty weight and
EMA, on the digits in memory (a shard recipe reads them too: the data path is not what is measured). The
plain loop is what a careful user writes by hand: three critic forwards and ``autograd.grad`` for the
penalty, ``zero_grad`` on the nets it steps, every net left trainable, torch's default Adam. The sides run
interleaved (``--steps`` steps of each per round, the order rotated every round) and the median time per
step is compared; a speed-up is plain / ours (above 1: ours is faster).

``--set`` passes recipe overrides to every one of our sides (the plain loop stays plain). ``--variant`` adds
one of our sides per use, with its own overrides on top (several separated by spaces), so that e.g. NCHW and
NHWC run in one process against one plain loop; without it there is one side, "ours".

``--batch max`` finds the largest batch at which every side fits at once: doubling from ``--max-batch-start``
up to ``--max-batch-cap`` (1024 by default: the 1,797 digits bound a batch of our in-memory stream), each
try building all sides and running their warm-up (CUDA-graph capture included). The search runs in a child
process, because an out-of-memory error inside a graph capture can leave the CUDA context unusable; the
child stops at the first size that fails, and this process then times the last size that fitted.

On a GPU it also prints images/s, the peak memory per side (``torch.cuda.max_memory_allocated`` from a reset
before each of its warm-up and timed calls; everything resident counts, the other sides' weights and
optimizer states too) and the model FLOPs utilisation per side: the FLOPs of one of our steps, counted by
dispatch over ``torch.utils.flop_counter``'s formulas (every convolution and matrix product of each forward,
backward and double backward; activation checkpointing's recomputed forwards count too), per second, over
the GPU's dense bf16 peak (``--peak-tflops``; 989 for an H100 SXM or H200). ``--flops`` counts them on the CPU
too (TFLOP/s only; a check that the counter runs).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from acl_dist import losses  # noqa: E402
from acl_dist.config import Recipe, load_recipe  # noqa: E402
from acl_dist.data.sources.digits import digits_tensors  # noqa: E402
from acl_dist.methods.registry import build_method  # noqa: E402
from acl_dist.training.trainer import Trainer  # noqa: E402

RECIPE = "recipes/digits/acl_gan_gp.yaml"
NETS = ("Dx", "Gx", "E", "Dc", "Gz")  # the nets acl_gan_gp trains
MIB = 2**20
MAX_BATCH_LINE = "largest batch that fits:"  # what the probe prints; the parent reads the number after it


class PlainLoop:
    """The hand-written reference: the same maths as acl_gan_gp, no framework."""

    NETS, SAMPLING = NETS, ("Gx", "Gz")

    def __init__(self, recipe: Recipe, device: torch.device, precision: str):
        torch.manual_seed(0)
        self.r, self.device, self.precision = recipe, device, precision
        self.m = build_method(recipe.method, recipe.model).to(device)
        n, o = self.m.nets, recipe.optim
        # each net with the recipe's own Adam settings, as the trainer builds them: the ACL module (Gz, Dc)
        # takes a higher rate and beta1 0.5 where the image nets take the recipe's defaults
        self.opt = {k: torch.optim.Adam(n[k].parameters(), lr=o.lr_per_net.get(k, o.lr),
                                        betas=tuple(o.betas_per_net.get(k, (o.beta1, o.beta2))),
                                        weight_decay=o.weight_decay)
                    for k in self.NETS}
        self.ema = {k: [p.detach().clone() for p in n[k].parameters()] for k in self.SAMPLING}
        self.data = digits_tensors(recipe.model.resolution, recipe.model.channels)[0].to(device)  # [N, C, R, R]

    def batch(self) -> torch.Tensor:
        idx = torch.randint(0, len(self.data), (self.r.train.batch_size,), device=self.device)
        return self.data[idx]

    def noise(self) -> torch.Tensor:
        return torch.randn(self.r.train.batch_size, self.r.model.code_dim, device=self.device)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _step(self, names: tuple[str, ...], loss: torch.Tensor) -> None:
        for k in names:
            self.opt[k].zero_grad(set_to_none=True)
        loss.backward()
        for k in names:
            self.opt[k].step()

    def step(self) -> None:
        n, cfg = self.m.nets, self.r.method
        for _ in range(cfg.d_steps):
            real = self.batch()
            with torch.no_grad(), self.autocast():
                fake = n["Gx"](n["Gz"](self.noise())).float()
            with self.autocast():
                d_real, d_fake = n["Dx"](real), n["Dx"](fake)
                alpha = torch.rand(real.shape[0], 1, 1, 1, device=self.device)
                x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
                (grads,) = torch.autograd.grad(n["Dx"](x_hat).sum(), x_hat, create_graph=True)
                gp = ((grads.float().flatten(1).norm(dim=1) - 1) ** 2).mean()
                loss = d_fake.float().mean() - d_real.float().mean() + cfg.gp_weight * gp
            self._step(("Dx",), loss)
        x = self.batch()
        with self.autocast():
            with torch.no_grad():
                codes = n["Gz"](self.noise())
            loss = -n["Dx"](n["Gx"](codes)).float().mean()
        self._step(("Gx",), loss)
        with self.autocast():
            with torch.no_grad():
                target = n["Dx"].features(x)
            rec = losses.feature_reconstruction(target.float(), n["Dx"].features(n["Gx"](n["E"](x))).float())
        self._step(("E", "Gx"), rec)
        with self.autocast():
            with torch.no_grad():
                codes, fake_codes = n["E"](x), n["Gz"](self.noise())
            real_l, fake_l = n["Dc"](codes).float(), n["Dc"](fake_codes).float()
            dc = F.binary_cross_entropy_with_logits(real_l, torch.ones_like(real_l)) + \
                F.binary_cross_entropy_with_logits(fake_l, torch.zeros_like(fake_l))
        self._step(("Dc",), dc)
        with self.autocast():
            logits = n["Dc"](n["Gz"](self.noise())).float()
            gz = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        self._step(("Gz",), gz)
        with torch.no_grad():
            for k, shadow in self.ema.items():
                torch._foreach_lerp_(shadow, [p.detach() for p in n[k].parameters()], 1 - self.r.train.ema)


class PlainR3GANLoop(PlainLoop):
    """The hand-written reference for r3gan: RpGAN's paired softplus losses, R1 + R2 by ``autograd.grad`` on the
    reals and the fakes, gamma / 2 (the recipe's start value; a plain loop would schedule it on the host)."""

    NETS, SAMPLING = ("D", "G"), ("G",)

    def noise(self) -> torch.Tensor:
        return torch.randn(self.r.train.batch_size, self.r.model.code_dim, device=self.device)

    @staticmethod
    def d_loss(d: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, gamma: float) -> torch.Tensor:
        """Scores and sums in float32 or wider (bf16 under autocast is widened; float64 stays)."""
        def wide(t: torch.Tensor) -> torch.Tensor:
            return t.to(torch.promote_types(t.dtype, torch.float32))

        real, fake = real.detach().requires_grad_(True), fake.detach().requires_grad_(True)
        d_real, d_fake = wide(d(real)), wide(d(fake))
        g_real, g_fake = torch.autograd.grad(d_real.sum() + d_fake.sum(), [real, fake], create_graph=True)
        penalty = sum(wide(g).pow(2).flatten(1).sum(1).mean() for g in (g_real, g_fake))
        return F.softplus(d_fake - d_real).mean() + gamma / 2 * penalty

    def step(self) -> None:
        n, cfg = self.m.nets, self.r.method
        for _ in range(cfg.d_steps):
            real = self.batch()
            with torch.no_grad(), self.autocast():
                fake = n["G"](self.noise()).float()
            with self.autocast():
                loss = self.d_loss(n["D"], real, fake, cfg.gamma)
            self._step(("D",), loss)
        real = self.batch()
        with self.autocast():
            with torch.no_grad():
                d_real = n["D"](real).float()
            loss = F.softplus(d_real - n["D"](n["G"](self.noise())).float()).mean()
        self._step(("G",), loss)
        with torch.no_grad():
            for k, shadow in self.ema.items():
                torch._foreach_lerp_(shadow, [p.detach() for p in n[k].parameters()], 1 - self.r.train.ema)


PLAIN = {"acl_gan_gp": PlainLoop, "r3gan": PlainR3GANLoop}  # the methods a plain loop is written for


@dataclass
class Side:
    """One contestant: its step, and what was measured of it."""

    name: str
    step: Callable[[], None]
    times: list[float] = field(default_factory=list)  # seconds per step, one entry per round
    peak: int = 0  # bytes: the largest torch.cuda.max_memory_allocated seen around its calls (CUDA only)


def our_step(trainer: Trainer) -> Callable[[], None]:
    """One training step as ``Trainer.train`` runs it (graphed or eager), EMA included."""
    batches, sums = iter(trainer.stream), {}

    def step() -> None:
        trainer.train_step(batches, sums)
        trainer.step += 1
        trainer.ema.update(trainer._sampling_nets(), trainer.step)

    return step


def base_overrides(args: argparse.Namespace, batch: int, device: torch.device) -> list[str]:
    """What both sides share: the size, the precision, in-memory digits, nothing written or evaluated, one
    device without DeepSpeed (the 512 recipe names ZeRO-2 for its multi-GPU runs)."""
    return [f"model.resolution={args.resolution}", f"train.batch_size={batch}", "train.progress=false",
            "log.trackers=[]", f"train.mixed_precision={args.precision}", f"launch.device={device.type}",
            "run.out_dir=/tmp/acl_dist_bench", "run.resume=none", "eval.every=0", "train.ckpt_every=0",
            "data.source=digits", "launch.deepspeed="]


def build_sides(args: argparse.Namespace, batch: int, device: torch.device) -> tuple[list[Side], Trainer]:
    """Our sides (one per ``--variant``), then the plain loop; and our first trainer (to count FLOPs on)."""
    base = base_overrides(args, batch, device)
    sides, trainers = [], []
    for i, variant in enumerate(args.variant or [""]):
        recipe = load_recipe(args.recipe, base + [f"run.name=bench-{i}"] + args.set + variant.split())
        trainers.append(Trainer(recipe))
        sides.append(Side(f"ours[{variant}]" if variant else "ours", our_step(trainers[-1])))
    plain = load_recipe(args.recipe, base)
    if plain.method.name not in PLAIN:
        raise SystemExit(f"no plain loop for {plain.method.name}; recipes of {', '.join(PLAIN)} can be compared")
    sides.append(Side("plain", PLAIN[plain.method.name](plain, device, args.precision).step))
    return sides, trainers[0]


def _timed(side: Side, steps: int, device: torch.device) -> float:
    """Seconds per step of ``steps`` calls; on CUDA also raises ``side.peak`` to the peak seen meanwhile."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        side.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        side.peak = max(side.peak, torch.cuda.max_memory_allocated())
    return (time.perf_counter() - start) / steps


def warm_up(sides: list[Side], steps: int, device: torch.device) -> None:
    """Allocator, cuDNN autotuning, first-call costs and our CUDA-graph capture (after 3 eager steps)."""
    for side in sides:
        _timed(side, steps, device)


def time_rounds(sides: list[Side], rounds: int, steps: int, device: torch.device) -> None:
    """``rounds`` rounds of ``steps`` steps per side, the order rotated each round (no side always first)."""
    for r in range(rounds):
        for side in sides[r % len(sides):] + sides[: r % len(sides)]:
            side.times.append(_timed(side, steps, device))


def probe_max_batch(args: argparse.Namespace, device: torch.device) -> int:
    """Double the batch until a try fails; print and return the last that fitted (0: none did).

    Runs in the child process of ``--batch max``; stops at the first failure, so a CUDA context an
    out-of-memory error broke is never used again."""
    fitted, batch = 0, args.max_batch_start
    while batch <= args.max_batch_cap:
        try:
            peak = _try_batch(args, batch, device)
        except Exception as e:  # out of memory, or e.g. a cuDNN failure at that size: either way it does not run
            print(f"  batch {batch}: {'out of memory' if _is_oom(e) else 'failed'} ({type(e).__name__}: "
                  f"{str(e).splitlines()[0][:160] if str(e) else ''})", flush=True)
            break
        left = torch.cuda.memory_allocated() if device.type == "cuda" else 0  # a leak would shrink the answer
        print(f"  batch {batch}: fits" + (f" (peak {peak / MIB:.0f} MiB; {left / MIB:.0f} MiB still allocated "
                                          "after freeing it)" if peak else ""), flush=True)
        fitted, batch = batch, batch * 2
    capped = " (the cap: a larger batch may fit)" if fitted and batch > args.max_batch_cap else ""
    print(f"{MAX_BATCH_LINE} {fitted}{capped}", flush=True)
    return fitted


def _try_batch(args: argparse.Namespace, batch: int, device: torch.device) -> int:
    """Build every side at ``batch`` and run what ``main`` runs before timing (the FLOP count on CUDA, the
    warm-up); the peak bytes (0 off CUDA). Frees all of it."""
    sides, trainer = build_sides(args, batch, device)
    if device.type == "cuda":
        count_flops(trainer, device)
    warm_up(sides, args.warmup, device)
    peak = max(s.peak for s in sides)
    del sides, trainer
    gc.collect()  # the trainers hold reference cycles; their graphs' memory pools go with them
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return peak


def _is_oom(e: BaseException | None) -> bool:
    """Whether ``e`` or an exception it arose from is an out-of-memory error (a failed graph capture raises
    its own error with the out-of-memory error as its context)."""
    while e is not None:
        if isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    return False


def find_max_batch(argv: list[str]) -> int:
    """Run :func:`probe_max_batch` in a child process (its lines pass through) and read its answer."""
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--probe"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    proc.wait()
    match = re.search(rf"^{re.escape(MAX_BATCH_LINE)} (\d+)", "".join(lines), re.M)
    if proc.returncode or not match or int(match.group(1)) == 0:
        raise SystemExit(f"train_step: no batch from {argv} fits (probe exit {proc.returncode})")
    return int(match.group(1))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=RECIPE, help="the nets, method and Adam settings both sides train")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch", default="64", help="a number, or max: the largest that fits (see above)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=5, help="steps of each side per round")
    p.add_argument("--warmup", type=int, default=6, help="untimed steps per side first (graphs: at least 5)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="no", choices=("no", "bf16"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    p.add_argument("--set", nargs="*", default=[], help="recipe overrides for all our sides (key=value)")
    p.add_argument("--variant", action="append", default=[], help="one more of our sides, with these overrides")
    p.add_argument("--flops", action="store_true", help="count FLOPs off CUDA too")
    p.add_argument("--max-batch-start", type=int, default=64)
    p.add_argument("--max-batch-cap", type=int, default=1024)
    p.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak; 0: known GPUs (H100, H200)")
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top kernels of one of our steps")
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)  # the child of --batch max
    args = p.parse_args(argv)
    if args.batch != "max" and not args.batch.isdigit():
        p.error(f"--batch: a positive number or max, not {args.batch!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.probe:
        sys.exit(0 if probe_max_batch(args, device) else 1)
    batch = find_max_batch(argv) if args.batch == "max" else int(args.batch)
    sides, trainer = build_sides(args, batch, device)
    flops = count_flops(trainer, device) if device.type == "cuda" or args.flops else 0.0
    warm_up(sides, args.warmup, device)
    resident = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    time_rounds(sides, args.rounds, args.steps, device)
    report(args, trainer.recipe, sides, flops, resident, device)
    if args.profile:
        profile_step(sides[0], device)


def profile_step(side: Side, device: torch.device, rows: int = 15) -> None:
    """torch.profiler's table of one step of ``side``: the kernels (or CPU ops) that take its time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        side.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(f"profile of one {side.name} step, top {rows} by {key}:")
    print(prof.key_averages().table(sort_by=key, row_limit=rows))


def count_flops(trainer: Trainer, device: torch.device) -> float:
    """FLOPs of one eager step of ours (a graph replay dispatches nothing to count). Counted before the warm-up:
    at the largest batch an eager step beside the captured graphs' memory pools would not fit; its own
    cached memory is handed back before the graphs take theirs."""
    flops = _step_flops(lambda: trainer.run_step(iter(trainer.stream), {}))
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    return flops


def report(args: argparse.Namespace, recipe: Recipe, sides: list[Side], flops: float, resident: int,
           device: torch.device) -> None:
    """One line per side (ms/step, images/s, peak MiB, MFU), then each of our sides' speed-up over plain."""
    batch, d_steps = recipe.train.batch_size, recipe.method.d_steps
    images = batch * (d_steps + 1)  # real images a step consumes (D steps + the G-side batch)
    cuda = device.type == "cuda"
    peak = (args.peak_tflops or _known_peak_tflops(torch.cuda.get_device_name())) if cuda else 0.0
    print(f"{recipe.method.name} step, {args.resolution}x{args.resolution}, batch {batch}, d_steps {d_steps}, "
          f"precision {args.precision}, device {torch.cuda.get_device_name() if cuda else device}, threads "
          f"{torch.get_num_threads()}, nets of {args.recipe}" + (f", ours with {' '.join(args.set)}" if args.set
                                                                  else ""))
    if flops:
        print(f"  model FLOPs per step {flops / 1e9:.1f} GFLOP" + (f"; MFU over {peak:.0f} TFLOP/s dense bf16"
                                                                    if peak else ""))
    width = max(len(s.name) for s in sides)
    for s in sorted(sides, key=lambda s: s.name != "plain"):
        med = statistics.median(s.times)
        line = f"  {s.name:<{width}} median {med * 1000:9.1f} ms/step  (min {min(s.times) * 1000:.1f})"
        line += f"  {images / med:8.0f} images/s  peak {s.peak / MIB:8.0f} MiB" if cuda else ""
        if flops:
            line += f"  {flops / med / 1e12:6.3g} TFLOP/s" + (f"  MFU {flops / med / 1e12 / peak * 100:5.2f}%"
                                                              if peak else "")
        print(line)
    if cuda:
        print(f"  resident after warm-up (all sides): {resident / MIB:.0f} MiB; reserved now "
              f"{torch.cuda.memory_reserved() / MIB:.0f} MiB")
    plain = statistics.median(next(s for s in sides if s.name == "plain").times)
    for s in sides:
        if s.name != "plain":
            print(f"  speed-up {s.name} vs plain: {plain / statistics.median(s.times):.2f}x")


def _step_flops(step) -> float:
    """FLOPs of one call of ``step`` (every conv/matmul, forward and backward), counted by dispatch.

    A bare dispatch mode over torch's FLOP formulas: ``FlopCounterMode`` itself tracks modules with
    backward hooks, which ``autograd.grad`` (the penalty) refuses.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Count(TorchDispatchMode):
        flops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                self.flops += formula(*args, **kwargs, out_val=out)
            return out

    counter = Count()
    with counter:
        step()
    return float(counter.flops)


def _known_peak_tflops(name: str) -> float:
    """Dense bf16 tensor-core peak of the GPUs these benchmarks run on (0: unknown, MFU not printed)."""
    if "H100" in name and "PCIe" in name:
        return 756.0
    return 989.0 if ("H100" in name or "H200" in name) else 0.0


if __name__ == "__main__":
    main()
