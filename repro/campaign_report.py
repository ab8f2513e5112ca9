"""docs/results/campaign.md, rebuilt from the campaign's records alone (no run directory needed).

What it shows, per family: how far the campaign got and what is still missing; the budget (mean FD curves of
the budget runs with the plateau marked); the screens at the budget; the confirmation's verdicts in FD, KID and
FD in a second extractor (another architecture and seed, ``repro.campaign.SECOND_EXTRACTOR``) with Welch's 95%
CI, the goal on its width and the seeds that would meet it; the diagnostics over training; the FD floor
(training digits against the held-out ones) beside every table; the final samples side by side.
"""

from __future__ import annotations

import os
import statistics

from repro import campaign as c
from repro.report import mean_std, write_report
from repro.stats import Difference, distance_verdict, welch


def fd_floor(samples: int, draws: int = 3) -> list[float]:
    """FD of ``samples`` real training digits (at most the 4,000 there are) drawn at random against the 1,000
    held-out ones, in mnist-cnn features: the distance a perfect generator would score, ``draws`` draws."""
    import torch

    from acl_dist.data.sources.mnist5k import mnist5k_tensors
    from acl_dist.eval.extractors import build_extractor
    from acl_dist.eval.fid import feature_dim, fid_from_stats, local_stats

    train, _ = mnist5k_tensors(32, 1, "train")
    held, _ = mnist5k_tensors(32, 1, "heldout")
    extractor = build_extractor("mnist-cnn")
    dim = feature_dim(extractor)
    reference = local_stats(held.split(200), extractor, len(held), dim)
    n = min(samples, len(train))
    out = []
    for draw in range(draws):
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(draw))[:n]
        out.append(fid_from_stats(local_stats(train[pick].split(200), extractor, n, dim), reference))
    return out


METRIC_SPACES = (("fid", "FD"), ("kid_mean", "KID"),  # (curve key, name): every space a verdict is read in
                 ("second_fid", f"FD in {c.SECOND_EXTRACTOR}"))


def _primary(records: list[dict], budget: int, key: str = "fid") -> list[float]:
    return [c.window_mean(r["curve"], budget, key) for r in records]


def _difference_row(title: str, base: str, other: str, b: list[float], o: list[float]) -> tuple[str, Difference]:
    d = welch(b, o)
    half = (d.ci_high - d.ci_low) / 2
    return (f"| {title} | {base} | {d.base_mean:.1f} ± {d.base_std:.1f} | {other} | {d.other_mean:.1f} ± "
            f"{d.other_std:.1f} | {d.diff:+.1f} [{d.ci_low:+.1f}, {d.ci_high:+.1f}] | {d.p_value:.3g} | "
            f"{100 * half / d.base_mean:.0f}% | **{distance_verdict(d)}** |"), d


def _compared(st: c.FamilyState) -> list[tuple[str, str]]:
    """(comparator, ACL arm) pairs of the confirmation: every ACL arm against the base, and the selected ACL
    method against each of the family's references."""
    f, found = st.family, st.scores["confirmation"]
    pairs = [(f"{f.base}/selected", label) for label in found if label.startswith(f"{f.acl}/")]
    return pairs + [(f"{m}/reference", f"{f.acl}/selected") for m in f.references]


def _verdicts(st: c.FamilyState) -> list[str]:
    """FD, KID and second-space FD verdicts of each ACL arm against the base (and of the selected one against
    each reference), the goal on the CI's width, the seeds it needs. The verdict stands when every space that
    measured it agrees; else it depends on the space."""
    found, budget = st.scores["confirmation"], st.budget
    rows = ["| metric | base | base | other | other | other - base (95% CI) | p (Welch) | CI half-width / base "
            "| verdict |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines = []
    for base_label, label in _compared(st):
        verdicts = {}
        for key, name in METRIC_SPACES:
            if not all(key in r["curve"][-1] for r in found[base_label] + found[label]):
                continue  # a space these runs were not evaluated in
            row, d = _difference_row(name, base_label, label, _primary(found[base_label], budget, key),
                                     _primary(found[label], budget, key))
            rows.append(row)
            verdicts[name] = (distance_verdict(d), d)
        fd_verdict, d = verdicts["FD"]
        agreed = {v for v, _ in verdicts.values()}
        both = fd_verdict if len(agreed) == 1 else "depends on the feature space"
        half = (d.ci_high - d.ci_low) / 2
        pooled = ((d.base_std**2 + d.other_std**2) / 2) ** 0.5
        goal = goal_sentence(half, d.base_mean, pooled)
        others = "; ".join(f"{name}: {v}" for name, (v, _) in verdicts.items() if name != "FD")
        lines.append(f"- **{label} against {base_label}: {both}** (FD {d.other_mean:.1f} vs {d.base_mean:.1f}, "
                     f"difference {d.diff:+.1f}, 95% CI [{d.ci_low:+.1f}, {d.ci_high:+.1f}]; {others}). {goal}")
    return [*lines, "", *rows]


def goal_sentence(half: float, base_mean: float, pooled: float) -> str:
    """Whether the CI meets the goal on its width; if not, the seeds per arm that would at this spread."""
    target = c.GOAL_HALF_WIDTH * base_mean
    if half <= target:
        return (f"CI half-width {100 * half / base_mean:.0f}% of the base's FD: goal of "
                f"±{100 * c.GOAL_HALF_WIDTH:.0f}% met.")
    # seeds per arm for a CI half-width of ``target`` at the pooled spread: t * pooled * sqrt(2/n) <= target
    n = 2
    from scipy import stats as scipy_stats

    while n < 10_000 and scipy_stats.t.ppf(0.975, 2 * n - 2) * pooled * (2 / n) ** 0.5 > target:
        n += 1
    return (f"CI half-width {100 * half / base_mean:.0f}% of the base's FD: goal of ±{100 * c.GOAL_HALF_WIDTH:.0f}% "
            f"not met; about {n} seeds per arm would meet it at this spread.")


def _screen_table(found: dict[str, list[dict]], budget: int, chosen: str, floor: str, shared: list[str]) -> list[str]:
    """One screen at the budget; ``shared``: the overrides every campaign run has (not shown per variant)."""
    rows = [f"| variant | primary FD at {budget} ↓ | primary KID | seeds | FD at {budget} |",
            "| --- | --- | --- | --- | --- |"]
    for label, runs in found.items():
        mark = " **(selected)**" if label.endswith(f"/{chosen}") else ""
        overrides = [o for o in runs[0]["overrides"]
                     if o not in shared and not o.startswith(("train.", "eval.", "log.", "run.seed"))]
        kid = _primary(runs, budget, "kid_mean") if "kid_mean" in runs[0]["curve"][0] else []
        rows.append(f"| `{label}`{mark} {', '.join(f'`{o}`' for o in overrides) or '(the recipe)'} | "
                    f"{mean_std(_primary(runs, budget), 1)} | {mean_std(kid, 2)} | {len(runs)} | "
                    f"{mean_std([c.rec.at_budget(r, budget)['final'].get('fid') for r in runs], 1)} |")
    return [*rows, "", f"FD floor (real training digits against the held-out ones): {floor}."]


def _diagnostics_table(found: dict[str, list[dict]], budget: int) -> list[str]:
    rows = ["| arm | critic gap | code MMD² | Dc accuracy | L_rec | reconstruction FD (end) |",
            "| --- | --- | --- | --- | --- | --- |"]
    for label, runs in found.items():
        def window(key: str) -> list[float]:
            out = []
            for r in runs:
                vals = [p[key] for p in r["diagnostics"] if c.WINDOW * budget < p["step"] <= budget and key in p]
                if vals:
                    out.append(statistics.fmean(vals))
            return out
        recon = [r["final_diagnostics"].get("recon_fd") for r in runs if r.get("final_diagnostics")]
        rows.append(f"| {label} | {mean_std(window('gap'), 2)} | {mean_std(window('code_mmd'), 3)} | "
                    f"{mean_std(window('dc_acc'), 2)} | {mean_std(window('rec'), 3)} | {mean_std(recon, 1)} |")
    return rows


def budget_figure(states: list[c.FamilyState], records: list[dict], s: c.Settings, path: str) -> str | None:
    """Per family, the mean FD curve of the base and the ACL method over the budget runs, the budget marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ready = [st for st in states if st.budget is not None]
    if not ready:
        return None
    fig = Figure(figsize=(4.6 * len(ready), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(ready), squeeze=False)[0]
    for ax, st in zip(axes, ready):
        for method, (style, _) in _method_styles(st.family).items():
            runs = [c.rec.find(records, c.spec(method, "recipe", {}, seed, st.long_steps).need(s))
                    for seed in s.selection_seeds]
            curve = c.mean_curve([r["curve"] for r in runs])
            ax.plot([p["step"] for p in curve], [p["fid"] for p in curve], style, label=f"{method} (recipe)")
        ax.axvline(st.budget, color="k", alpha=0.5, linestyle=":", label=f"budget {st.budget}")
        ax.axvspan(c.WINDOW * st.budget, st.budget, color="k", alpha=0.07)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("FD vs held-out (mnist-cnn), mean of seeds")
        ax.set_title(f"{st.family.name} family", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _method_styles(f: c.Family) -> dict[str, tuple[str, str]]:
    """{method: (line style, colour)}: the base dashed blue, the ACL method solid red, references dotted."""
    out = {f.base: ("--", "tab:blue"), f.acl: ("-", "tab:red")}
    out.update({m: (":", colour) for m, colour in zip(f.references, ("tab:green", "tab:purple", "tab:brown"))})
    return out


TRAINING_PANELS = (("fid", "FD vs held-out (mnist-cnn)", True), ("gap", "critic gap D(real) - D(fake)", False),
                   ("rec", "L_rec (ACL's; an autoencoder's reconstruction)", False),
                   ("code_mmd", "code MMD² Gz(z) vs E(x) (ACL)", False))


def _longest_budget_run(method: str, seed: int, long_steps: int, records: list[dict], s: c.Settings) -> dict | None:
    """The record of ``method``'s budget run on ``seed`` at ``long_steps``, else at half that, down to the
    campaign's first length; None when none is recorded."""
    steps = long_steps
    while steps >= s.long_steps:
        r = c.rec.find(records, c.spec(method, "recipe", {}, seed, steps).need(s))
        if r is not None:
            return r
        steps //= 2
    return None


def training_figure(states: list[c.FamilyState], records: list[dict], s: c.Settings, path: str) -> str | None:
    """Per family with budget runs recorded, every seed's curves over training: FD, the image critic's gap, L_rec
    and code MMD² (the diagnostics a late drift is read from), base dashed, ACL solid. Drawn from whatever budget
    runs exist, so it shows what the runs say before the family has a budget: each seed's longest recorded budget
    run (the budget runs double while no plateau shows, and the longer ones come later)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = []
    for st in states:
        runs = {m: [r for seed in s.selection_seeds if (r := _longest_budget_run(m, seed, st.long_steps, records, s))]
                for m in st.family.methods}
        if any(runs.values()):
            rows.append((st, runs))
    if not rows:
        return None
    fig = Figure(figsize=(4.2 * len(TRAINING_PANELS), 3.0 * len(rows)), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.subplots(len(rows), len(TRAINING_PANELS), squeeze=False)
    for axes, (st, runs) in zip(grid, rows):
        for (key, title, log), ax in zip(TRAINING_PANELS, axes):
            for method, (style, colour) in _method_styles(st.family).items():
                for i, r in enumerate(runs[method]):
                    points = [p for p in (r["curve"] if key == "fid" else r["diagnostics"]) if key in p]
                    if points:
                        ax.plot([p["step"] for p in points], [p[key] for p in points], style, color=colour, lw=1,
                                alpha=0.8, label=method if i == 0 else None)
            if log:
                ax.set_yscale("log")
            ax.set_title(f"{st.family.name} family: {title}", fontsize=8)
            ax.set_xlabel("step", fontsize=8)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def samples_figure(states: list[c.FamilyState], samples_dir: str, path: str) -> str | None:
    """The confirmation's final sample grids (first confirmation seed), side by side in one PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    found = []
    for st in states:
        for label, runs in st.scores.get("confirmation", {}).items():
            first = min(runs, key=lambda r: r["seed"])
            png = os.path.join(samples_dir, f"{label.replace('/', '-')}-{first['steps']}-seed{first['seed']}.png")
            if os.path.isfile(png):
                found.append((label, png))
    if not found:
        return None
    fig = Figure(figsize=(2.6 * len(found), 2.9), dpi=100)
    FigureCanvasAgg(fig)
    for ax, (label, png) in zip(fig.subplots(1, len(found), squeeze=False)[0], found):
        ax.imshow(imread(png), cmap="gray")
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _family_section(st: c.FamilyState, floor: str, shared: list[str], records: list[dict]) -> list[str]:
    f = st.family
    references = f" (references at their recipes, never screened: {', '.join(f.references)})" if f.references else ""
    out = [f"## {f.name} family: {f.base} and {f.acl}{references}", ""]
    if st.budget is None:
        so_far = "; ".join(f"{m}'s {b if b is not None else f'none within {st.long_steps}'}"
                           for m, b in st.budgets.items())
        out.append(f"Budget runs ({st.long_steps} steps, on the selection seeds) not all recorded yet: no budget"
                   + (f" (plateau so far: {so_far})." if so_far else "."))
    else:
        words = "; ".join(f"of {m}: {b if b is not None else f'no plateau within {st.long_steps}'}"
                          for m, b in st.budgets.items())
        out.append(f"Budget: **{st.budget} steps** (plateau {words}; runs of {st.long_steps} steps).")
    for stage in ("base screen", "ACL screen"):
        if stage in st.scores:
            method = f.base if stage == "base screen" else f.acl
            out += ["", f"### {stage} at {st.budget} steps", "",
                    *_screen_table(st.scores[stage], st.budget, st.selection[method], floor, shared)]
    if st.stage == "done":
        seeds = len(next(iter(st.scores["confirmation"].values())))
        out += ["", f"### Verdicts at {st.budget} steps ({seeds} confirmation seeds)", "",
                *_verdicts(st), "", f"FD floor: {floor}.", "", "Diagnostics over the primary metric's window:", "",
                *_diagnostics_table(st.scores["confirmation"], st.budget)]
    if st.missing:
        out += ["", _missing(st, records)]
    return out + [""]


def _missing(st: c.FamilyState, records: list[dict]) -> str:
    """What the stage still needs, each run with its time predicted on one CPU thread from the records, and
    where a run cannot finish in one sitting of ``c.CPU_SITTING_HOURS``, that it waits for a GPU."""
    minutes = [c.predicted_seconds(sp, records, "cpu") / 60 for sp in st.missing]
    miss = ", ".join(f"{sp.label} seed {sp.seed} ({sp.steps} steps, {m:.0f} min)" for sp, m in zip(st.missing, minutes))
    line = (f"**Still missing** ({st.stage}): {miss}; {sum(minutes) / 60:.1f} h in all, predicted for one CPU thread "
            "(from the records' speeds, or repro/campaign.py's priors for a method not recorded yet).")
    too_long = sorted({sp.label for sp, m in zip(st.missing, minutes) if m > 60 * c.CPU_SITTING_HOURS})
    if too_long:
        line += (f" {', '.join(too_long)} runs take longer than {c.CPU_SITTING_HOURS} h on one CPU thread, longer "
                 "than a sitting of the campaign lasts on the machines it has had (a run unfinished at a stop is "
                 "lost): they wait for a GPU (`benchmarks/gpu_campaign.sh`).")
    return line


def write(out_dir: str, s: c.Settings, records_path: str, samples_dir: str,
          families: tuple[c.Family, ...] = c.FAMILIES) -> str:
    os.makedirs(out_dir, exist_ok=True)
    records = c.rec.load(records_path)
    states = c.plan(s, records, families)
    floor_values = fd_floor(s.eval_samples)
    floor = f"{mean_std(floor_values, 1)} ({len(floor_values)} draws of {min(s.eval_samples, 4000)} digits)"
    pictures = [p for p in (budget_figure(states, records, s, os.path.join(out_dir, "campaign_budget.png")),
                            training_figure(states, records, s, os.path.join(out_dir, "campaign_training.png")),
                            samples_figure(states, samples_dir, os.path.join(out_dir, "campaign_samples.png"))) if p]
    body = [
        "",
        "Command: `acl-dist repro campaign --time-budget MINUTES` (trains what the records lack, then rebuilds this "
        "page from `docs/results/campaign/records.jsonl` alone). Protocol declared in `repro/campaign.py` before "
        f"any run: FD of {s.eval_samples} EMA samples against the 1,000 held-out digits (mnist-cnn) every "
        f"{s.eval_every} steps; primary metric the mean FD over ({c.WINDOW} B, B] for budget B; budget by the "
        f"plateau rule on the mean curve of seeds {', '.join(map(str, s.selection_seeds))}; selection at B on those "
        f"seeds; confirmation on seeds {s.confirm_seeds[0]}-{s.confirm_seeds[-1]}; Welch's 95% CI; verdicts in FD, "
        f"KID and FD in {c.SECOND_EXTRACTOR} (another architecture, seed 1, the same 4,000 training digits): a verdict "
        "on which they disagree depends on the feature space. One CPU thread per run unless a record says otherwise.",
        "",
        f"Records: {len(records)} runs, {sum(r['wall_s'] for r in records) / 3600:.1f} h of training "
        f"({', '.join(sorted({r['device'] for r in records})) or 'none yet'}).",
        "",
    ]
    for st in states:
        body += _family_section(st, floor, s.extra, records)
    if pictures:
        body += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in pictures]
    return write_report(os.path.join(out_dir, "campaign.md"), "ACL on trained models: the converged campaign",
                        "\n".join(body) + "\n", pictures)
