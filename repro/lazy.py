"""Lazy gradient penalty (``method.gp_every``, StyleGAN2's lazy regularisation) on the digits: quality and cost.

Which penalty interval k costs no sample quality (issue 16)? WGAN-GP and ACL-GAN-GP train from their
`recipes/digits/` recipes with the penalty on every k-th critic iteration, weighted by k, k in {1, 2, 4, 8,
16}, at Table 1's budget and seeds. The run at the recipe's own ``gp_every`` IS Table 1's run (same job name
and overrides: trained once, shared); every other k sets ``method.gp_every`` explicitly, so a row keeps its
meaning when a recipe default moves.

R1 and R2 (k in {1, 4, 16}): zero-centred penalties E|grad D|^2 at the reals (R1) or the fakes (R2). They
are run with the loss they were made for, the logistic one (Mescheder et al. 2018; StyleGAN2's lazy R1 at
k = 16), not with a Wasserstein critic: its loss is linear in the scores, so a penalty at the reals alone
(or the fakes alone) leaves the scores on the other side unbounded. The runs are `recipes/digits/gan.yaml`
(non-saturating logistic loss) with ``model.d_norm=layer`` (a batch-norm critic is refused under a
penalty), ``method.gp_kind=r1|r2`` and ``method.gp_weight`` = gamma / 2 with gamma = ``GAMMA`` (StyleGAN2's
gamma / 2 * E|grad D|^2). Gamma is not tuned: each kind's rows compare k against that kind's k = 1.

Metrics, declared before any run:

- primary: the final Fréchet distance (digits-CNN features, as Table 1) of the EMA generator, mean ± std
  over seeds. A k is "within the seed spread" of k = 1 when |mean_k - mean_1| <= the larger max - min of
  the two seed sets (the rule of Table 1's and the ablation's verdicts); the report names, per method, the
  largest k whose final FD is within the seed spread of k = 1;
- also: the best FD over the run, the FD curves, the penalty's mean value when computed (last quarter of the
  log), and the cost: the run's step throughput (median of ``images_per_s`` over its log ticks; the median
  because the tick after an evaluation also holds the evaluation, the trainer restarting the tick clock
  before it evaluates) relative to k = 1 of the same seed, and the amortised D-step cost of each k over a D
  step without penalty, measured by ``benchmarks/gp.py`` (``lazy_overheads``) on the recipes' critic.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
from types import ModuleType

import torch

from repro import table1
from repro.jobs import REPO, Job, ReproError, run_jobs
from repro.report import fd_curves_figure, mean_std, write_report
from repro.table1 import _scores

METHODS = ("wgan_gp", "acl_gan_gp")  # the penalised methods: their recipes' default k is the question
EVERY = (1, 2, 4, 8, 16)
KINDS = ("r1", "r2")
KIND_EVERY = (1, 4, 16)
KIND_RECIPE = "recipes/digits/gan.yaml"
GAMMA = 1.0  # R1/R2 weight gamma / 2 (StyleGAN2's form); not tuned, see the module doc
GOAL = 1.15  # issue 16: amortised penalty cost per D step at the default k, over a D step without penalty
KIND_SEEDS = 0  # seeds of the R1/R2 rows at the full budget (0: the budget's); they train last, and a smaller
# number makes them a screen that the report lists without a verdict (no recipe default rests on them)
SAME_LOAD_S = 3600  # runs started further apart than this did not share one load: their speeds do not compare
LAST_QUARTER = 0.25  # share of the log ticks the penalty's value averages over
Costs = dict  # {k: benchmarks/gp.py Amortised: measured, predicted, over_plain ratios (median, min, cpu)}


def budget(name: str) -> dict:
    """Table 1's budget (the recipe-default runs are Table 1's own), with the intervals and penalty kinds
    to train and the benchmark's rounds; ``tiny`` keeps k in {1, 4} and R1 only."""
    tiny = name == "tiny"
    base = table1.budget(name)
    return {**base, "every": (1, 4) if tiny else EVERY, "kinds": ("r1",) if tiny else KINDS,
            "kind_every": (1, 4) if tiny else KIND_EVERY,
            "kind_seeds": base["seeds"] if tiny else KIND_SEEDS or base["seeds"],
            "rounds": 3 if tiny else 21}


def kind_overrides(kind: str) -> list[str]:
    """The GAN recipe with an R1 or R2 penalty of weight gamma / 2 on a per-sample-normalised critic."""
    return ["model.d_norm=layer", f"method.gp_kind={kind}", f"method.gp_weight={GAMMA / 2}"]


def recipe_every(recipe: str) -> int:
    """The recipe's own ``method.gp_every``: the k whose runs are Table 1's."""
    from acl_dist.config import load_recipe

    return load_recipe(os.path.join(REPO, recipe)).method.gp_every


def plan(budget_name: str) -> list[tuple[str, int, Job]]:
    """(group, k, job) for every run: the penalised methods seed by seed (a method's run at its recipe's
    ``gp_every`` is Table 1's, shared with `repro table1`; any other k its own ``lazy-<method>-k<k>-seed<s>``),
    then the R1/R2 runs seed by seed: the rows the recipes' defaults are chosen from come first."""
    b = budget(budget_name)
    shared = {j.name: j for j in table1.jobs_for(budget_name, list(METHODS))}
    defaults = {m: recipe_every(f"recipes/digits/{m}.yaml") for m in METHODS}
    out = []
    for seed in range(b["seeds"]):
        common = [*table1.common_overrides(b), f"run.seed={seed}"]
        for m in METHODS:
            for k in b["every"]:
                job = shared[f"table1-{m}-seed{seed}"] if k == defaults[m] else Job(
                    f"lazy-{m}-k{k}-seed{seed}", f"recipes/digits/{m}.yaml", [*common, f"method.gp_every={k}"])
                out.append((m, k, job))
    for seed in range(b["kind_seeds"]):
        common = [*table1.common_overrides(b), f"run.seed={seed}"]
        for kind in b["kinds"]:
            out += [(f"gan+{kind}", k, Job(f"lazy-gan_{kind}-k{k}-seed{seed}", KIND_RECIPE,
                                           [*common, *kind_overrides(kind), f"method.gp_every={k}"]))
                    for k in b["kind_every"]]
    return out


def jobs_for(budget_name: str) -> list[Job]:
    return [job for _, _, job in plan(budget_name)]


def _timing(run_dir: str, every: int) -> dict:
    """Step throughput (median ``images_per_s`` over the log ticks) and the penalty's mean value when computed
    over the last quarter of the ticks. A tick logs the penalty summed over the critic iterations that
    computed it, per generator step and per ``d_steps`` repeat, so the sum is recovered from each tick's span
    of steps (exact for a run that was never interrupted); ``None`` when no iteration there computed it.
    Refuses a run whose saved recipe has another ``gp_every`` than its row's k."""
    import yaml

    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [r for r in (json.loads(line) for line in f) if "images_per_s" in r]
    with open(os.path.join(run_dir, "recipe.yaml")) as f:
        method = yaml.safe_load(f)["method"]
    if method.get("gp_every", 1) != every:  # runs are matched by name: a recipe default may have moved since
        raise ReproError(f"{run_dir} was trained with method.gp_every={method.get('gp_every', 1)}, but its row "
                         f"is k = {every} (a recipe default moved after it trained?); move it away or use "
                         f"another --runs, and it trains again")
    d_steps = method["d_steps"]
    n = max(1, int(len(rows) * LAST_QUARTER))
    start = rows[-n - 1]["step"] if n < len(rows) else 0
    total, previous = 0.0, start
    for r in rows[-n:]:
        total += r.get("D/gp", r.get("Dx/gp", 0.0)) * (r["step"] - previous) * d_steps
        previous = r["step"]
    computed = sum(1 for i in range(start * d_steps, previous * d_steps) if i % every == 0)
    return {"speed": statistics.median(r["images_per_s"] for r in rows), "gp": total / computed if computed else None,
            "window": (rows[0]["time"], rows[-1]["time"]) if "time" in rows[0] else None}


def comparable(a: dict, b: dict) -> bool:
    """Whether two runs' throughputs compare: trained within ``SAME_LOAD_S`` of each other (a run reused from
    an earlier report trained under that time's load, which may have been another session's)."""
    if a["window"] is None or b["window"] is None:  # a log without wall times: nothing to say they shared one
        return False
    return abs(a["window"][0] - b["window"][0]) <= SAME_LOAD_S


def speed_ratio(runs: list[dict], dense: list[dict]) -> list[float] | None:
    """Per seed, a run's throughput over k = 1's; None when any pair did not train under the same load."""
    if not all(comparable(r, d) for r, d in zip(runs, dense)):
        return None
    return [r["speed"] / d["speed"] for r, d in zip(runs, dense)]


def measure(run_dir: str, every: int) -> dict:
    return {**_scores(run_dir), **_timing(run_dir, every)}


def _gp_benchmark() -> ModuleType:
    """``benchmarks/gp.py`` as a module. It is a script of the checkout, not part of the package; the
    report runs from a checkout anyway (it trains the checkout's recipes)."""
    path = os.path.join(REPO, "benchmarks", "gp.py")
    if not os.path.isfile(path):
        raise ReproError(f"{path} not found: `acl-dist repro lazy` runs from a checkout of the repository")
    spec = importlib.util.spec_from_file_location("acl_dist_benchmark_gp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def benchmark(b: dict) -> dict[str, Costs]:
    """{kind: {k: Amortised}} amortised D-step costs over a D step without penalty, from ``benchmarks/gp.py``
    on the critic the runs train (the digits recipes' model at this budget: the same for the three kinds),
    their batch size, one thread and channels-last memory, as the runs have them on a CPU. Random inputs: a
    D step's cost does not depend on the pixel values."""
    from acl_dist.config import load_recipe
    from acl_dist.methods.registry import build_method

    gp = _gp_benchmark()
    recipe = load_recipe(os.path.join(REPO, "recipes/digits/wgan_gp.yaml"), b["extra"])
    torch.manual_seed(0)
    critic = build_method(recipe.method, recipe.model).nets["D"].to(memory_format=torch.channels_last)
    m = recipe.model
    shape = (recipe.train.batch_size, m.channels, m.resolution, m.resolution)
    real, fake = (torch.randn(shape).contiguous(memory_format=torch.channels_last) for _ in range(2))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {"wgan": gp.lazy_overheads(critic, real, fake, b["every"], b["rounds"], "wgan")}
        for kind in b["kinds"]:
            out[kind] = gp.lazy_overheads(critic, real, fake, b["kind_every"], b["rounds"], kind)
    finally:
        torch.set_num_threads(threads)
    return out


def _kind_of(group: str) -> str:
    return group.split("+", 1)[1] if "+" in group else "wgan"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def judge(fds: list[float], dense: list[float]) -> str:
    """A k's final FDs against k = 1's: within the seed spread (the larger max - min of the two), or beyond."""
    if len(fds) < 2 or len(dense) < 2:
        return "one seed: no spread to judge by"
    spread = max(max(fds) - min(fds), max(dense) - min(dense))
    if abs(_mean(fds) - _mean(dense)) <= spread:
        return "within the seed spread"
    return "better beyond the seed spread" if _mean(fds) < _mean(dense) else "worse beyond the seed spread"


def largest_within(runs: dict[int, list[dict]]) -> int:
    """The largest k whose final FD is within the seed spread of k = 1 (1 when none is)."""
    dense = [r["fid"] for r in runs[1]]
    within = [k for k, rs in runs.items() if judge([r["fid"] for r in rs], dense) == "within the seed spread"]
    return max([1, *within])


def _title(group: str) -> str:
    if "+" in group:
        kind = _kind_of(group)
        return f"gan + {kind.upper()} (`{KIND_RECIPE}`, {' '.join(f'`{o}`' for o in kind_overrides(kind))})"
    return f"{group} (`recipes/digits/{group}.yaml`, WGAN-GP penalty)"


def _group_table(group: str, runs: dict[int, list[dict]], stems: dict[int, str], bench: Costs) -> list[str]:
    """One method's rows: k, its runs, FD, verdict against k = 1, the measured costs, the penalty's value."""
    rows = [f"### {_title(group)}", "",
            "| k | runs | final FD ↓ | best FD ↓ | vs k = 1 | verdict | images/s | step throughput, × k = 1 "
            "| D-step cost, cpu: × best / × plain | penalty when computed |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    dense = runs[1]
    dense_fds = [r["fid"] for r in dense]
    for k, rs in runs.items():
        fds = [r["fid"] for r in rs]
        change = "—" if k == 1 else f"{100 * (_mean(fds) - _mean(dense_fds)) / _mean(dense_fds):+.0f}%"
        verdict = "reference" if k == 1 else judge(fds, dense_fds)
        ratios = speed_ratio(rs, dense)
        speed = "n/a †" if ratios is None else mean_std(ratios, 2)
        images = mean_std([r["speed"] for r in rs], 0)
        best, penalty = mean_std([r["best"] for r in rs], 1), mean_std([r["gp"] for r in rs], 3)
        rows.append(f"| {k} | `{stems[k]}-seed*` | {mean_std(fds, 1)} | {best} | {change} | {verdict} | {images} "
                    f"| {speed} | {bench[k].measured[2]:.2f}× / {bench[k].over_plain[2]:.2f}× | {penalty} |")
    return rows + [""]


def _benchmark_table(bench: dict[str, Costs]) -> list[str]:
    rows = ["| penalty | k | × best: median | min | cpu | predicted (k − 1 + r) / k, cpu | × plain, cpu "
            f"| cpu ≤ {GOAL}×: × best / × plain |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kind, by_k in bench.items():
        for k, cost in by_k.items():
            met = " / ".join("yes" if v[2] <= GOAL else "no" for v in (cost.measured, cost.over_plain))
            median, least, cpu = cost.measured
            rows.append(f"| {kind} | {k} | {median:.2f}× | {least:.2f}× | {cpu:.2f}× | {cost.predicted[2]:.2f}× "
                        f"| {cost.over_plain[2]:.2f}× | {met} |")
    return rows


def _verdicts(scores: dict[str, dict[int, list[dict]]], bench: dict) -> list[str]:
    """Per method: the largest k within the seed spread of k = 1, its costs, and the ks the rule leaves out."""
    out = []
    for group, runs in scores.items():
        dense = [r["fid"] for r in runs[1]]
        if len(dense) < 2:
            fds = ", ".join(f"k = {j}: {rs[0]['fid']:.1f}" for j, rs in runs.items())
            out.append(f"- {group}: one seed, a screen with no spread to judge by (final FD {fds}); no verdict.")
            continue
        verdicts = {k: judge([r["fid"] for r in rs], dense) for k, rs in runs.items() if k != 1}
        k = largest_within(runs)
        if k == 1:
            why = ", ".join(f"k = {j}: {v}" for j, v in verdicts.items())
            line = f"- {group}: no k > 1 has a final FD within the seed spread of k = 1 ({why}); the default stays 1."
        else:
            cost = bench[_kind_of(group)][k]
            best, plain = cost.measured[2], cost.over_plain[2]
            ratios = speed_ratio(runs[k], runs[1])
            line = (f"- {group}: the largest k whose final FD is within the seed spread of k = 1 is **{k}** "
                    f"(FD {_mean([r['fid'] for r in runs[k]]):.1f} vs {_mean(dense):.1f}); a D step with the "
                    f"penalty every {k} costs {best:.2f}× the best D step without it and {plain:.2f}× the "
                    f"trainer's own plain D step (benchmark, cpu; goal ≤ {GOAL}×: "
                    f"{'met' if best <= GOAL else 'met over the plain step only' if plain <= GOAL else 'not met'})"
                    + (f"; its runs trained {_mean(ratios):.2f}× as fast as k = 1." if ratios else
                       "; k = 1's runs trained at another time, under another load: no throughput ratio (†)."))
        for label in ("worse", "better"):
            ks = [j for j, v in verdicts.items() if v.startswith(label) and (label == "better" or j < k)]
            if ks:
                line += (f" k = {', '.join(map(str, ks))}: {label} beyond the seed spread"
                         + (" (below the pick: the rule is not monotone here)." if label == "worse" else
                            " (no quality cost, but not within the spread as the rule reads)."))
        out.append(line)
    return out


def _curves_figure(scores: dict[str, dict[int, list[dict]]], path: str) -> str:
    """Per method (or penalty kind): the FD curve of each k, k = 1 dashed."""
    panels = {group: [(f"k = {k}", rs, "--" if k == 1 else "-") for k, rs in runs.items()]
              for group, runs in scores.items()}
    return fd_curves_figure(panels, path)


def _body(budget_name: str, b: dict, parallel: int, scores: dict, stems: dict, bench: dict) -> str:
    from acl_dist.config import load_recipe

    d_steps = load_recipe(os.path.join(REPO, "recipes/digits/wgan_gp.yaml")).method.d_steps
    shared = "; ".join(f"{m}: k = {k}" for m in METHODS for k, stem in stems[m].items()
                       if stem.startswith("table1"))
    tables = [line for group, runs in scores.items() for line in _group_table(group, runs, stems[group],
                                                                              bench[_kind_of(group)])]
    ks, kind_ks = ", ".join(map(str, b["every"])), ", ".join(map(str, b["kind_every"]))
    return f"""
Command: `acl-dist repro lazy --budget {budget_name}`: `recipes/digits/wgan_gp.yaml` and
`recipes/digits/acl_gan_gp.yaml` with the gradient penalty on every k-th critic iteration at gain k
(`method.gp_every=k`, k in {{{ks}}}), and `{KIND_RECIPE}` with R1 / R2 ({", ".join(b["kinds"])};
k in {{{kind_ks}}}): {b['steps']} generator steps, {b['seeds']} seeds each (0..{b['seeds'] - 1}; R1 / R2:
{b['kind_seeds']}), one CPU thread per run, {parallel} runs at a time; FD every {b['eval_every']} steps on
{b['samples']} samples of the EMA generator against all 1,797 digits, as Table 1. A critic iteration is one
of the {d_steps} critic updates of a generator step (`d_steps`): the penalty runs on critic iterations i
with i % k == 0, one critic update in k. Rows at the recipes' own
`gp_every` are Table 1's runs ({shared or "none"}); every other row sets `method.gp_every` explicitly.

R1 / R2 are zero-centred penalties E|∇D|² at the reals / the fakes. They are run with the logistic loss they
were made for (Mescheder et al. 2018; StyleGAN2's lazy R1 at k = 16), not with a Wasserstein critic, whose
linear loss would leave the scores away from the penalised side unbounded: the GAN recipe with a layer-norm
critic (a batch-norm critic is refused under a penalty) and weight γ/2 = {GAMMA / 2} (γ = {GAMMA}, not tuned;
each kind is compared with its own k = 1).

Declared before the runs (see `repro/lazy.py`): final FD is the primary metric, mean ± std over
seeds; "vs k = 1" is the change of its mean. A k is within the seed spread of k = 1 when the means differ by
no more than the larger max − min of the two seed sets. "images/s" is each run's median over its log ticks;
"step throughput" is that over the k = 1 run's of the same seed, given only when the two started within
{SAME_LOAD_S // 60} minutes of each other ("n/a †": k = 1's runs were reused from an earlier report and trained
under that time's load, which included another session's). The runs shared the cores ({parallel} at a time),
so these are indications only. "D-step cost" is the
controlled measurement: `benchmarks/gp.py` (`lazy_overheads`, {b['rounds']} interleaved rounds, one thread,
process CPU time) on the critic these runs train at their batch size, k D steps with one penalised at gain k,
over the best D step without penalty ("× best") and over the trainer's own plain D step ("× plain": real
and fake in separate forwards, what `methods.common.Adversary` runs between penalties). "penalty when
computed" is its mean value over the last quarter of the log (n/a: no critic iteration there computed it).

{chr(10).join(tables)}
![FD curves, mean over seeds: dashed k = 1](lazy_penalty_curves.png)

## Cost of a D step (benchmarks/gp.py)

"× best": ratios to the best D step without penalty (median wall, min wall, process CPU time), the
convention of `benchmarks/gp.py`. The lazy intervals' plain steps run real and fake through separate
forwards, as `methods.common.Adversary` does; the prediction (k − 1 + r) / k from the dense ratio r assumes
they cost the best penalty-free step, and "× plain" is the cost over that separate-forward step, i.e. the
penalty's own share. The whole-step effect: `python benchmarks/train_step.py --set method.gp_every=K`.

{chr(10).join(_benchmark_table(bench))}

## What it shows

{chr(10).join(_verdicts(scores, bench))}
"""


def reproduce(out_dir: str, runs_root: str, budget_name: str, parallel: int, device: str = "cpu") -> str:
    b = budget(budget_name)
    planned = plan(budget_name)
    run_jobs([job for _, _, job in planned], runs_root, parallel, "lazy penalty", device)
    scores: dict[str, dict[int, list[dict]]] = {}
    stems: dict[str, dict[int, str]] = {}
    for group, k, job in planned:
        scores.setdefault(group, {}).setdefault(k, []).append(measure(job.run_dir(runs_root), k))
        stems.setdefault(group, {})[k] = job.name[:job.name.rindex("-seed")]
    bench = benchmark(b)
    os.makedirs(out_dir, exist_ok=True)
    curves = _curves_figure(scores, os.path.join(out_dir, "lazy_penalty_curves.png"))
    body = _body(budget_name, b, parallel, scores, stems, bench)
    return write_report(os.path.join(out_dir, "lazy_penalty.md"), "Lazy gradient penalty on the digits", body,
                        [curves])
