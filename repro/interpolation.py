"""ACL paper Fig. 10: interpolations between real images through ACL-GAN's encoder codes.

Two real sets: the sklearn digits (in memory) and the 100 LFW face crops bundled with scikit-image, which
go through the project's own path for image data: `acl-dist shard builtin:lfw`, then the WebDataset stream.
"""

from __future__ import annotations

import os
import subprocess
import sys

from acl_dist.tools.run_loading import load_run
from acl_dist.tools.sample_eval import write_samples
from repro.jobs import REPO, Job, ReproError, run_jobs
from repro.report import write_report


def budget(name: str) -> dict:
    if name == "tiny":
        return {"steps": 4, "extra": ["model.resolution=8", "model.code_dim=4", "model.base_channels=4",
                                      "model.max_channels=8", "model.acl_hidden=8", "train.batch_size=8"]}
    return {"steps": 1000, "extra": []}


def _lfw_manifest(runs_root: str) -> str:
    out = os.path.join(runs_root, "data", "lfw")
    manifest = os.path.join(out, "manifest.json")
    if not os.path.isfile(manifest):
        proc = subprocess.run([sys.executable, "-m", "acl_dist", "shard", "builtin:lfw", out, "--no-progress"],
                              cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ReproError(f"acl-dist shard builtin:lfw failed: {proc.stderr.strip()[-2000:]}")
    return manifest


def reproduce(out_dir: str, runs_root: str, budget_name: str, parallel: int, device: str = "cpu") -> str:
    b = budget(budget_name)
    common = [f"train.steps={b['steps']}", "train.ckpt_every=0", "eval.every=0", "log.trackers=[]",
              f"train.sample_every={b['steps']}", *b["extra"]]
    jobs = [Job("interp-acl_gan-digits", "recipes/digits/acl_gan.yaml", common),
            Job("interp-acl_gan-faces", "recipes/digits/acl_gan.yaml",
                ["data.source=shards", f"data.shards={_lfw_manifest(runs_root)}", *common])]
    run_jobs(jobs, runs_root, parallel, "interpolation", device)
    os.makedirs(out_dir, exist_ok=True)
    images, sections = [], []
    for job, what in zip(jobs, ("digits", "faces")):
        tmp = os.path.join(runs_root, job.name, "figure")
        written = write_samples(load_run(job.run_dir(runs_root)), tmp, num=64, rows=6, steps=8, fps=8)
        for key, suffix in (("interpolation", "png"), ("interpolation_video", "mp4"), ("samples", "png")):
            dest = os.path.join(out_dir, f"interpolation_{what}_{key}.{suffix}")
            os.replace(written[key], dest)
            if suffix == "png":
                images.append(dest)
        sections.append(f"""
### {what}

Each row: a real image, the decoder's images along the straight line between the encoder's codes of the
two real images (8 points), the other real image. Video: `interpolation_{what}_interpolation_video.mp4`.

![{what} interpolations](interpolation_{what}_interpolation.png)

Samples Gx(Gz(z)):

![{what} samples](interpolation_{what}_samples.png)
""")
    body = f"""
Command: `acl-dist repro interpolation --budget {budget_name}`: ACL-GAN (`recipes/digits/acl_gan.yaml`) for
{b['steps']} steps on the digits, and the same recipe on the 100 LFW faces (25×25 grayscale, resized to the
recipe's 16×16) written as shards by `acl-dist shard builtin:lfw`. EMA nets. What to look for (paper Fig. 10):
the path between two codes decodes to plausible images all the way, changing gradually.
{''.join(sections)}"""
    return write_report(os.path.join(out_dir, "interpolation.md"), "Interpolation through ACL-GAN codes (Fig. 10)",
                        body, images)
