"""Report runs are shared by what they compute, and a run of other settings is never reported as current."""

from __future__ import annotations

import os

import pytest

from acl_dist.config import dump_recipe, load_recipe
from repro.jobs import REPO, Job, ReproError, plan, run_jobs

RECIPE = "recipes/digits/gan.yaml"


def _job(name: str, *extra: str) -> Job:
    return Job(name, RECIPE, ["train.steps=3", *extra])


def _fake_finished_run(runs_root: str, job: Job, steps: int = 3, *extra: str) -> str:
    """A run directory as the trainer leaves it: the resolved recipe and a complete final checkpoint."""
    run_dir = job.run_dir(runs_root)
    recipe = load_recipe(os.path.join(REPO, job.recipe), [*job.overrides, *extra, f"run.name={job.name}"])
    os.makedirs(os.path.join(run_dir, "checkpoints", f"step-{steps:08d}"), exist_ok=True)
    open(os.path.join(run_dir, "checkpoints", f"step-{steps:08d}", "COMPLETE"), "w").close()
    with open(os.path.join(run_dir, "recipe.yaml"), "w") as f:
        f.write(dump_recipe(recipe))
    return run_dir


def test_identical_jobs_train_once(tmp_path):
    jobs = [_job("a"), _job("b"), _job("c", "optim.lr=1e-3"), _job("d", "run.seed=1")]
    to_train, shares = plan(jobs, str(tmp_path))
    assert [j.name for j in to_train] == ["a", "c", "d"]  # another seed is another run
    assert shares == {"b": str(tmp_path / "a")}


def test_a_finished_run_is_not_trained_again_and_others_link_to_it(tmp_path):
    _fake_finished_run(str(tmp_path), _job("table1-gan-seed0"))
    jobs = [_job("table1-gan-seed0"), _job("lazy-gan-k1-seed0", "train.progress=false")]  # progress: no number
    assert plan(jobs, str(tmp_path)) == ([], {"lazy-gan-k1-seed0": str(tmp_path / "table1-gan-seed0")})
    dirs = run_jobs(jobs, str(tmp_path), 1, "test")
    assert os.path.islink(dirs["lazy-gan-k1-seed0"])
    assert os.path.realpath(dirs["lazy-gan-k1-seed0"]) == os.path.realpath(tmp_path / "table1-gan-seed0")


def test_a_run_of_other_settings_under_the_jobs_name_stops_the_report(tmp_path):
    _fake_finished_run(str(tmp_path), _job("table1-gan-seed0"), 3, "optim.lr=1e-3")
    with pytest.raises(ReproError, match=r"other settings \(optim.lr 0.001 -> 0.0002\)"):
        plan([_job("table1-gan-seed0")], str(tmp_path))


def test_a_run_directory_rewritten_with_other_settings_is_read_anew(tmp_path):
    """saved_fingerprint's cache follows the file: a plan after the directory was trained again at other
    settings sees them."""
    _fake_finished_run(str(tmp_path), _job("table1-gan-seed0"))
    assert plan([_job("table1-gan-seed0")], str(tmp_path)) == ([], {})
    _fake_finished_run(str(tmp_path), _job("table1-gan-seed0"), 3, "optim.lr=1e-3")
    with pytest.raises(ReproError, match=r"other settings \(optim.lr 0.001 -> 0.0002\)"):
        plan([_job("table1-gan-seed0")], str(tmp_path))


def test_every_shipped_recipe_reads_as_yaml_safe_load_reads_it():
    import glob

    import yaml

    from acl_dist.config import read_yaml

    paths = glob.glob(os.path.join(REPO, "recipes", "**", "*.yaml"), recursive=True)
    assert len(paths) > 20
    for path in paths:
        with open(path) as f:
            text = f.read()
        assert read_yaml(text) == yaml.safe_load(text), path


def test_an_unfinished_run_resumes(tmp_path):
    run_dir = _fake_finished_run(str(tmp_path), _job("x"))
    os.remove(os.path.join(run_dir, "checkpoints", "step-00000003", "COMPLETE"))
    to_train, shares = plan([_job("x"), _job("y")], str(tmp_path))
    assert [j.name for j in to_train] == ["x"] and shares == {"y": run_dir}


def _count_checkpoints(run_dir: str) -> dict:
    return {"checkpoints": len(os.listdir(os.path.join(run_dir, "checkpoints")))}


def _broken_diagnostic(run_dir: str) -> dict:
    raise ValueError(f"nothing to measure in {os.path.basename(run_dir)}")


@pytest.mark.parametrize("task, expected", [
    (_count_checkpoints, {"checkpoints": 1}),
    (_broken_diagnostic, {"error": "ValueError: nothing to measure in run"})])
def test_a_job_computes_after_training_in_its_own_process_and_a_failure_keeps_the_run(tmp_path, monkeypatch, task,
                                                                                      expected):
    """``repro.run_job``: train, then the named task on the run directory; its result (or its error) in
    after_training.json, exit 0 either way (the run is trained and checkpointed). An unknown task stops before
    training."""
    import json

    from repro import run_job
    from tests.conftest import tiny_overrides

    monkeypatch.setitem(run_job.AFTER_TRAINING, "task", task)
    run_dir = str(tmp_path / "run")
    train = [os.path.join(REPO, RECIPE), *tiny_overrides("gan", str(tmp_path), "run.name=run", "train.steps=2",
                                                         "eval.every=0")]
    assert run_job.main([run_dir, "no such task", *train]) == 2 and not os.path.exists(run_dir)
    assert run_job.main([run_dir, "task", *train]) == 0 and os.path.isdir(os.path.join(run_dir, "checkpoints"))
    with open(os.path.join(run_dir, run_job.RESULT)) as f:
        assert json.load(f) == expected


def test_diagnostics_load_nothing_for_a_method_without_encoder_and_measure_a_checkpoint_once(tmp_path, monkeypatch):
    from repro import table1

    gan = _fake_finished_run(str(tmp_path), _job("gan"))  # no weights in it: loading it would fail
    assert table1.diagnostics(gan) == {"recon_fd": None, "code_mmd": None}
    measured = []
    monkeypatch.setattr(table1, "_measure_diagnostics", lambda d: measured.append(d) or {"recon_fd": 1.0})
    acl = _fake_finished_run(str(tmp_path), Job("acl", "recipes/digits/acl_gan.yaml", ["train.steps=3"]))
    assert table1.diagnostics(acl) == table1.diagnostics(acl) == {"recon_fd": 1.0} and len(measured) == 1
    os.makedirs(os.path.join(acl, "checkpoints", "step-00000004"))
    open(os.path.join(acl, "checkpoints", "step-00000004", "COMPLETE"), "w").close()
    table1.diagnostics(acl)
    assert len(measured) == 2  # a newer checkpoint is measured anew
