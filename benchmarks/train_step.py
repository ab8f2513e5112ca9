"""A full ACL-GAN-GP step: acl_dist's trainer vs a plain single-file PyTorch loop, side by side.

    python benchmarks/train_step.py [--resolution 32] [--batch 64] [--rounds 7] [--steps 5]
                                    [--device cpu|cuda] [--precision no|bf16] [--threads N]
                                    [--set train.compile=true train.channels_last=never ...] [--peak-tflops F]

Both sides train the same nets (built from recipes/digits/acl_gan_gp.yaml, resized), with the same losses,
per-net Adam settings (``optim.lr_per_net`` / ``optim.betas_per_net``), d_steps, gradient penalty weight and
EMA, on the digits in memory. The plain loop is what a careful user writes by hand: three critic forwards and
``autograd.grad`` for the penalty, ``zero_grad`` on the nets it steps, every net left trainable. The two run
interleaved (``--steps`` steps of each per round) and the median time per step is compared; the ratio is
plain / ours (above 1: ours is faster).
On a GPU it also prints absolute images/s (only meaningful there) and the model FLOPs utilisation: the
FLOPs of one of our steps, counted by ``torch.utils.flop_counter`` (convolutions and matrix products of
every forward, backward and double backward), per second, over the GPU's dense bf16 peak (``--peak-tflops``;
989 for an H100/H200 SXM). ``--set`` passes recipe overrides to our trainer only (the plain loop stays plain).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from acl_dist import losses  # noqa: E402
from acl_dist.config import load_recipe  # noqa: E402
from acl_dist.data.memory import digits_tensors  # noqa: E402
from acl_dist.methods.registry import build_method  # noqa: E402
from acl_dist.train.trainer import Trainer  # noqa: E402

RECIPE = "recipes/digits/acl_gan_gp.yaml"


class PlainLoop:
    """The hand-written reference: the same maths as acl_gan_gp, no framework."""

    def __init__(self, recipe, device: torch.device, precision: str):
        torch.manual_seed(0)
        self.r, self.device, self.precision = recipe, device, precision
        self.m = build_method(recipe).to(device)
        n, o = self.m.nets, recipe.optim
        # each net with the recipe's own Adam settings, as the trainer builds them: the ACL module (Gz, Dc)
        # takes a higher rate and beta1 0.5 where the image nets take the recipe's defaults
        self.opt = {k: torch.optim.Adam(n[k].parameters(), lr=o.lr_per_net.get(k, o.lr),
                                        betas=tuple(o.betas_per_net.get(k, (o.beta1, o.beta2))),
                                        weight_decay=o.weight_decay)
                    for k in ("Dx", "Gx", "E", "Dc", "Gz")}
        self.ema = {k: [p.detach().clone() for p in n[k].parameters()] for k in ("Gx", "Gz")}
        self.data = digits_tensors(recipe.model.resolution, recipe.model.channels)[0].to(device)

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


def _timed(fn, steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=5, help="steps of each side per round")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="no", choices=("no", "bf16"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    p.add_argument("--set", nargs="*", default=[], help="recipe overrides for our trainer (key=value)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak; 0: 989 on H100/H200")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    overrides = [f"model.resolution={args.resolution}", f"train.batch_size={args.batch}", "train.progress=false",
                 "train.tensorboard=false", f"train.mixed_precision={args.precision}", f"launch.device={device.type}",
                 "run.out_dir=/tmp/acl_dist_bench", "eval.every=0", "train.ckpt_every=0"]
    recipe = load_recipe(RECIPE, overrides)
    trainer = Trainer(load_recipe(RECIPE, overrides + args.set))
    batches, sums = iter(trainer.stream), {}

    def ours() -> None:
        trainer.train_step(batches, sums)
        trainer.step += 1
        trainer.ema.update(trainer._sampling_nets(), trainer.step)

    plain = PlainLoop(recipe, device, args.precision)
    for fn in (ours, plain.step):  # warm-up (allocator, autotuning, first-call costs, CUDA-graph capture)
        _timed(fn, 6, device)
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    for _ in range(args.rounds):
        times["ours"].append(_timed(ours, args.steps, device))
        times["plain"].append(_timed(plain.step, args.steps, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    # counted on an eager step (a graph replay dispatches nothing to count)
    flops = _step_flops(lambda: trainer.run_step(batches, {})) if device.type == "cuda" else 0.0
    images = args.batch * (recipe.method.d_steps + 1)  # real images a step consumes (D steps + the G-side batch)
    print(f"acl_gan_gp step, {args.resolution}x{args.resolution}, batch {args.batch}, d_steps "
          f"{recipe.method.d_steps}, precision {args.precision}, device {device}, threads {torch.get_num_threads()}")
    for k in ("plain", "ours"):
        print(f"  {k:<6} median {med[k] * 1000:8.1f} ms/step  (min {min(times[k]) * 1000:.1f})"
              + (f"  {images / med[k]:.0f} images/s" if device.type == "cuda" else ""))
    print(f"  speed-up ours vs plain: {med['plain'] / med['ours']:.2f}x" + (f"  (ours with {' '.join(args.set)})"
                                                                           if args.set else ""))
    if flops:
        peak = args.peak_tflops or _known_peak_tflops(torch.cuda.get_device_name())
        achieved = flops / med["ours"] / 1e12
        print(f"  model FLOPs per step {flops / 1e9:.2f} GFLOP; ours {achieved:.1f} TFLOP/s"
              + (f" = MFU {achieved / peak * 100:.2f}% of {peak:.0f} TFLOP/s dense bf16" if peak else ""))


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
    """Dense bf16 tensor-core peak of the GPUs these benchmarks have run on (0: unknown, MFU not printed)."""
    return 989.0 if ("H100" in name or "H200" in name) else 0.0


if __name__ == "__main__":
    main()
