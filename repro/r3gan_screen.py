"""R3GAN's screen: the tuning effort WGAN-GP got on MNIST, given to R3GAN.

``r3gan.md`` runs R3GAN's recipe untuned against WGAN-GP as the MNIST screen tuned it. Here R3GAN screens as many
settings as WGAN-GP did (``R3GAN_VARIANTS``: its recipe, then one change each of the learning rate, gamma and the
learning-rate schedule) on the MNIST selection seeds, scored and selected by the MNIST report's rule (``repro.mnist``:
primary metric the mean held-out FD over the last 4 evaluations, lowest mean selected), and its selected setting
is set beside WGAN-GP's selected setting on the same seeds (the MNIST screen's own runs, shared).

These are selection-stage numbers: the best of 4 settings, scored on the seeds it was picked on, is biased in
R3GAN's favour. A "worse" verdict here therefore holds a fortiori; an "improves" would still have to be confirmed
on fresh seeds (``r3gan.md``'s) before it is claimed.
"""

from __future__ import annotations

import json
import os

from repro import mnist
from repro.jobs import Job, run_jobs
from repro.r3gan import wgan_gp_settings
from repro.report import fd_curves_figure, write_report
from repro.stats import distance_verdict, welch

R3GAN_VARIANTS = {  # as many settings as WGAN-GP's screen: the recipe, then one change each of
    "recipe": {},
    "lr_x2": {"optim.lr": 4.0e-4},  # the learning rate (both ends of its decay)
    "gamma_x10": {"method.gamma": 0.5, "method.gamma_final": 0.05},  # the R1 + R2 weight (both ends, x10 the recipe's)
    "no_lr_decay": {"optim.lr_decay_to": 1.0},  # the learning-rate schedule
}
assert len(R3GAN_VARIANTS) == len(mnist.BASE_VARIANTS["wgan_gp"])  # equal tuning effort


def screen_jobs(b: dict, wgan_gp: tuple[str, dict]) -> list[Job]:
    """R3GAN's variants on the selection seeds, then WGAN-GP's selected setting on them: named and set as the
    MNIST screen's runs, so those are shared, not retrained, where they exist."""
    chosen, values = wgan_gp
    out = [mnist.job("select", "r3gan", name, v, seed, b) for name, v in R3GAN_VARIANTS.items() for seed in b["select"]]
    return out + [mnist.job("select", "wgan_gp", chosen, values, seed, b) for seed in b["select"]]


def reproduce(out_dir: str, runs_root: str, budget_name: str, parallel: int, device: str = "cpu") -> str:
    b = mnist.budget(budget_name)
    wgan_gp = wgan_gp_settings(out_dir)
    jobs = screen_jobs(b, wgan_gp)
    run_jobs(jobs, runs_root, parallel, "R3GAN screen", device)
    scores = mnist.stage_scores(jobs, runs_root, "select")
    selected = mnist.select(scores["r3gan"], R3GAN_VARIANTS)
    base_runs, r3gan_runs = scores["wgan_gp"][wgan_gp[0]], scores["r3gan"][selected]
    d = welch([r["primary"] for r in base_runs], [r["primary"] for r in r3gan_runs])
    verdict = distance_verdict(d)
    seeds = ", ".join(map(str, b["select"]))
    row = (f"| R3GAN's selected setting vs WGAN-GP's (seeds {seeds}) | wgan_gp | {d.base_mean:.1f} ± "
           f"{d.base_std:.1f} | r3gan | {d.other_mean:.1f} ± {d.other_std:.1f} | {d.diff:+.1f} "
           f"[{d.ci_low:+.1f}, {d.ci_high:+.1f}] | {d.p_value:.3g} | **{verdict}** |")
    os.makedirs(out_dir, exist_ok=True)
    curves = fd_curves_figure({"R3GAN's screen": [(f"wgan_gp {wgan_gp[0]}", base_runs, "--")] +
                               [(f"r3gan {name}", scores["r3gan"][name], "-") for name in R3GAN_VARIANTS]},
                              os.path.join(out_dir, "r3gan_screen_curves.png"),
                              ylabel="FD vs held-out (mnist-cnn), mean over seeds")
    with open(os.path.join(out_dir, "r3gan_selection.json"), "w") as f:
        json.dump({"budget": budget_name, "seeds": list(b["select"]), "selection": selected,
                   "primary": {v: [r["primary"] for r in runs] for v, runs in scores["r3gan"].items()}}, f, indent=1)
    body = f"""
## How it was run

Command: `acl-dist repro r3gan_screen --budget {budget_name}`: {b['steps']} generator steps per run
({mnist.BUDGET_WORDS[budget_name]}), seeds {seeds} (the MNIST selection seeds), one CPU thread per run; FD every
{b['eval_every']} steps on {b['samples']} EMA samples against MNIST-5k's 1,000 held-out digits (mnist-cnn
features). R3GAN (`recipes/mnist/r3gan.yaml`: the CIFAR-10 preset at CPU widths, 2 blocks per resolution, gamma
0.05 -> 0.005, lr 2e-4 -> 5e-5, beta2 0.9 -> 0.99, augmentation 0 -> 0.55, linear over the run) screens
{len(R3GAN_VARIANTS)} settings, as many as WGAN-GP's MNIST screen, selected by the same rule (lowest mean primary
FD: the mean over the last {mnist.LAST_EVALS} evaluations). WGAN-GP runs the setting its screen selected
(`{wgan_gp[0]}`), on the same seeds.

Selection-stage numbers: the best of {len(R3GAN_VARIANTS)} settings scored on the seeds it was picked on is
biased in R3GAN's favour, so a "worse" verdict holds a fortiori, and an "improves" would need the fresh seeds
of `r3gan.md` before it is claimed.

## Results

{chr(10).join(mnist.selection_table(R3GAN_VARIANTS, scores["r3gan"], selected))}

| comparison | base | base FD | other | other FD | other - base (95% CI) | p (Welch) | verdict |
| --- | --- | --- | --- | --- | --- | --- | --- |
{row}

- R3GAN tuned as WGAN-GP was: **r3gan `{selected}` {verdict}** over wgan_gp `{wgan_gp[0]}` ({d.other_mean:.1f} vs
  {d.base_mean:.1f}, {100 * d.diff / d.base_mean:+.0f}%, 95% CI [{d.ci_low:+.1f}, {d.ci_high:+.1f}]).

![FD against the held-out digits over training, mean over the selection seeds](r3gan_screen_curves.png)
"""
    return write_report(os.path.join(out_dir, "r3gan_screen.md"), "R3GAN's screen: WGAN-GP's tuning effort, given "
                        "to R3GAN", body, [curves])
