"""The campaign outlives a session: interrupted by its time budget, continued on a fresh directory from the
records alone, its report rebuilt from the records with no run directory left."""

from __future__ import annotations

import re
import shutil

from repro import campaign, records
from repro.campaign_report import write

# One family with two settings a side: budget runs, both screens and the confirmation, in seconds.
FAMILY = campaign.Family("gan", "gan", "acl_gan", {"recipe": {}, "lr_x2": {"optim.lr": 4.0e-4}},
                         {"recipe": {}, "alg1_rec": dict(campaign.ALG1)})


def test_an_interrupted_campaign_continues_from_its_records_on_a_fresh_directory(tmp_path):
    s = campaign.Settings.tiny()
    path = str(tmp_path / "first" / "records.jsonl")
    said: list[str] = []
    # A first session with room for one run: the prior predicts 8 steps x 0.18 s; the next prediction comes from
    # the first record's own wall time (an interpreter start and 8 steps: over the second left).
    states = campaign.run_campaign(s, str(tmp_path / "runs1"), path, 1, "cpu", time_budget_s=2.5, samples_dir=None,
                                   families=(FAMILY,), say=said.append)
    first = records.load(path)
    assert len(first) == 1 and first[0]["label"] == "gan/recipe" and first[0]["steps"] == s.long_steps
    assert first[0]["curve"][-1]["step"] == s.long_steps and first[0]["threads"] == 1 and first[0]["wall_s"] > 0
    assert states[0].stage == "budget" and "does not fit" in said[-1]

    # A later session on a fresh clone: the records file is all that came along.
    fresh = tmp_path / "second"
    fresh.mkdir()
    shutil.copyfile(path, fresh / "records.jsonl")
    states = campaign.run_campaign(s, str(tmp_path / "runs2"), str(fresh / "records.jsonl"), 2, "cpu", None,
                                   str(fresh / "samples"), (FAMILY,), said.append)
    done = records.load(str(fresh / "records.jsonl"))
    assert states[0].stage == "done" and not states[0].missing
    assert done[0] == first[0]  # the recorded run was not trained again
    assert not (tmp_path / "runs2" / f"campaign-gan-recipe-{s.long_steps}-seed0").exists()
    assert (tmp_path / "runs2" / f"campaign-gan-recipe-{s.long_steps}-seed1").is_dir()
    keys = [(r["key"], r["steps"]) for r in done]
    assert len(keys) == len(set(keys))  # nothing trained twice
    labels = {r["label"] for r in done}
    assert {"gan/recipe", "acl_gan/recipe", "gan/lr_x2", "gan/selected", "acl_gan/selected"} <= labels
    budget = states[0].budget
    assert budget is not None and s.min_budget <= budget <= s.long_steps
    assert all(r["steps"] == budget for r in done if r["label"].endswith("/selected"))

    # The report from the records alone, the run directories gone.
    shutil.rmtree(tmp_path / "runs1")
    shutil.rmtree(tmp_path / "runs2")
    out = tmp_path / "report"
    text = open(write(str(out), s, str(fresh / "records.jsonl"), str(fresh / "samples"), (FAMILY,))).read()
    assert f"Budget: **{budget} steps**" in text
    verdict = r"^- \*\*acl_gan/(selected|alg1) against gan/selected: (improves|worse|no evidence of a difference|" \
              r"depends on the feature space)\*\*"
    assert len(re.findall(verdict, text, re.M)) >= 1, text
    assert re.search(r"^\| FD \| gan/selected \| [0-9.]+ ± [0-9.]+ \|", text, re.M)
    assert re.search(r"^\| KID \| gan/selected \|", text, re.M)
    assert re.search(r"^\| FD in mnist-lenet \| gan/selected \| [0-9.]+ ± [0-9.]+ \|", text, re.M)  # the second space
    confirmation = [r for r in done if r["label"].endswith(("/selected", "/alg1"))]
    assert all("second_fid" in r["curve"][-1] for r in confirmation)  # evaluated in both feature spaces
    assert not any("second_fid" in r["curve"][-1] for r in done if r not in confirmation)  # only they need it
    # the ACL runs' reconstruction FD and code MMD², computed in a fresh interpreter at the end of each run
    assert all(r["final_diagnostics"]["recon_fd"] > 0 for r in done if r["method"] == "acl_gan"), done
    assert all(r["final_diagnostics"] == {"recon_fd": None, "code_mmd": None} for r in done if r["method"] == "gan")
    assert "FD floor" in text and "Still missing" not in text
    for picture in ("campaign_budget.png", "campaign_training.png", "campaign_samples.png"):
        assert (out / picture).is_file() and f"]({picture})" in text, picture
