"""Why ACL-GAN's samples worsen late in training (issue 33): its code paths measured at every checkpoint.

The campaign's 10,000-step acl_gan runs reach their lowest FD at 2,500-3,250 steps and then drift up, with code
MMD² and Dc's accuracy (the diagnostics logged during training) nearly flat. Samples are Gx(Gz(z)); Gx also
decodes the encoder's codes E(x) (L_rec). This part trains acl_gan with a checkpoint every ``every`` steps and
scores, at each checkpoint and against MNIST-5k's held-out 1,000 (mnist-cnn FD, EMA nets as sampling uses them):

- ``sample_fd``: Gx(Gz(z)), the samples;
- ``recon_fd``: Gx(E(x)) of the held-out digits, the decoder on the encoder's own codes;
- ``gauss_fd``: Gx(c), c drawn from a Gaussian with the mean and covariance of E's codes of the training digits
  (how well Gx decodes the region E's codes occupy, beyond the codes themselves);
- ``moved_fd``: Gx of Gz's codes moved to E's per-dimension mean and std (the one change at sampling that
  removes the first two moments' mismatch: if the mismatch hurt the samples, this lowers FD);
- ``shift`` and ``sd_ratio``: Gz's codes against E's, per dimension in units of E's std (mean |mean gap|, mean
  std ratio); ``code_mmd``: MMD² of the standardised codes (``acl_dist.stats.code_mmd2``);
- ``e_move``, ``gz_move``: how far E's codes of the held-out digits and Gz's codes of fixed noise moved since the
  previous checkpoint (mean |change| in units of E's std).

Arms: the recipe, and one change of the code GAN (``ARMS``). ``--budget full``: seed 0, 6,000 steps (where the
campaign's runs have drifted for 3,000 steps), a checkpoint every 500; ``tiny``: toy nets, seconds (the test).
"""

from __future__ import annotations

import glob
import json
import os

import torch

from repro.jobs import Job, run_jobs
from repro.report import write_report

ARMS = {"recipe": {},
        "code_d_steps_2": {"method.code_d_steps": 2},  # a stronger code critic: two Dc steps per Gz step
        "code_wgan_gp": {"method.code_loss": "wgan_gp"}}  # a Wasserstein code critic with its gradient penalty
METRICS = ("sample_fd", "recon_fd", "gauss_fd", "moved_fd", "shift", "sd_ratio", "code_mmd", "e_move", "gz_move")
FULL = {"steps": 6000, "every": 500, "samples": 5000, "seeds": (0,), "extra": []}


def budget(name: str) -> dict:
    from repro.table1 import TINY_MODEL

    if name == "tiny":
        return {"steps": 4, "every": 2, "samples": 64, "seeds": (0,), "extra": list(TINY_MODEL)}
    return dict(FULL)


def jobs(b: dict) -> list[Job]:
    """One run per arm and seed: acl_gan's MNIST recipe with a kept checkpoint every ``every`` steps."""
    shared = [f"train.steps={b['steps']}", f"train.ckpt_every={b['every']}", f"eval.every={b['every']}",
              f"train.keep_checkpoints={max(20, b['steps'] // b['every'] + 1)}", f"eval.num_samples={b['samples']}",
              "eval.metrics=[fid]", f"train.sample_every={b['steps']}", "log.trackers=[]", *b["extra"]]
    return [Job(f"drift-{arm}-seed{seed}", "recipes/mnist/acl_gan.yaml",
                [*shared, f"run.seed={seed}", *(f"{k}={v}" for k, v in values.items())])
            for arm, values in ARMS.items() for seed in b["seeds"]]


def moment_matched(codes: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``codes`` [n, d] moved to ``target``'s [m, d] per-dimension mean and std (the rest of their shape kept)."""
    return (codes - codes.mean(0)) / codes.std(0).clamp(min=1e-8) * target.std(0) + target.mean(0)


def gaussian_like(codes: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` draws from the Gaussian with ``codes``' [m, d] mean and covariance."""
    wide = codes.double()
    mean, cov = wide.mean(0), torch.cov(wide.T)
    factor = torch.linalg.cholesky(cov + 1e-6 * torch.eye(len(mean), dtype=cov.dtype))
    noise = torch.randn(n, len(mean), generator=torch.Generator().manual_seed(seed), dtype=cov.dtype)
    return (mean + noise @ factor.T).to(codes.dtype)


def _fixed_noise(method, n: int) -> torch.Tensor:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return method.sample_noise(n, "cpu")


def _code_geometry(gz: torch.Tensor, e_train: torch.Tensor) -> dict:
    """Gz's codes [n, d] against E's [m, d]: mean |mean gap| and mean std ratio in units of E's std, MMD²."""
    from acl_dist.stats import code_mmd2

    sd = e_train.std(0)
    return {"shift": float(((gz.mean(0) - e_train.mean(0)) / sd).abs().mean()),
            "sd_ratio": float((gz.std(0) / sd).mean()), "code_mmd": float(code_mmd2(gz, e_train))}


@torch.no_grad()
def checkpoint_rows(run_dir: str, samples: int) -> list[dict]:
    """``METRICS`` at every checkpoint of ``run_dir`` (oldest first)."""
    from acl_dist.data.sources.mnist5k import mnist5k_tensors
    from acl_dist.eval.extractors import build_extractor
    from acl_dist.eval.fid import feature_dim, fid_from_stats, local_stats
    from acl_dist.tools.run_loading import load_run

    checkpoints = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "step-*")))
    first = load_run(checkpoints[0])  # the data, the extractor and the reference statistics: once per run
    train = mnist5k_tensors(first.recipe.model.resolution, first.recipe.model.channels, "train")[0]
    held = first.source().reference_images()
    extractor = build_extractor(first.recipe.eval.feature_extractor)
    dim = feature_dim(extractor)
    reference = local_stats(held.split(500), extractor, len(held), dim)

    def fd(images: list[torch.Tensor]) -> float:
        batches = [x.float().clamp(-1, 1) for x in images]
        return fid_from_stats(local_stats(batches, extractor, sum(len(x) for x in batches), dim), reference)

    rows, previous = [], None
    for checkpoint in checkpoints:
        run = load_run(checkpoint)
        method, nets = run.method, run.nets

        def decoded(codes: torch.Tensor) -> list[torch.Tensor]:
            return [method.decode(c, nets) for c in codes.split(500)]

        e_train = torch.cat([method.encode(x, nets) for x in train.split(500)])  # [4000, d]
        e_held = method.encode(held, nets)  # [1000, d]
        gz = nets["Gz"](_fixed_noise(method, samples))  # the same noise at every checkpoint
        row = {"step": run.step, "sample_fd": fd(decoded(gz)), "recon_fd": fd(decoded(e_held)),
               "gauss_fd": fd(decoded(gaussian_like(e_train, samples, seed=1))),
               "moved_fd": fd(decoded(moment_matched(gz, e_train))), **_code_geometry(gz, e_train)}
        if previous is not None:
            sd = e_train.std(0)
            row["e_move"] = float(((e_held - previous[0]).abs() / sd).mean())
            row["gz_move"] = float(((gz - previous[1]).abs() / sd).mean())
        previous = (e_held, gz)
        rows.append(row)
    return rows


PANELS = ((("sample_fd", "recon_fd", "gauss_fd", "moved_fd"), "FD vs held-out (mnist-cnn)", True),
          (("shift", "sd_ratio"), "Gz(z) codes vs E(x): mean shift, std ratio (E's std)", False),
          (("e_move", "gz_move"), "codes' move since the last checkpoint (E's std)", False))


def figure(results: dict[str, list[dict]], path: str) -> str:
    """One row per run, a panel per group of ``PANELS``: the code paths over training."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.4 * len(PANELS), 3.0 * len(results)), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.subplots(len(results), len(PANELS), squeeze=False)
    for axes, (name, rows) in zip(grid, results.items()):
        for ax, (keys, title, log) in zip(axes, PANELS):
            for key in keys:
                points = [(r["step"], r[key]) for r in rows if key in r]
                ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", lw=1, label=key)
            if log:
                ax.set_yscale("log")
            ax.set_title(f"{name}: {title}", fontsize=8)
            ax.set_xlabel("step", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _table(rows: list[dict]) -> list[str]:
    head = "| step | " + " | ".join(METRICS) + " |"
    out = [head, "|" + " --- |" * (len(METRICS) + 1)]
    for r in rows:
        cells = [f"{r[k]:.1f}" if k.endswith("_fd") else (f"{r[k]:.3f}" if k in r else "") for k in METRICS]
        out.append(f"| {r['step']} | " + " | ".join(cells) + " |")
    return out


WINDOW = 0.7  # the summary's window, as the campaign's primary metric: checkpoints in (0.7 x steps, steps]


def summary(results: dict[str, list[dict]], steps: int) -> list[str]:
    """Per run, the mean of each metric over the checkpoints in (``WINDOW`` x steps, steps], and where its samples
    scored lowest: the late state the campaign's primary metric reads, in one table."""
    keys = [k for k in METRICS if not k.endswith("_move")]
    out = ["| run | " + " | ".join(keys) + " | lowest sample_fd (step) |", "|" + " --- |" * (len(keys) + 2)]
    for name, rows in results.items():
        late = [r for r in rows if WINDOW * steps < r["step"] <= steps]
        means = [sum(r[k] for r in late) / len(late) for k in keys]
        best = min(rows, key=lambda r: r["sample_fd"])
        cells = [f"{m:.1f}" if k.endswith("_fd") else f"{m:.3f}" for k, m in zip(keys, means)]
        out.append(f"| {name} | " + " | ".join(cells) + f" | {best['sample_fd']:.1f} ({best['step']}) |")
    return out


def write(out_dir: str, results: dict[str, list[dict]], budget_name: str) -> str:
    """``acl_drift.md``, its figure and its numbers (``acl_drift.json``) from the scored checkpoints."""
    b = budget(budget_name)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "acl_drift.json"), "w") as f:
        json.dump(results, f, indent=1)
    picture = figure(results, os.path.join(out_dir, "acl_drift.png"))
    arms = ", ".join(f"`{arm}` ({', '.join(f'{k}={v}' for k, v in values.items()) or 'the recipe'})"
                     for arm, values in ARMS.items())
    body = ["", f"Command: `acl-dist repro drift --budget {budget_name}`. {b['steps']} steps, a checkpoint every "
            f"{b['every']}, {b['samples']} samples per FD, one CPU thread per run; what each column measures: "
            f"`repro/drift.py`. Arms: {arms}. One seed per arm: the mechanism's readouts (codes' shift and "
            "spread, the decoder on moved codes) are large against their change over a run; single FD "
            "evaluations swing by ±10-20 here, so the sample FDs alone decide nothing.", "",
            f"Over the last {100 * (1 - WINDOW):.0f}% of each run (mean of its checkpoints there):", "",
            *summary(results, b["steps"]), ""]
    for name, rows in results.items():
        body += [f"## {name}", "", *_table(rows), ""]
    body.append("![acl_drift.png](acl_drift.png)")
    return write_report(os.path.join(out_dir, "acl_drift.md"), "Why ACL-GAN drifts late: its code paths over "
                        "training", "\n".join(body) + "\n", [picture])


def reproduce(out_dir: str, runs_root: str, budget_name: str, parallel: int, device: str = "cpu") -> str:
    """Train the arms (or find them trained), score every checkpoint, write the report (``write``)."""
    b = budget(budget_name)
    wanted = jobs(b)
    runs = run_jobs(wanted, os.path.join(runs_root, "drift"), parallel, "drift runs", device)
    return write(out_dir, {job.name: checkpoint_rows(runs[job.name], b["samples"]) for job in wanted}, budget_name)
