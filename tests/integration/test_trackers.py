"""log.trackers for real, offline: MLflow into a local file store, wandb in offline mode, each read back; a
resumed run continues the same tracker run; a tracker whose library is missing is one line and exit 2."""

from __future__ import annotations

import glob
import json
import os
import struct

import pytest

from acl_dist import cli, rules
from acl_dist.config import load_recipe
from acl_dist.errors import ConfigError
from acl_dist.training.trainer import Trainer
from tests.conftest import tiny_overrides


def _train(tmp_path, tracker: str, steps: int, *extra: str):
    recipe = load_recipe(None, tiny_overrides("gan", str(tmp_path), f"log.trackers=[{tracker}]", f"train.steps={steps}",
                                              "train.log_every=1", "train.sample_every=2", "train.ckpt_every=2",
                                              "eval.every=2", "eval.num_samples=32", "eval.batch_size=16", *extra))
    return recipe, Trainer(recipe).train()


def test_mlflow_gets_scalars_config_and_pictures_and_a_resume_continues_its_run(tmp_path):
    from mlflow.tracking import MlflowClient

    recipe, _ = _train(tmp_path, "mlflow", 2)
    ids = json.load(open(os.path.join(recipe.run_dir, "trackers.json")))
    client = MlflowClient(tracking_uri="file:" + os.path.join(str(tmp_path), "mlruns"))
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
    recipe, _ = _train(tmp_path, "wandb", 2, "log.wandb_mode=offline")
    first = json.load(open(os.path.join(recipe.run_dir, "trackers.json")))["wandb"]
    _train(tmp_path, "wandb", 4, "log.wandb_mode=offline")
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
