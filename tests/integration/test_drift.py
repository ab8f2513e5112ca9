"""`acl-dist repro drift --budget tiny`: the arms train with kept checkpoints, every checkpoint is scored on
every code path, and the report, its figure and its numbers are written."""

from __future__ import annotations

import json
import math

from repro import drift


def test_every_checkpoint_of_every_arm_is_scored_and_reported(tmp_path):
    path = drift.reproduce(str(tmp_path / "out"), str(tmp_path / "runs"), "tiny", 2)
    results = json.load(open(tmp_path / "out" / "acl_drift.json"))
    b = drift.budget("tiny")
    assert sorted(results) == sorted(f"drift-{arm}-seed0" for arm in drift.ARMS)
    for rows in results.values():
        assert [r["step"] for r in rows] == list(range(b["every"], b["steps"] + 1, b["every"]))
        assert all(math.isfinite(r[k]) and r[k] >= 0 for r in rows for k in drift.METRICS if k in r)
        assert set(rows[0]) == {"step", *drift.METRICS} - {"e_move", "gz_move"}  # nothing to move from yet
        assert set(rows[-1]) == {"step", *drift.METRICS}
    text = open(path).read()
    assert text.count("| step | sample_fd |") == len(drift.ARMS) and "](acl_drift.png)" in text
    late = [r for r in results["drift-recipe-seed0"] if r["step"] > drift.WINDOW * b["steps"]]  # the last one
    assert f"| drift-recipe-seed0 | {late[0]['sample_fd']:.1f} | {late[0]['recon_fd']:.1f} |" in text  # summary
    assert (tmp_path / "out" / "acl_drift.png").is_file()
    # the code_d_steps_2 arm differs from the recipe in the code critic's steps alone
    assert any("method.code_d_steps=2" in line for line in open(tmp_path / "runs" / "drift" /
                                                                 "drift-code_d_steps_2-seed0" / "train.log"))
