"""log.trackers for real, offline: MLflow into a local sqlite store, wandb in offline mode, each read back; a
resumed run continues the same tracker run; a tracker whose library is missing, a wandb without a login and an
MLflow server that does not answer are one line and exit 2 before anything is trained; the libraries'
environment variables are honoured, a value the recipe sets winning over them."""

from __future__ import annotations

import glob
import json
import os
import socket
import struct
import subprocess
import time

import pytest

from acl_dist import cli, rules
from acl_dist.config import load_recipe
from acl_dist.errors import ConfigError
from acl_dist.training.trainer import Trainer
from tests.conftest import PYTHON, REPO, tiny_overrides


@pytest.fixture(autouse=True)
def _no_tracker_environment(monkeypatch):
    """Each test states the tracker variables it means (a developer's shell may export some)."""
    for key in ("WANDB_PROJECT", "WANDB_DIR", "WANDB_MODE", "WANDB_API_KEY", "MLFLOW_TRACKING_URI",
                "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(key, raising=False)


def _train(tmp_path, tracker: str, steps: int, *extra: str):
    recipe = load_recipe(None, tiny_overrides("gan", str(tmp_path), f"log.trackers=[{tracker}]", f"train.steps={steps}",
                                              "train.log_every=1", "train.sample_every=2", "train.ckpt_every=2",
                                              "eval.every=2", "eval.num_samples=32", "eval.batch_size=16", *extra))
    return recipe, Trainer(recipe).train()


def test_mlflow_gets_scalars_config_and_pictures_and_a_resume_continues_its_run(tmp_path):
    from mlflow.tracking import MlflowClient

    recipe, _ = _train(tmp_path, "mlflow", 2)
    ids = json.load(open(os.path.join(recipe.run_dir, "trackers.json")))
    client = MlflowClient(tracking_uri="sqlite:///" + os.path.join(str(tmp_path), "mlflow.db"))  # the default store
    run = client.get_run(ids["mlflow"])
    assert run.data.params["method.name"] == "gan" and run.data.params["train.steps"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "D/d_loss")] == [1, 2]
    _train(tmp_path, "mlflow", 4)  # resumes from the step-2 checkpoint: the same MLflow run goes on
    assert json.load(open(os.path.join(recipe.run_dir, "trackers.json")))["mlflow"] == ids["mlflow"]
    history = client.get_metric_history(ids["mlflow"], "D/d_loss")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert [m.step for m in client.get_metric_history(ids["mlflow"], "eval/fid")] == [2, 4]
    artifacts = [a.path for a in client.list_artifacts(ids["mlflow"], "samples")]
    assert "samples/step-00000002" in artifacts and "samples/step-00000004" in artifacts
    assert client.get_run(ids["mlflow"]).info.status == "FINISHED"


def wandb_records(path: str):
    """The protobuf records of a wandb run file (``run-<id>.wandb``): a 7-byte header (``:W&B``, magic, version),
    then LevelDB-style 32 KiB blocks of records, each a 7-byte header (CRC32, length, FULL/FIRST/MIDDLE/LAST)
    and its bytes (the format wandb's datastore writes; its Python reader is gone from wandb 0.31)."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", data[:8]
    position, parts = 7, []
    while position + 7 <= len(data):
        room = 32768 - position % 32768
        length, kind = struct.unpack("<HB", data[position + 4:position + 7])
        if room < 7 or (length == 0 and kind == 0):  # the rest of the block is padding
            position += room
            continue
        parts.append(data[position + 7:position + 7 + length])
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def test_wandb_offline_writes_its_run_and_a_resume_continues_it(tmp_path):
    import wandb

    recipe, _ = _train(tmp_path, "wandb", 2, "log.wandb_mode=offline")
    first = json.load(open(os.path.join(recipe.run_dir, "trackers.json")))["wandb"]
    _train(tmp_path, "wandb", 4, "log.wandb_mode=offline")
    # wandb 0.31's run.finish() may return before its service has written the run file (measured: 1 run in 12
    # read back as its 7-byte header alone); the process's exit writes it, as teardown does here
    wandb.teardown()
    assert json.load(open(os.path.join(recipe.run_dir, "trackers.json")))["wandb"] == first
    runs = sorted(glob.glob(os.path.join(recipe.run_dir, "wandb", "offline-run-*")))
    assert len(runs) == 2 and all(r.endswith(f"-{first}") for r in runs)  # one run id, written twice
    history, config = [], {}
    for run in runs:
        for record in wandb_records(os.path.join(run, f"run-{first}.wandb")):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                history.append({i.key or "/".join(i.nested_key): i.value_json for i in record.history.item})
            elif kind == "run":
                config.update({u.key: u.value_json for u in record.run.config.update})
    assert [int(h["_step"]) for h in history] == [1, 2, 3, 4] and all("D/d_loss" in h for h in history)
    assert json.loads(config["method"])["name"] == "gan" and json.loads(config["train"])["steps"] == 4  # resumed
    assert glob.glob(os.path.join(runs[-1], "files", "media", "images", "samples_4_*.png"))


def test_a_tracker_whose_library_is_missing_is_one_line_naming_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(rules.TRACKERS, "wandb", "wandb_is_not_installed_here")
    with pytest.raises(ConfigError, match=r"log.trackers\[0\]: wandb is not installed: pip install acl_dist\[wandb\]"):
        load_recipe(None, tiny_overrides("gan", str(tmp_path), "log.trackers=[wandb]"))
    code = cli.main(["train", "recipes/digits/gan.yaml", "log.trackers=[wandb]", f"run.out_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install acl_dist[wandb]" in err[0]
    with pytest.raises(ConfigError, match="unknown tracker 'neptune'"):
        load_recipe(None, tiny_overrides("gan", str(tmp_path), "log.trackers=[neptune]"))


def _cli_train(tmp_path, env_extra: dict, *overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    env.update({"HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1", **env_extra})  # no ~/.netrc: no login
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "ACL_DIST_LAUNCHED"):
        env.pop(key, None)
    (tmp_path / "home").mkdir(exist_ok=True)
    return subprocess.run([PYTHON, "-m", "acl_dist", "train", "recipes/digits/gan.yaml", f"run.out_dir={tmp_path}",
                           "run.name=tracked", "train.steps=2", *overrides], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def _one_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("acl-dist: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def test_wandb_online_without_a_login_stops_before_training_in_one_line(tmp_path):
    proc = _cli_train(tmp_path, {}, "log.trackers=[wandb]")
    _one_line(proc, "wandb login", "WANDB_API_KEY", "WANDB_MODE=offline", "log.wandb_mode: offline")
    assert not (tmp_path / "tracked").exists()  # nothing written that a later run trips over
    ok = _cli_train(tmp_path, {"WANDB_MODE": "offline"}, "log.trackers=[wandb]")  # the advice works
    assert ok.returncode == 0, ok.stderr[-3000:]


def test_an_mlflow_server_that_does_not_answer_stops_before_training_in_one_line(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.time()
    proc = _cli_train(tmp_path, {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}, "log.trackers=[mlflow]")
    _one_line(proc, f"http://127.0.0.1:{port}", "MLFLOW_TRACKING_URI", "does not answer")
    assert time.time() - started < 120 and not (tmp_path / "tracked").exists()


def test_the_recipe_wins_over_the_environment_which_wins_over_the_defaults(tmp_path):
    from acl_dist.sections import LogConfig
    from acl_dist.training.trackers import resolve

    env = {"WANDB_PROJECT": "wp", "WANDB_DIR": "/wd", "WANDB_MODE": "offline", "MLFLOW_TRACKING_URI": "sqlite:///e.db",
           "MLFLOW_EXPERIMENT_NAME": "me"}
    from_env = resolve(LogConfig(), "RUN", "OUT", env)
    assert (from_env.wandb_project, from_env.wandb_dir, from_env.wandb_mode) == ("wp", "/wd", "offline")
    assert (from_env.mlflow_uri, from_env.mlflow_experiment, from_env.mlflow_default_store) == ("sqlite:///e.db",
                                                                                                "me", False)
    explicit = resolve(LogConfig(project="mine", mlflow_uri="sqlite:///r.db", wandb_mode="disabled"), "RUN", "OUT", env)
    assert (explicit.wandb_project, explicit.mlflow_experiment) == ("mine", "mine")
    assert (explicit.mlflow_uri, explicit.wandb_mode) == ("sqlite:///r.db", "disabled")
    default = resolve(LogConfig(), "RUN", "OUT", {})
    assert (default.wandb_project, default.wandb_dir, default.wandb_mode) == ("acl_dist", "RUN", "online")
    assert default.mlflow_uri == "sqlite:///" + os.path.abspath("OUT/mlflow.db") and default.mlflow_default_store


def test_mlflow_goes_to_the_sqlite_store_and_experiment_the_environment_names(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    store = "sqlite:///" + str(tmp_path / "elsewhere.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-the-shell")
    monkeypatch.chdir(tmp_path)  # MLflow's own artifact default for a store it was pointed at: ./mlruns
    recipe, _ = _train(tmp_path, "mlflow", 2)
    ids = json.load(open(os.path.join(recipe.run_dir, "trackers.json")))
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(ids["mlflow"])
    assert client.get_experiment(run.info.experiment_id).name == "from-the-shell"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "D/d_loss")] == [1, 2]
    assert not os.path.exists(os.path.join(str(tmp_path), "mlflow.db"))  # not the default store
    recipe, _ = _train(tmp_path, "mlflow", 2, "run.name=named", "log.project=from-the-recipe")
    named = client.get_run(json.load(open(os.path.join(recipe.run_dir, "trackers.json")))["mlflow"])
    assert client.get_experiment(named.info.experiment_id).name == "from-the-recipe"  # the recipe wins


def test_wandb_writes_where_wandb_dir_says(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-here"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    recipe, _ = _train(tmp_path, "wandb", 2)
    run_id = json.load(open(os.path.join(recipe.run_dir, "trackers.json")))["wandb"]
    assert glob.glob(str(tmp_path / "wandb-here" / "wandb" / f"offline-run-*-{run_id}"))
    assert not os.path.exists(os.path.join(recipe.run_dir, "wandb"))


def test_log_trackers_knows_every_tracker_accelerate_supports():
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    assert set(rules.TRACKERS) == set(LOGGER_TYPE_TO_CLASS)


def test_any_other_accelerate_tracker_gets_config_scalars_and_pictures(tmp_path, monkeypatch):
    """The path every tracker but the three takes (Aim, Comet, ClearML, DVCLive, SwanLab, Trackio), through
    accelerate's GeneralTracker interface: DVCLive's place taken by a recording tracker, its library absent."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, GeneralTracker

    calls: list[tuple] = []

    class Recording(GeneralTracker):
        name, requires_logging_directory, main_process_only = "dvclive", True, True

        def __init__(self, run_name: str, logging_dir: str):
            super().__init__()
            calls.append(("init", run_name, logging_dir))

        @property
        def tracker(self):
            return self

        def start(self):
            calls.append(("start",))

        def store_init_configuration(self, values: dict):
            calls.append(("config", values))

        def log(self, values: dict, step=None, **kwargs):
            calls.append(("log", step, set(values)))

        def log_images(self, values: dict, step=None, **kwargs):
            calls.append(("images", step, {k: v[0].shape for k, v in values.items()}))

        def finish(self):
            calls.append(("finish",))

    monkeypatch.setitem(LOGGER_TYPE_TO_CLASS, "dvclive", Recording)
    monkeypatch.setitem(rules.TRACKERS, "dvclive", "json")  # validation: its library counts as installed
    recipe, _ = _train(tmp_path, "dvclive", 2, "log.project=digits-study")
    assert calls[0] == ("init", "digits-study", os.path.join(recipe.run_dir, "dvclive")) and calls[1] == ("start",)
    assert calls[2][0] == "config" and calls[2][1]["method.name"] == "gan" and calls[2][1]["train.steps"] == 2
    assert [c[1] for c in calls if c[0] == "log" and "D/d_loss" in c[2]] == [1, 2]
    assert any(c[0] == "log" and "eval/fid" in c[2] for c in calls)
    images = [c for c in calls if c[0] == "images"]
    assert {k for c in images for k in c[2]} == {"samples", "eval"} and all(
        len(shape) == 3 and shape[2] == 3 for c in images for shape in c[2].values())  # [H, W, RGB]
    assert calls[-1] == ("finish",)


def test_tensorboard_gets_scalars_and_the_pictures(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe, _ = _train(tmp_path, "tensorboard", 2)
    events = EventAccumulator(os.path.join(recipe.run_dir, "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("D/d_loss")] == [1, 2]
    assert {"samples", "eval"} <= set(events.Tags()["images"])
