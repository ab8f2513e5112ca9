"""ACL's verdicts on trained models: every family run to its plateau, in a campaign that outlives a session.

Everything a verdict rests on is declared here, before any run of the campaign was looked at:

- **Data and metric.** MNIST-5k as in ``repro.mnist``: FD of ``EVAL_SAMPLES`` EMA samples against the 1,000
  held-out digits in mnist-cnn features, every ``EVAL_EVERY`` steps; KID beside it in the same features.
- **Primary metric at budget B**: the mean FD of a run's evaluations in (``WINDOW`` x B, B]; it means the same at
  any evaluation density. Lower is better.
- **Budget per family** (``plateau_budget``): the base, the ACL method and the family's references at their
  recipes' settings train ``LONG_STEPS`` steps on ``SELECTION_SEEDS``; on each one's mean curve over those seeds,
  the budget is the first B (from ``MIN_BUDGET``, at evaluation steps) after which no longer budget improves the
  primary metric by more than ``PLATEAU_TOLERANCE``, and which leaves at least a quarter of the run after it to
  show that; the family's budget is the largest of them. No plateau: the budget runs go twice as long (up to
  ``MAX_LONG_STEPS``; their records are the same runs continued, by key). R3GAN's schedules (learning rate,
  beta2, gamma, augmentation, EMA half-life) run over the run itself, so its budget runs are runs of that
  horizon, and every later run of budget B is a run of horizon B (its key keeps ``train.steps``; its EMA
  half-life keeps the recipe's share of the horizon, ``_horizon_overrides``).
- **Selection at B** on the same seeds: each base screens its recipe, lr x2, lr x4 (bracketing the largest
  rate the 500-step screen picked), Adam betas and critic steps (R3GAN, as many: lr x2 and /2, gamma x10 and
  /10 around the CIFAR-10 preset's; AAE, which has no critic steps: lr x2, x4 and /2, beta1 0.9); each ACL
  method the ACL module's own variants (``CAMPAIGN_ACL_VARIANTS``; ACL-AE's own, in ``FAMILIES``) on its
  base's selected settings; the lowest mean primary metric wins.
- **Confirmation at B** on ``CONFIRM_SEEDS`` (neither selection nor the 500-step report used them): the selected
  base, the selected ACL method, Algorithm 1 as written (L_rec updates E alone) on the same settings, and the
  family's references at their recipes (compared with the selected ACL method).
- **Verdict**: Welch's 95% CI of (ACL - base) on the primary metric (``repro.stats.distance_verdict``), in FD and
  in KID; when the two disagree, "depends on the feature space". Goal: a CI half-width no wider than
  ``GOAL_HALF_WIDTH`` of the base's FD, else the seeds that would reach it (``seeds_needed``).

Every finished run appends a record (``repro.records``) to ``RECORDS``; a run is trained only when no record
satisfies it, so the campaign continues on a fresh clone from the committed records. ``--time-budget MINUTES``
starts a run only when its predicted time (median seconds per step of the records of its method on the same
kind of device, else ``PRIOR_SECONDS_PER_STEP``) fits in what is left, so nothing is left running at a stop.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from repro import records as rec
from repro.jobs import REPO, Job, ReproError, _run_one, job_fingerprint
from repro.mnist import ACL_VARIANTS, _overrides

LONG_STEPS = 10_000
MAX_LONG_STEPS = 40_000
EVAL_EVERY = 250
EVAL_SAMPLES = 5_000  # see docs/results/campaign.md, "Metric noise": sized from the same checkpoint scored anew
MIN_BUDGET = 1_000
WINDOW = 0.7
PLATEAU_TOLERANCE = 0.05
GOAL_HALF_WIDTH = 0.15
SELECTION_SEEDS = (0, 1, 2)
CONFIRM_SEEDS = tuple(range(200, 210))
RECORDS = os.path.join(REPO, "docs", "results", "campaign", "records.jsonl")
SAMPLES_DIR = os.path.join(REPO, "docs", "results", "campaign", "samples")
PRIOR_SECONDS_PER_STEP = {  # one thread, two runs on two cores (issue 33's measurement), x1.5 for evaluations
    "gan": 0.18, "acl_gan": 0.27, "wgan_gp": 0.3, "acl_gan_gp": 0.36,
    "r3gan": 2.7, "acl_r3gan": 3.1,  # R3GAN: 15.6x and 18.1x gan per image (docs/results/campaign/speed.md)
    "aae": 0.18, "acl_ae": 0.2, "vae": 0.15, "arae": 0.25}  # autoencoders: guesses from gan's, until records
CPU_SITTING_HOURS = 3  # how long the campaign has run at a stretch on a CPU machine (a working session): a run
# predicted longer is never started by --time-budget there, and the report says it waits for a GPU
PRIOR_SECONDS_PER_STEP_CUDA = 0.03  # a guess for one of 16 runs sharing a GPU, until a cuda record measures it
SECOND_EXTRACTOR = "mnist-lenet"  # the confirmation's second feature space (another architecture and seed)
CONFIRM_EVAL = {"eval.second_extractor": SECOND_EXTRACTOR}  # what only the confirmation runs evaluate
ALG1 = {"method.rec_updates_generator": False}  # Algorithm 1, line 11: L_rec updates E alone
# The ACL screens: the 500-step report's four variants, and the code GAN with a Wasserstein critic (as many as
# the bases screen). Why the fifth (docs/results/acl_drift.md, seed 0, 6,000 steps): with the recipes' logistic
# code GAN, Gz's codes narrow and shift away from E's as training goes on (std ratio 0.76, shift 0.19 of E's std
# over the last 30%) and Gx comes to decode only Gz's; the Wasserstein code critic kept them together (0.94, 0.04).
CAMPAIGN_ACL_VARIANTS = {**ACL_VARIANTS, "code_wgan_gp": {"method.code_loss": "wgan_gp"}}


@dataclass(frozen=True)
class Family:
    """A base, its ACL method (one change: the ACL module), their screens; ``references``: methods of the family
    that are not the one-change base (the autoencoders' VAE and ARAE), trained at their recipes for the budget
    and the confirmation and compared with the ACL method, never screened; ``alg1``: whether the ACL method has
    Algorithm 1's L_rec choice (``method.rec_updates_generator``) to confirm beside the selected variant."""

    name: str
    base: str
    acl: str
    base_variants: dict = field(hash=False)
    acl_variants: dict = field(hash=False, default_factory=lambda: dict(CAMPAIGN_ACL_VARIANTS))
    references: tuple = ()
    alg1: bool = True

    @property
    def methods(self) -> tuple[str, ...]:
        """Every method the family trains; the budget runs are theirs."""
        return (self.base, self.acl, *self.references)


FAMILIES = (
    Family("gan", "gan", "acl_gan", {
        "recipe": {}, "lr_x2": {"optim.lr": 4.0e-4}, "lr_x4": {"optim.lr": 8.0e-4},
        "betas_0_0.9": {"optim.beta1": 0.0, "optim.beta2": 0.9}, "d_steps_2": {"method.d_steps": 2}}),
    Family("wgan_gp", "wgan_gp", "acl_gan_gp", {
        "recipe": {}, "lr_x2": {"optim.lr": 2.0e-4}, "lr_x4": {"optim.lr": 4.0e-4}, "beta1_0.5": {"optim.beta1": 0.5},
        "d_steps_5": {"method.d_steps": 5}}),
    # The autoencoders (the paper's Fig. 6, 7): AAE is ACL-AE's one-change base (the same trunk, optimiser and
    # code critic; ACL-AE learns a code generator for E's codes where AAE pulls E's codes to the prior). Its
    # screen brackets the learning rate on both sides and tries Adam's default beta1 (it has no critic steps);
    # ACL-AE's screen is its ACL module's own: the code nets' optimiser, raw codes, two code-critic steps, the
    # Wasserstein code critic. VAE and
    # ARAE are references at their recipes (ARAE: the paper's Fig. 7 comparison).
    Family("autoencoder", "aae", "acl_ae", {
        "recipe": {}, "lr_x2": {"optim.lr": 4.0e-4}, "lr_x4": {"optim.lr": 8.0e-4}, "lr_half": {"optim.lr": 1.0e-4},
        "beta1_0.9": {"optim.beta1": 0.9}}, {
        "recipe": {}, "base_code_opt": {"optim.lr_per_net": {}, "optim.betas_per_net": {}},
        "raw_codes": {"method.encoder_code_norm": "none"}, "code_d_steps_2": {"method.code_d_steps": 2},
        "code_wgan_gp": {"method.code_loss": "wgan_gp"}},
        references=("vae", "arae"), alg1=False),
    # R3GAN on the CIFAR-10 preset (recipes/mnist/r3gan.yaml): as many settings as the other bases, bracketing the
    # preset's learning rate and gamma on both sides (each scales both ends of its linear schedule)
    Family("r3gan", "r3gan", "acl_r3gan", {
        "recipe": {}, "lr_x2": {"optim.lr": 4.0e-4}, "lr_half": {"optim.lr": 1.0e-4},
        "gamma_x10": {"method.gamma": 0.5, "method.gamma_final": 0.05},
        "gamma_x0.1": {"method.gamma": 0.005, "method.gamma_final": 0.0005}}),
)


@dataclass
class Settings:
    """What every run of a campaign shares; ``tiny`` shrinks it to seconds for the tests."""

    long_steps: int = LONG_STEPS
    max_long_steps: int = MAX_LONG_STEPS
    eval_every: int = EVAL_EVERY
    eval_samples: int = EVAL_SAMPLES
    min_budget: int = MIN_BUDGET
    selection_seeds: tuple = SELECTION_SEEDS
    confirm_seeds: tuple = CONFIRM_SEEDS
    extra: list = field(default_factory=list)

    @classmethod
    def tiny(cls) -> "Settings":
        from repro.table1 import TINY_MODEL

        return cls(long_steps=8, max_long_steps=8, eval_every=2, eval_samples=32, min_budget=2,
                   selection_seeds=(0, 1), confirm_seeds=(200, 201), extra=list(TINY_MODEL))


@dataclass(frozen=True)
class Spec:
    """One run the campaign wants: a method at some settings, a seed, trained at least ``steps``."""

    label: str  # "<method>/<variant>", what tables call it
    method: str
    values: tuple  # ((recipe key, value), ...): the variant's overrides
    seed: int
    steps: int

    def job(self, s: Settings) -> Job:
        name = f"campaign-{self.label.replace('/', '-')}-{self.steps}-seed{self.seed}"
        overrides = [f"train.steps={self.steps}", *_horizon_overrides(self.method, self.steps),
                     f"eval.every={s.eval_every}", f"eval.num_samples={s.eval_samples}",
                     "eval.metrics=[fid,kid]", "train.ckpt_every=0", f"train.sample_every={self.steps}",
                     "log.trackers=[]", "train.log_every=50" if s.eval_every % 50 == 0 else "train.log_every=1",
                     *s.extra, f"run.seed={self.seed}", *_overrides(dict(self.values))]
        return Job(name, f"recipes/mnist/{self.method}.yaml", overrides, then="diagnostics")

    def need(self, s: Settings) -> rec.Need:
        fp = job_fingerprint(self.job(s))
        return rec.Need(self.label, self.method, self.seed, rec.record_key(fp), self.steps, s.eval_every,
                        rec.computed(fp), _defaults(fp["method"]["name"], fp["data"]["source"]))


@functools.lru_cache(maxsize=None)
def _horizon_overrides(method: str, steps: int) -> tuple[str, ...]:
    """A recipe whose schedules run over the run itself (``train.schedule_images: 0``, R3GAN's) and whose EMA
    half-life is a share of that horizon: the half-life keeps its share at ``steps`` (the budget is the horizon)."""
    from acl_dist.config import load_recipe

    t = load_recipe(os.path.join(REPO, "recipes", "mnist", f"{method}.yaml")).train
    if t.schedule_images or not t.ema_halflife_images:
        return ()
    return (f"train.ema_halflife_images={round(t.ema_halflife_images * steps / t.steps)}",)


@functools.lru_cache(maxsize=None)
def _defaults(method: str, source: str) -> dict:
    """The schema's defaults for a method and a data source (what a field added after a record stands at)."""
    return rec.schema_defaults({"method": {"name": method}, "data": {"source": source}})


def spec(method: str, variant: str, values: dict, seed: int, steps: int) -> Spec:
    return Spec(f"{method}/{variant}", method, tuple(sorted(values.items(), key=lambda kv: kv[0])), seed, steps)


# -- the declared rules -------------------------------------------------------------------------------------------
def window_mean(curve: list[dict], budget: int, key: str = "fid") -> float:
    """The primary metric at ``budget``: mean ``key`` of the evaluations in (WINDOW x budget, budget]."""
    values = [row[key] for row in curve if WINDOW * budget < row["step"] <= budget and key in row]
    if not values:
        raise ReproError(f"no evaluation in ({WINDOW} x {budget}, {budget}]")
    return statistics.fmean(values)


def mean_curve(curves: list[list[dict]], key: str = "fid") -> list[dict]:
    """The mean over runs of ``key`` at the steps every run evaluated."""
    steps = sorted(set.intersection(*({row["step"] for row in c if key in row} for c in curves)))
    by_run = [{row["step"]: row[key] for row in c if key in row} for c in curves]
    return [{"step": s, key: statistics.fmean(run[s] for run in by_run)} for s in steps]


def plateau_budget(curve: list[dict], long_steps: int, min_budget: int) -> int | None:
    """The first budget B >= ``min_budget`` (an evaluation step) after which no longer budget up to the end of
    the run lowers the primary metric by more than ``PLATEAU_TOLERANCE``, with at least a quarter of the run
    after B to show it; None when the curve has no such plateau within ``long_steps``."""
    steps = [row["step"] for row in curve if row["step"] >= min_budget]
    metric = {b: window_mean(curve, b) for b in steps}
    for b in steps:
        if b > 0.75 * long_steps:
            return None
        if all(metric[later] >= (1 - PLATEAU_TOLERANCE) * metric[b] for later in steps if later > b):
            return b
    return None


# -- the plan: what the campaign needs, given what is recorded ---------------------------------------------------
@dataclass
class FamilyState:
    """How far a family got: its budget, selections and what it still needs (in the order to train it)."""

    family: Family
    long_steps: int = 0
    budgets: dict = field(default_factory=dict)  # {method: plateau budget or None}
    budget: int | None = None
    selection: dict = field(default_factory=dict)  # {method: variant}
    scores: dict = field(default_factory=dict)  # {stage: {label: [records read at the budget]}}
    missing: list = field(default_factory=list)  # [Spec]
    stage: str = "budget"


def _records_for(specs: list[Spec], s: Settings, records: list[dict]) -> tuple[dict[str, list[dict]], list[Spec]]:
    found: dict[str, list[dict]] = {}
    missing = []
    for sp in specs:
        r = rec.find(records, sp.need(s))
        if r is None:
            missing.append(sp)
        else:
            found.setdefault(sp.label, []).append(r)
    return found, missing


def _select(scores: dict[str, list[dict]], budget: int, labels: list[str]) -> str:
    means = {label: statistics.fmean(window_mean(r["curve"], budget) for r in scores[label]) for label in labels}
    return min(labels, key=lambda label: (means[label], not label.endswith("/recipe")))


def _screen(st: FamilyState, stage: str, method: str, variants: dict, shared: dict, s: Settings,
            records: list[dict]) -> str | None:
    """One screen at the family's budget: ``method``'s ``variants`` (each on top of ``shared``, the base's selected
    settings for an ACL screen) on the selection seeds. Records its scores and selection in ``st``; returns the
    selected variant, or None (with ``st.missing`` set) while runs are missing."""
    st.stage = stage
    specs = [spec(method, v, {**shared, **values}, seed, st.budget) for v, values in variants.items()
             for seed in s.selection_seeds]
    found, st.missing = _records_for(specs, s, records)
    if st.missing:
        return None
    st.scores[stage] = found
    st.selection[method] = _select(found, st.budget, [f"{method}/{v}" for v in variants]).split("/", 1)[1]
    return st.selection[method]


def family_state(f: Family, s: Settings, records: list[dict]) -> FamilyState:
    """Budget, then the screens at it, then the confirmation: the first stage with missing runs stops the plan."""
    st = FamilyState(f)
    long_steps = s.long_steps
    while True:
        specs = [spec(m, "recipe", {}, seed, long_steps) for m in f.methods for seed in s.selection_seeds]
        found, missing = _records_for(specs, s, records)
        st.long_steps = long_steps
        complete = [m for m in f.methods if len(found.get(f"{m}/recipe", [])) == len(s.selection_seeds)]
        st.budgets = {m: plateau_budget(mean_curve([r["curve"] for r in found[f"{m}/recipe"]]), long_steps,
                                        s.min_budget) for m in complete}
        if missing:  # the methods recorded so far keep their plateaus in st.budgets, for the report
            st.missing = missing
            return st
        if all(b is not None for b in st.budgets.values()) or long_steps * 2 > s.max_long_steps:
            break
        long_steps *= 2
    st.budget = max((b if b is not None else long_steps) for b in st.budgets.values())
    budget = st.budget
    base_choice = _screen(st, "base screen", f.base, f.base_variants, {}, s, records)
    if base_choice is None:
        return st
    base_values = f.base_variants[base_choice]
    acl_choice = _screen(st, "ACL screen", f.acl, f.acl_variants, base_values, s, records)
    if acl_choice is None:
        return st
    st.stage = "confirmation"
    st.missing = []
    found_all: dict[str, list[dict]] = {}
    for label, method, values in confirm_arms(f, base_values, acl_choice):
        specs = [spec(method, label, {**values, **CONFIRM_EVAL}, seed, budget) for seed in s.confirm_seeds]
        found, missing = _records_for(specs, s, records)
        found_all.update(found)
        st.missing += missing
    st.scores["confirmation"] = found_all
    if not st.missing:
        st.stage = "done"
    return st


def confirm_arms(f: Family, base_values: dict, acl_choice: str) -> list[tuple[str, str, dict]]:
    """(variant label, method, overrides) of the confirmation: the selected base, the selected ACL method,
    Algorithm 1 as written on the same settings (unless that is the selected one, or the method has no such
    choice), and the family's references at their recipes."""
    acl_values = {**base_values, **f.acl_variants[acl_choice]}
    arms = [("selected", f.base, base_values), ("selected", f.acl, acl_values)]
    if f.alg1 and acl_values.get("method.rec_updates_generator") is not False:
        arms.append(("alg1", f.acl, {**acl_values, **ALG1}))
    return arms + [("reference", m, {}) for m in f.references]


def plan(s: Settings, records: list[dict], families: tuple[Family, ...] = FAMILIES) -> list[FamilyState]:
    return [family_state(f, s, records) for f in families]


# -- running ---------------------------------------------------------------------------------------------------
def predicted_seconds(sp: Spec, records: list[dict], device: str) -> float:
    """Median seconds per step of this method's uninterrupted records on this kind of device, times the steps
    (``PRIOR_SECONDS_PER_STEP`` before there is any record)."""
    rates = [r["wall_s"] / r["steps"] for r in records if r["method"] == sp.method and r.get("device_kind") == device
             and not r.get("resumed")]
    prior = PRIOR_SECONDS_PER_STEP_CUDA if device == "cuda" else PRIOR_SECONDS_PER_STEP.get(sp.method, 0.5)
    per_step = statistics.median(rates) if rates else prior
    return per_step * sp.steps


def _curve(run_dir: str) -> list[dict]:
    from acl_dist.eval.tracker import read_history

    keep = ("fid", "kid_mean", "kid_std", "second_fid", "second_kid_mean", "second_kid_std")
    return [{"step": int(row["step"]), **{k: float(row[k]) for k in keep if k in row}} for row in read_history(run_dir)]


def _diagnostic_curve(run_dir: str, every: int) -> list[dict]:
    """At each evaluation step: the image critic's real-fake gap, code MMD², Dc's accuracy, L_rec (the log tick
    of that step, from metrics.jsonl; L_rec from the phase that logs it: ACL-GAN's rec, the autoencoders' ae,
    the VAE's elbo)."""
    names = {"code_mmd": ("Dc/code_mmd",), "dc_acc": ("Dc/dc_acc",), "rec": ("rec/rec", "ae/rec", "elbo/rec")}
    out = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for row in (json.loads(line) for line in f):
            if "images_per_s" not in row or row["step"] % every:
                continue
            point = {"step": row["step"]}
            for d in ("Dx", "D"):
                if f"{d}/d_real" in row:
                    point["gap"] = row[f"{d}/d_real"] - row[f"{d}/d_fake"]
            point.update({k: row[v] for k, candidates in names.items() for v in candidates if v in row})
            out.append(point)
    return out


def final_diagnostics(run_dir: str) -> dict:
    """Reconstruction FD and code MMD² of a finished run's last checkpoint (``repro.table1.diagnostics``; None for
    a method without an encoder), as the training process computed them after its last step (``repro.run_job``):
    not in this process, which lives for hours while the code on disk may change under it (a lazy import then
    mixed two versions of the package and cost a record its diagnostics), and not in an interpreter of its own,
    whose start-up was most of a tiny run's time."""
    from repro.run_job import RESULT

    with open(os.path.join(run_dir, RESULT)) as f:
        return json.load(f)


def make_record(sp: Spec, s: Settings, run_dir: str, wall_s: float, device: str, resumed: bool) -> dict:
    """The record of a finished run (everything the report needs; nothing that points into the run directory)."""
    job = sp.job(s)
    fp = job_fingerprint(job)
    curve = _curve(run_dir)
    if resumed:  # this process only finished the run: its wall time comes from the run's own log
        wall_s = _logged_wall_s(run_dir, sp.steps)
    try:
        diagnostics = final_diagnostics(run_dir)
    except Exception as err:  # a record without them beats losing the run's hours (the error is kept)
        diagnostics = {"error": f"{type(err).__name__}: {err}"}
    return {
        "key": rec.record_key(fp), "label": sp.label, "method": sp.method, "seed": sp.seed, "steps": sp.steps,
        "eval_every": s.eval_every, "eval_samples": s.eval_samples, "curve": curve,
        "final": curve[-1] if curve else {}, "diagnostics": _diagnostic_curve(run_dir, s.eval_every),
        "final_diagnostics": diagnostics, "wall_s": round(wall_s, 1), "resumed": resumed,
        "device_kind": device, "device": _device_name(device), "threads": 1 if device == "cpu" else None,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "overrides": job.overrides,
        "recipe": job.recipe, **rec.machine(), "fingerprint": fp,
    }


def _logged_wall_s(run_dir: str, steps: int) -> float:
    """The training time the run's metrics.jsonl spans, scaled to all ``steps`` (its first tick comes after
    ``log_every`` steps; start-up is not counted)."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [r for r in (json.loads(line) for line in f) if "time" in r]
    if len(rows) < 2 or rows[-1]["step"] <= rows[0]["step"]:
        return float("nan")
    return (rows[-1]["time"] - rows[0]["time"]) * steps / (rows[-1]["step"] - rows[0]["step"])


def _device_name(device: str) -> str:
    if device != "cuda":
        return "cpu"
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cuda"


def train_and_record(sp: Spec, s: Settings, runs_root: str, records_path: str, device: str,
                     samples_dir: str | None) -> dict:
    """Train one run (resuming its directory if an interrupted campaign left one), append its record, keep its
    final sample grid beside the records (small PNGs: the report's pictures survive the run directory)."""
    job = sp.job(s)
    resumed = os.path.isdir(os.path.join(job.run_dir(runs_root), "checkpoints"))
    started = time.time()
    run_dir = _run_one(job, runs_root, device)
    record = make_record(sp, s, run_dir, time.time() - started, device, resumed)
    rec.append(records_path, record)
    if samples_dir is not None:
        grids = sorted(os.listdir(os.path.join(run_dir, "samples"))) if os.path.isdir(
            os.path.join(run_dir, "samples")) else []
        if grids:
            os.makedirs(samples_dir, exist_ok=True)
            shutil.copyfile(os.path.join(run_dir, "samples", grids[-1]),
                            os.path.join(samples_dir, f"{sp.label.replace('/', '-')}-{sp.steps}-seed{sp.seed}.png"))
    return record


def run_campaign(s: Settings, runs_root: str, records_path: str, parallel: int, device: str,
                 time_budget_s: float | None, samples_dir: str | None = SAMPLES_DIR,
                 families: tuple[Family, ...] = FAMILIES, say: Callable[[str], None] = print) -> list[FamilyState]:
    """Train what the records lack, in plan order, ``parallel`` runs at a time, each started only when its
    predicted time fits in ``time_budget_s`` (None: no limit). Returns the plan after the last run."""
    from acl_dist.errors import ConfigError

    started, trained = time.time(), 0
    while True:
        records = rec.load(records_path)
        try:
            states = plan(s, records, families)
        except ConfigError as e:
            if not trained:
                raise
            runs = f"{trained} run{'' if trained == 1 else 's'}"
            raise ReproError(f"campaign: after {runs} (recorded), the recipes no longer load in this process ({e}): "
                             "they changed while it ran (a pull or an edit); start the campaign again, it goes on "
                             "from the records") from e
        wanted = [sp for st in states for sp in st.missing]
        if not wanted:
            return states
        left = math.inf if time_budget_s is None else time_budget_s - (time.time() - started)
        batch = [sp for sp in wanted if predicted_seconds(sp, records, device) <= left][:max(1, parallel)]
        if not batch:
            say(f"campaign: {len(wanted)} runs missing; the next ({wanted[0].label} seed {wanted[0].seed}, "
                f"{wanted[0].steps} steps, predicted {predicted_seconds(wanted[0], records, device) / 60:.0f} min) "
                f"does not fit in the {max(left, 0) / 60:.0f} min left")
            return states
        for sp in batch:
            say(f"campaign: training {sp.label} seed {sp.seed} to step {sp.steps} "
                f"(predicted {predicted_seconds(sp, records, device) / 60:.0f} min)")
        with ThreadPoolExecutor(len(batch)) as pool:
            futures = [pool.submit(train_and_record, sp, s, runs_root, records_path, device, samples_dir)
                       for sp in batch]
            for future in futures:
                r = future.result()
                trained += 1
                say(f"campaign: recorded {r['label']} seed {r['seed']} ({r['wall_s'] / 60:.1f} min, final FD "
                    f"{r['final'].get('fid', float('nan')):.1f})")


def reproduce(out_dir: str, runs_root: str, budget_name: str, parallel: int, device: str = "cpu",
              time_budget_min: float | None = None, families: tuple[Family, ...] = FAMILIES) -> str:
    """Train what the records under ``out_dir/campaign`` lack (within ``time_budget_min``), then rebuild
    ``out_dir/campaign.md`` from the records. ``budget_name`` tiny: toy nets and steps for the tests."""
    from repro import campaign_report

    s = Settings.tiny() if budget_name == "tiny" else Settings()
    records_path = os.path.join(out_dir, "campaign", "records.jsonl")
    samples_dir = os.path.join(out_dir, "campaign", "samples")
    run_campaign(s, os.path.join(runs_root, "campaign"), records_path, parallel, device,
                 None if time_budget_min is None else 60 * time_budget_min, samples_dir, families)
    return campaign_report.write(out_dir, s, records_path, samples_dir, families)
