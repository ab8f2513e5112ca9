"""How the ACL module is attached, measured: each change alone and all together, against the base models.

ACL-GAN, ACL-GAN-GP and ACL-AE on the digits, every variant and every base model (gan, wgan_gp, vae, aae)
trained from its `recipes/digits/` recipe with the same budget and seeds. A variant sets every attachment
option explicitly (``PAPER`` below, then its changes), so what a row measured does not move when recipe
defaults move. Metrics are declared here, before any run is looked at:

- primary: the Fréchet distance (digits-CNN features) of the EMA generator at the last step, mean ± std
  over seeds; also the best FD over the run and the curve;
- where the quality goes: code MMD² between Gz(z) and E(x) (``stats.code_mmd2``, 1,000 codes), the
  reconstruction FD of Dec(E(x)) / Gx(E(x)), and, averaged over the last quarter of the log ticks, the image
  critic's real-fake gap (mean D(x) - mean D(G(z)); about 0 means chance) and Dc's accuracy.
"""

from __future__ import annotations

import dataclasses
import json
import os

from acl_dist.methods.registry import options_class
from repro import table1
from repro.attachment import CHANGES, PAPER
from repro.jobs import Job, run_jobs
from repro.report import fd_curves_figure, mean_std, write_report
from repro.stats import difference_sentence, welch
from repro.table1 import _scores, diagnostics

BASES = {"acl_gan": ["gan"], "acl_gan_gp": ["wgan_gp"], "acl_ae": ["vae", "aae"]}
PAIRS = {"residual+code_norm": ("residual", "code_norm")}  # the two largest levers of the single-seed leads
CONFIRMED = ("paper", "code_norm", "residual+code_norm")  # on every seed; the other variants on seed 0 only
LAST_QUARTER = 0.25  # share of the log ticks the critic gap and Dc accuracy average over


def budget(name: str) -> dict:
    """Table 1's budget (the base models' runs are Table 1's own), with the variants to train.

    ``confirm``: the variants trained on every seed. At the full budget every change is screened on seed 0,
    and the paper attachment and the two leading single-seed levers (``CONFIRMED``) run on all seeds: a
    variant takes 10-15 CPU minutes, and the screen's spread between changes was larger than its seed noise
    except among those. None: every variant on every seed."""
    if name == "tiny":
        return {**table1.budget(name), "variants": ("paper", "all"), "confirm": None}
    return {**table1.budget(name), "variants": None, "confirm": CONFIRMED}


HELD = {"method.gp_every": 1}  # what the ablation measured with, held whatever the recipes' defaults become


def held(method: str) -> dict:
    """``HELD``'s settings that apply to ``method`` (its own options): the dense gradient penalty the ablation
    was measured with, for its base and ACL runs alike, so a later recipe default (the lazy penalty report's)
    neither moves its rows nor makes a base row differ from its ACL rows in more than the ACL module."""
    options = {f"method.{f.name}" for f in dataclasses.fields(options_class(method))}
    return {k: v for k, v in HELD.items() if k in options}


def variants(method: str, only: tuple[str, ...] | None = None) -> dict[str, dict]:
    """{variant: overrides} for one ACL method: the paper's attachment, each change alone, all together
    (``only``: just these variants, for the tiny budget)."""
    applicable = {k: c for k, c in CHANGES.items() if method in c[2]}
    options = {f"method.{f.name}" for f in dataclasses.fields(options_class(method))}
    paper = {**{k: v for k, v in PAPER.items() if not k.startswith("method.") or k in options},  # its own options
             **held(method)}
    out = {"paper": paper}
    out.update({k: {**paper, **c[1]} for k, c in applicable.items()})
    for name, parts in PAIRS.items():
        out[name] = {**paper, **{key: v for p in parts for key, v in CHANGES[p][1].items()}}
    out["all"] = {**paper, **{key: v for c in applicable.values() for key, v in c[1].items()}}
    return {k: v for k, v in out.items() if only is None or k in only}


def _overrides(values: dict) -> list[str]:
    return [f"{k}={v}" for k, v in values.items()]


def jobs_for(budget_name: str) -> list[Job]:
    """The base models' runs (``held`` settings on their recipes: Table 1's runs, shared by content, where
    those are the recipes' defaults), then every variant, seed by seed."""
    b = budget(budget_name)
    bases = [m for ms in BASES.values() for m in ms]
    jobs = []
    for seed in range(b["seeds"]):
        common = [*table1.common_overrides(b), f"run.seed={seed}"]
        jobs += [Job(f"ablation-{m}-seed{seed}", f"recipes/digits/{m}.yaml", [*common, *_overrides(held(m))])
                 for m in bases]
        for method in BASES:
            jobs += [Job(f"ablation-{method}-{name}-seed{seed}", f"recipes/digits/{method}.yaml",
                         [*common, *_overrides(values)])
                     for name, values in variants(method, b["variants"]).items()
                     if seed == 0 or b["confirm"] is None or name in b["confirm"]]
    return jobs


def _key(job: Job) -> str:
    """"gan" for a base model's run, "acl_gan-residual" for a variant's."""
    name = job.name[:job.name.rindex("-seed")]
    return name.split("-", 1)[1]


def late_means(run_dir: str) -> dict:
    """The critic's real-fake gap and Dc's accuracy, averaged over the last quarter of the log ticks."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [r for r in (json.loads(line) for line in f) if "images_per_s" in r]
    rows = rows[-max(1, int(len(rows) * LAST_QUARTER)):]

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    gaps = [r[f"{d}/d_real"] - r[f"{d}/d_fake"] for r in rows for d in ("Dx", "D") if f"{d}/d_real" in r]
    return {"d_gap": mean(gaps), "dc_acc": mean([r["Dc/dc_acc"] for r in rows if "Dc/dc_acc" in r])}


def measure(run_dir: str) -> dict:
    return {**_scores(run_dir), **diagnostics(run_dir), **late_means(run_dir)}


def _row(label: str, runs: list[dict], paper_fd: float | None) -> str:
    fds = [r["fid"] for r in runs]
    mean = sum(fds) / len(fds)
    change = "—" if paper_fd is None else f"{100 * (mean - paper_fd) / paper_fd:+.0f}%"
    return (f"| {label} | {mean_std(fds, 1)} | {len(runs)} | {change} | {mean_std([r['best'] for r in runs], 1)} | "
            f"{mean_std([r['code_mmd'] for r in runs], 3)} | {mean_std([r['recon_fd'] for r in runs], 1)} | "
            f"{mean_std([r['d_gap'] for r in runs], 2)} | {mean_std([r['dc_acc'] for r in runs], 2)} |")


def _method_table(method: str, scores: dict[str, list[dict]], only: tuple[str, ...] | None) -> list[str]:
    rows = [f"### {method}", "",
            "| variant | final FD ↓ | seeds | vs paper | best FD ↓ | code MMD² ↓ | recon FD ↓ | critic gap "
            "| Dc accuracy |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for base in BASES[method]:
        rows.append(_row(f"base: {base}", scores[base], None))
    paper = scores[f"{method}-paper"]
    paper_fd = sum(r["fid"] for r in paper) / len(paper)
    for name in variants(method, only):
        label = {"paper": "paper attachment", "all": "all changes"}.get(name, f"+ {name}")
        rows.append(_row(label, scores[f"{method}-{name}"], None if name == "paper" else paper_fd))
    return rows + [""]


def _verdicts(scores: dict[str, list[dict]], only: tuple[str, ...] | None, confirm: tuple[str, ...] | None
              ) -> list[str]:
    """For each method: the best variant run on every seed against each base, by Welch's 95% CI of the
    difference of final FD (a seed-0 screen alone claims nothing)."""
    out = []
    for method, bases in BASES.items():
        names = [n for n in variants(method, only) if confirm is None or n in confirm]
        means = {n: sum(r["fid"] for r in scores[f"{method}-{n}"]) / len(scores[f"{method}-{n}"]) for n in names}
        best = min(means, key=means.get)
        candidate = [r["fid"] for r in scores[f"{method}-{best}"]]
        for base in bases:
            reference = [r["fid"] for r in scores[base]]
            if len(candidate) < 2 or len(reference) < 2:
                out.append(f"- {method}: best variant `{best}` FD {means[best]:.1f} on one seed: no spread to "
                           f"judge a difference from {base} by.")
                continue
            out.append(f"- {method} (best variant `{best}`; paper attachment {means['paper']:.1f}): "
                       f"{difference_sentence(method, base, welch(reference, candidate))}.")
    return out


def _curves_figure(scores: dict[str, list[dict]], path: str, only: tuple[str, ...] | None) -> str:
    """Fig. 8's layout per ACL method: its base models dashed, its variants solid."""
    panels = {method: [(b, scores[b], "--") for b in bases]
              + [(n, scores[f"{method}-{n}"], "-") for n in variants(method, only)] for method, bases in BASES.items()}
    return fd_curves_figure(panels, path)


def reproduce(out_dir: str, runs_root: str, budget_name: str, parallel: int, device: str = "cpu") -> str:
    b = budget(budget_name)
    jobs = jobs_for(budget_name)
    run_jobs(jobs, runs_root, parallel, "ACL ablation", device)
    scores: dict[str, list[dict]] = {}
    for job in jobs:
        scores.setdefault(_key(job), []).append(measure(job.run_dir(runs_root)))
    os.makedirs(out_dir, exist_ok=True)
    curves = _curves_figure(scores, os.path.join(out_dir, "acl_ablation_curves.png"), b["variants"])
    tables = [line for method in BASES for line in _method_table(method, scores, b["variants"])]
    changes = "\n".join(f"- `{k}`: {c[0]} ({', '.join(f'`{o}={v}`' for o, v in c[1].items())}; "
                        f"{', '.join(c[2])})" for k, c in CHANGES.items())
    paper = ", ".join(f"`{k}={v}`" for k, v in PAPER.items())
    held_text = ", ".join(f"`{k}={v}`" for k, v in HELD.items()) + " (the dense penalty, where a method has one)"
    screen = "" if b["confirm"] is None else (
        f" for {', '.join(f'`{v}`' for v in b['confirm'])}; every other variant is a screen on seed 0 alone "
        "(its row says 1 seed and claims nothing)")
    body = f"""
Command: `acl-dist repro ablation --budget {budget_name}`: `recipes/digits/<method>.yaml` for {b['steps']}
generator steps, {b['seeds']} seeds each (0..{b['seeds'] - 1}){screen}, one CPU thread per run; FD every
{b['eval_every']} steps on {b['samples']} samples of the EMA generator against all 1,797 digits.
Every variant sets all attachment options: the paper's attachment is {paper}; a variant changes:

{changes}

`residual+code_norm` applies those two, and `all` every change that applies to the method. The base models
run their own recipes at the same budget (Table 1's runs, `acl-dist repro table1`, where the recipes' defaults
are what the ablation holds). Held for every run whatever the recipes' defaults: {held_text}.
An ACL recipe shares every setting of its base recipe except the ACL module's own (Gz and Dc learn at 1e-3;
under WGAN-GP they keep Adam betas (0.5, 0.9) while the image nets take the base's (0.0, 0.9)).

Declared before the runs (see `repro/ablation.py`): final FD is the primary metric; code MMD² (Gz(z)
against E(x), standardised by E(x)'s per-dimension scale, Gaussian kernels of widths 0.5, 1, 2 x sqrt(d), on
1,000 codes), reconstruction FD (Gx(E(x)) or Dec(E(x))), the image critic's real-fake gap and Dc's accuracy
(both averaged over the last quarter of the log) say where the quality goes. "vs paper" is the change of the
mean final FD against the paper attachment. Mean ± std over seeds.

{chr(10).join(tables)}
![FD curves, mean over seeds: dashed base models, solid ACL variants](acl_ablation_curves.png)

## What it shows

{chr(10).join(_verdicts(scores, b["variants"], b["confirm"]))}
"""
    return write_report(os.path.join(out_dir, "acl_ablation.md"), "ACL attachment ablation on the digits", body,
                        [curves])
