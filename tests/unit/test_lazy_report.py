"""`acl-dist repro lazy`'s bookkeeping: which runs are Table 1's, the seed-spread verdict, the timing columns."""

from __future__ import annotations

import json

import pytest

from repro import lazy, table1
from repro.jobs import ReproError


def _overrides(job) -> list[str]:
    return [o for o in job.overrides if o.startswith(("method.", "model.d_norm"))]


def test_runs_at_the_recipe_default_are_table1s_and_every_other_k_is_explicit(monkeypatch):
    monkeypatch.setattr(lazy, "recipe_every", lambda recipe: 1)  # the recipes' gp_every before issue 16
    table1_jobs = {j.name: j for j in table1.jobs_for("tiny", list(lazy.METHODS))}
    planned = lazy.plan("tiny")
    assert {(g, k) for g, k, _ in planned} == {(m, k) for m in lazy.METHODS for k in (1, 4)} | {("gan+r1", 1),
                                                                                               ("gan+r1", 4)}
    for group, k, job in planned:
        if group in lazy.METHODS and k == 1:  # the recipes' gp_every here
            assert job == table1_jobs[job.name]  # same name and overrides: trained once, shared
        elif group in lazy.METHODS:
            assert job.name.startswith(f"lazy-{group}-k{k}-") and _overrides(job) == [f"method.gp_every={k}"]
        else:
            assert _overrides(job) == ["model.d_norm=layer", "method.gp_kind=r1", "method.gp_weight=0.5",
                                       f"method.gp_every={k}"]
    monkeypatch.setattr(lazy, "recipe_every", lambda recipe: 4)  # a recipe default moved to 4
    moved = {(g, k): job for g, k, job in lazy.plan("tiny")}
    assert moved[("wgan_gp", 4)].name == "table1-wgan_gp-seed1"
    assert _overrides(moved[("wgan_gp", 1)]) == ["method.gp_every=1"]  # k = 1 keeps meaning k = 1


def test_verdict_is_the_seed_spread_rule_and_the_pick_is_the_largest_k_within():
    dense = [100.0, 110.0]  # spread 10
    assert lazy.judge([105.0, 106.0], dense) == "within the seed spread"
    assert lazy.judge([125.0, 127.0], dense) == "worse beyond the seed spread"
    assert lazy.judge([80.0, 81.0], dense) == "better beyond the seed spread"
    assert lazy.judge([90.0, 150.0], dense) == "within the seed spread"  # the larger of the two spreads
    assert lazy.judge([100.0], [101.0]) == "one seed: no spread to judge by"
    runs = {k: [{"fid": v} for v in fds] for k, fds in
            {1: dense, 2: [104.0, 108.0], 4: [130.0, 131.0], 8: [111.0, 112.0], 16: [140.0, 150.0]}.items()}
    assert lazy.largest_within(runs) == 8
    assert lazy.largest_within({1: runs[1], 4: runs[4]}) == 1


@pytest.mark.parametrize("every", [1, 3])
def test_penalty_when_computed_is_recovered_exactly_from_the_logged_tick_means(tmp_path, every):
    """Ticks of 2 steps, d_steps 2, penalty 1 + i at critic iteration i: the logged value is what the trainer
    writes (sum over the tick's penalised iterations / d_steps / steps); the report recovers the mean."""
    d_steps, tick, ticks = 2, 2, 8
    (tmp_path / "recipe.yaml").write_text(f"method:\n  d_steps: {d_steps}\n  gp_every: {every}\n")
    with open(tmp_path / "metrics.jsonl", "w") as f:
        for t in range(ticks):
            step = (t + 1) * tick
            penalised = [i for i in range(t * tick * d_steps, step * d_steps) if i % every == 0]
            row = {"step": step, "images_per_s": 100.0 + t}
            if penalised:
                row["D/gp"] = sum(1.0 + i for i in penalised) / d_steps / tick
            f.write(json.dumps(row) + "\n")
            if t == 3:
                f.write(json.dumps({"step": step, "eval/fid": 1.0}) + "\n")  # eval lines are not ticks
    last = [i for i in range(12 * d_steps, 16 * d_steps) if i % every == 0]  # last quarter: steps 12..16
    timing = lazy._timing(str(tmp_path), every)
    assert timing["gp"] == pytest.approx(sum(1.0 + i for i in last) / len(last))
    assert timing["speed"] == pytest.approx(103.5)  # the median tick


def test_a_run_trained_at_another_k_than_its_row_is_refused(tmp_path):
    """Runs are matched by name; after a recipe default moves, Table 1's old runs must not fill another k's row."""
    (tmp_path / "recipe.yaml").write_text("method:\n  d_steps: 2\n  gp_every: 1\n")
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "images_per_s": 1.0, "D/gp": 0.5}) + "\n")
    with pytest.raises(ReproError, match="gp_every=1, but its row is k = 4"):
        lazy._timing(str(tmp_path), 4)
    assert lazy._timing(str(tmp_path), 1)["gp"] == pytest.approx(0.5)
