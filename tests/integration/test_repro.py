"""`acl-dist repro all --budget tiny`: every part trains, measures and writes its report with its pictures."""

from __future__ import annotations

import os
import re
import subprocess

from acl_dist.config import load_recipe
from tests.conftest import PYTHON, REPO
from tests.images import frame_count


def test_every_part_writes_its_report_and_pictures(tmp_path):
    out, runs = tmp_path / "results", tmp_path / "runs"
    proc = subprocess.run([PYTHON, "-m", "acl_dist", "repro", "all", "--budget", "tiny", "--out", str(out),
                           "--runs", str(runs), "--jobs", "2"], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for part in ("prior", "table1", "interpolation", "acl_ablation", "lazy_penalty", "mnist", "r3gan", "r3gan_screen"):
        text = (out / f"{part}.md").read_text()
        assert "acl-dist repro" in text and "## " in text
        for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):  # every picture the page shows exists
            assert (out / image).is_file(), (part, image)
    table = (out / "table1.md").read_text()
    for method in ("gan", "acl_gan", "wgan_gp", "acl_gan_gp", "acl_sgan", "vae", "aae", "acl_ae"):
        row = re.search(rf"^\| {method} \| ([^|]+) \|", table, re.M)
        assert row and "±" in row.group(1), method  # 2 seeds at the tiny budget: mean ± std
    assert re.search(r"^\| acl_gan \| .+ \| residual\+code_norm \|$", table, re.M)  # the attachment, named
    assert re.search(r"^\| gan \| .+ \| — \|$", table, re.M)
    diag = re.search(r"^\| acl_gan_gp \| [^|]+ \| ([0-9.]+) ± [0-9.]+ \| ([-0-9.]+) ± [0-9.]+ \|$", table, re.M)
    assert diag and float(diag.group(1)) > 0, table  # reconstruction FD and code MMD² of the ACL module
    assert not re.search(r"^\| gan \| [^|]+ \| [^|]+ \| [^|]+ \|$", table, re.M)  # no encoder: no diagnostics
    welch_line = (r"^- .+ 95% CI \[[-+0-9.]+, [-+0-9.]+\] \(Welch, p = [0-9.e-]+\): "
                  r"\*\*(improves|worse|no evidence of a difference)\*\*\.$")
    assert len(re.findall(welch_line, table.split("## What it shows", 1)[1], re.M)) == 5, table
    check_prior_report(out)
    ablation = (out / "acl_ablation.md").read_text()
    shows = ablation.split("## What it shows", 1)[1]
    assert len(re.findall(welch_line, shows, re.M)) + len(re.findall(r"^- .+ on one seed: no spread", shows, re.M)) == 4
    for method, bases in (("acl_gan", ["gan"]), ("acl_gan_gp", ["wgan_gp"]), ("acl_ae", ["vae", "aae"])):
        section = ablation.split(f"### {method}\n", 1)[1].split("###", 1)[0]
        for label in [f"base: {b}" for b in bases] + ["paper attachment", "all changes"]:
            row = re.search(rf"^\| {re.escape(label)} \| ([0-9.]+) ± [0-9.]+ \|", section, re.M)
            assert row and float(row.group(1)) > 0, (method, label)  # 2 seeds at the tiny budget: mean ± std
    code_mmd = r"^\| paper attachment \| [^|]+ \| 2 \| — \| [^|]+ \| -?[0-9.]+ ± [0-9.]+ \|"
    assert re.search(code_mmd, ablation, re.M)
    check_lazy_report(out)
    check_mnist_report(out)
    r3gan = (out / "r3gan.md").read_text()
    for base, other in (("wgan_gp", "r3gan"), ("r3gan", "acl_r3gan")):
        assert re.search(rf"^\| [^|]+ \| {base} \| [0-9.]+ ± [0-9.]+ \| {other} \| .+ \| \*\*(improves|worse|no "
                         r"evidence of a difference)\*\* \|$", r3gan, re.M), (base, other)
    screen = (out / "r3gan_screen.md").read_text()  # R3GAN tuned as WGAN-GP was: 4 settings, 2 seeds, 1 selected
    assert len(re.findall(r"^\| `[a-z_0-9]+`.* \| [0-9.]+ ± [0-9.]+ \| 2 \|", screen, re.M)) == 4, screen
    assert screen.count("**(selected)**") == 1
    assert re.search(r"^\| [^|]+ \| wgan_gp \| [0-9.]+ ± [0-9.]+ \| r3gan \| .+ \| \*\*(improves|worse|no "
                     r"evidence of a difference)\*\* \|$", screen, re.M), screen
    assert frame_count(out / "interpolation_faces_interpolation_video.mp4") == 10  # real, 8 points, real
    assert os.path.isfile(runs / "data" / "lfw" / "manifest.json")  # faces went through acl-dist shard


def check_prior_report(out) -> None:
    """prior.md at the tiny budget (1 seed; the 1-mode prior and the 4-mode prior of std 0.1 at lr 0.001): the
    last-checkpoint table with a column per MMD kernel width, the verdict tables with a verdict and its numbers
    in every cell, the progressive-alignment table, both pictures, and the summary per metric."""
    text = (out / "prior.md").read_text()
    first = text.split("Command:", 1)[0]  # the primary metric and the one verdict come first
    assert "**Primary metric**" in first and re.search(r"\*\*Overall verdict.+\*\*(one seed a side|improves|worse|"
                                                        r"no evidence of a difference)", first), first
    widths = ("0.1", "0.3", "1", "3")
    header = re.search(r"^\| prior \| code-GAN lr \| (.+) \|$", text, re.M).group(1).split(" | ")
    assert header == [f"data MMD² w={w}" for w in widths] + ["code MMD² w=1", "high-quality", "modes covered",
                                                              "balance"], header
    for prior in ("1-mode", "4-mode std 0.1"):
        row = re.search(rf"^\| {prior} \| 0.001 \| (.+) \|$", text, re.M)
        assert row and all(re.fullmatch(r"-?[0-9.e+-]+", c) for c in row.group(1).split(" | ")), prior
    cell = r"(holds|opposite|not distinguishable): -?[0-9.e+-]+ vs -?[0-9.e+-]+ \(spread [0-9.e+-]+\)"
    rows = re.findall(r"^\| 0.1 \| 0.001 \| (.+) \|$", text, re.M)
    assert [len(r.split(" | ")) for r in rows] == [7, 4], rows  # data metrics, then code metrics
    for r in rows:
        assert all(re.fullmatch(cell, c) for c in r.split(" | ")), r
    assert "| 4-mode std | code-GAN lr | " + " | ".join(f"code MMD² w={w}" for w in widths) + " |" in text
    alignment = re.findall(r"^\| (?:1-mode|4-mode std 0.1) \| 0.001 \| (.+) \|$", text.split("## Claim (a)")[1], re.M)
    assert len(alignment) == 2 and all(len(r.split(" | ")) == 8 for r in alignment), alignment
    for image in ("prior_scatter.png", "prior_mmd.png"):
        assert f"]({image})" in text and (out / image).stat().st_size > 10_000, image
    shows = text.split("## What it shows", 1)[1]
    counts = re.findall(r"^- .+: \d+ holds, \d+ opposite, \d+ not distinguishable\.$", shows, re.M)
    assert len(counts) == 11 + 1 + 8 + 2, counts  # per metric (b), per std, per MMD metric (a), per prior
    # one seed: nothing is beyond a spread, so every metric reads "no difference" for both claims
    assert len(re.findall(r"^- no difference beyond the seed spread in any of the .+: .+\.$", shows, re.M)) == 2


def check_lazy_report(out) -> None:
    """lazy_penalty.md at the tiny budget: a row per k (1, 4) for wgan_gp, acl_gan_gp and gan + R1 with FD
    mean ± std, the row at a WGAN-GP recipe's own k being Table 1's runs, measured costs, a verdict per method."""
    text = (out / "lazy_penalty.md").read_text()
    number = r"[0-9]+\.[0-9]+"
    defaults = {m: load_recipe(os.path.join(REPO, f"recipes/digits/{m}.yaml")).method.gp_every
                for m in ("wgan_gp", "acl_gan_gp")}
    for group in ("wgan_gp", "acl_gan_gp", "gan + R1"):
        section = text.split(f"### {group} (", 1)[1].split("###", 1)[0]
        for k in (1, 4):  # a row at the recipe's own k is Table 1's run
            runs = f"table1-{group}" if defaults.get(group) == k else f"lazy-{group.replace(' + R1', '_r1')}-k{k}"
            pattern = (rf"^\| {k} \| `{runs}-seed\*` \| ({number}) ± {number} \| {number} ± {number} \| [^|]+ \| "
                       rf"([^|]+) \| [0-9.]+ ± [0-9.]+ \| {number} ± {number} \| ({number})× / ({number})× \|")
            row = re.search(pattern, section, re.M)
            assert row and float(row.group(1)) > 0 and float(row.group(3)) > 1, (group, k, section)
            verdict = row.group(2).strip()
            assert verdict == "reference" if k == 1 else verdict.endswith("seed spread"), verdict
        name = group.replace(" + R1", "+r1")
        assert re.search(rf"^- {re.escape(name)}: (the largest k|no k > 1)", text, re.M), name
    for kind in ("wgan", "r1"):
        for k in (1, 4):
            cost = rf"^\| {kind} \| {k} \| {number}× \| {number}× \| {number}× \|"
            assert re.search(cost, text, re.M), (kind, k)


def check_mnist_report(out) -> None:
    """mnist.md at the tiny budget: a verdict per comparison from the declared rule, with its Welch CI; every
    ACL row of the confirmation names its attachment; the selection file names a choice per screened method."""
    import json

    text = (out / "mnist.md").read_text()
    verdicts = re.findall(r"^\| [^|]+ \| (\w+) \| [0-9.]+ ± [0-9.]+ \| (\w+) \| [0-9.]+ ± [0-9.]+ \| "
                          r"[-+][0-9.]+ \[[-+][0-9.]+, [-+][0-9.]+\] \| [0-9.e-]+ \| [0-9]+% \| "
                          r"\*\*(improves|worse|no evidence of a difference)\*\* \|$", text, re.M)
    assert [(b, o) for b, o, _ in verdicts] == [("gan", "acl_gan"), ("wgan_gp", "acl_gan_gp"), ("vae", "acl_ae"),
                                                ("aae", "acl_ae"), ("arae", "acl_gan")], verdicts
    assert "mean FD over the last 4 evaluations" in text and "held-out" in text
    for method in ("acl_gan", "acl_gan_gp"):
        assert re.search(rf"^- `{method}`: `recipes/mnist/{method}.yaml` \(ACL attachment: residual\+code_norm\)",
                         text, re.M), method
    assert re.search(r"^- `acl_ae`: `recipes/mnist/acl_ae.yaml` \(ACL attachment: code_norm\)$", text, re.M)
    assert re.search(r"^- `vae`: `recipes/mnist/vae.yaml`$", text, re.M)  # no ACL module, no attachment
    selection = json.loads((out / "mnist_selection.json").read_text())["selection"]
    assert set(selection) == {"gan", "wgan_gp", "acl_gan", "acl_gan_gp"}
