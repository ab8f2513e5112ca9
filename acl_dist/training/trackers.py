"""Experiment trackers rank 0 writes to besides ``metrics.jsonl``: TensorBoard, Weights & Biases, MLflow.

Each tracker gets the scalars of every log tick (and every evaluation), the resolved recipe as the run's
config, and the pictures as images (sample grids, the evaluation plot). A resumed run continues the same
tracker run: the ids are kept in ``RUN/trackers.json``. The libraries are optional extras
(``pip install acl_dist[wandb]`` / ``acl_dist[mlflow]``); validation refuses a recipe naming one that is not
installed, so a run never fails at its first log tick.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Protocol

log = logging.getLogger(__name__)

IDS_FILE = "trackers.json"


class Tracker(Protocol):
    def scalars(self, step: int, values: dict[str, float]) -> None: ...

    def image(self, step: int, key: str, path: str) -> None: ...

    def close(self) -> None: ...


class TensorBoardTracker:
    def __init__(self, run_dir: str):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(os.path.join(run_dir, "tensorboard"))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def image(self, step: int, key: str, path: str) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as picture:
            self.writer.add_image(key, np.asarray(picture.convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A wandb run in the run directory (``wandb/``), resumed by id; ``log.wandb_mode`` offline for no network."""

    def __init__(self, run_dir: str, name: str, project: str, config: dict, run_id: str | None, mode: str):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=project, name=name, id=run_id, resume="allow" if run_id else None,
                              dir=run_dir, config=config, mode=mode or None, reinit="create_new")
        self.id = self.run.id

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def image(self, step: int, key: str, path: str) -> None:
        self.run.log({key: self.wandb.Image(path)}, step=step)

    def close(self) -> None:
        self.run.finish()


class MLflowTracker:
    """An MLflow run (in ``log.mlflow_uri``, default a file store ``<run.out_dir>/mlruns``), resumed by id."""

    def __init__(self, uri: str, name: str, project: str, config: dict, run_id: str | None):
        if uri.startswith("file:"):  # MLflow 3 keeps its file store for those who opt in; a local, serverless store
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # is what a run without a server wants
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        if run_id is None:
            experiment = self.client.get_experiment_by_name(project)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment(project))
            run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
            for key, value in _flat(config).items():
                self.client.log_param(run_id, key, str(value)[:500])  # MLflow's length limit for a value
            self.client.log_dict(run_id, config, "recipe.json")
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.id = run_id

    def scalars(self, step: int, values: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def image(self, step: int, key: str, path: str) -> None:
        self.client.log_artifact(self.id, path, artifact_path=f"{key}/step-{step:08d}")

    def close(self) -> None:
        self.client.set_terminated(self.id)


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def open_trackers(cfg, run_dir: str, name: str, out_dir: str, config: dict) -> list[Tracker]:
    """The trackers ``cfg`` (the recipe's ``log:``) names, resuming the runs whose ids ``RUN/trackers.json``
    holds and recording new ones there."""
    path = os.path.join(run_dir, IDS_FILE)
    ids: dict[str, str] = {}
    if os.path.isfile(path):
        with open(path) as f:
            ids = json.load(f)
    opened: list[Tracker] = []
    for tracker in cfg.trackers:
        if tracker == "tensorboard":
            opened.append(TensorBoardTracker(run_dir))
        elif tracker == "wandb":
            opened.append(WandbTracker(run_dir, name, cfg.project, config, ids.get("wandb"), cfg.wandb_mode))
            ids["wandb"] = opened[-1].id
        elif tracker == "mlflow":
            uri = cfg.mlflow_uri or "file:" + os.path.abspath(os.path.join(out_dir, "mlruns"))
            opened.append(MLflowTracker(uri, name, cfg.project, config, ids.get("mlflow")))
            ids["mlflow"] = opened[-1].id
    if set(ids) & {"wandb", "mlflow"}:
        with open(path, "w") as f:
            json.dump(ids, f, indent=1)
    return opened
