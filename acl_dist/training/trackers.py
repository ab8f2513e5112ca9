"""Experiment trackers rank 0 writes to besides ``metrics.jsonl``: TensorBoard, Weights & Biases, MLflow.

Each tracker gets the scalars of every log tick (and every evaluation), the resolved recipe as the run's
config, and the pictures as images (sample grids, the evaluation plot). A resumed run continues the same
tracker run: the ids are kept in ``RUN/trackers.json``. The libraries are optional extras
(``pip install acl_dist[wandb]`` / ``acl_dist[mlflow]``); validation refuses a recipe naming one that is not
installed, so a run never fails at its first log tick.

Settings follow the libraries' conventions (``resolve``): a value the recipe sets wins, then the variable a
user of that library sets in a shell or a SLURM script (``WANDB_PROJECT``, ``WANDB_DIR``, ``WANDB_MODE``,
``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``), then acl_dist's default. ``preflight`` runs on every rank
before anything is trained or written: a wandb run that would need a login it has not got, or an MLflow server
that does not answer, ends there in one line (exit 2) instead of a traceback after the run has started.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from acl_dist.errors import ConfigError

log = logging.getLogger(__name__)

IDS_FILE = "trackers.json"
DEFAULT_PROJECT = "acl_dist"
PROBE_TIMEOUT_S = 3.0  # an MLflow server that does not answer a TCP connect within this is unreachable


@dataclass(frozen=True)
class Resolved:
    """The tracker settings a run uses, each from the recipe, else the environment, else acl_dist's default."""

    wandb_project: str
    wandb_dir: str
    wandb_mode: str  # online | offline | disabled
    mlflow_uri: str
    mlflow_experiment: str
    mlflow_default_store: bool  # the URI is acl_dist's default (a sqlite store in run.out_dir)


def resolve(cfg, run_dir: str, out_dir: str, env: dict | None = None) -> Resolved:
    """``cfg`` (the recipe's ``log:``) completed from ``env`` (default ``os.environ``) and the defaults."""
    env = os.environ if env is None else env
    uri = cfg.mlflow_uri or env.get("MLFLOW_TRACKING_URI", "")
    return Resolved(
        wandb_project=cfg.project or env.get("WANDB_PROJECT") or DEFAULT_PROJECT,
        wandb_dir=env.get("WANDB_DIR") or run_dir,
        wandb_mode=(cfg.wandb_mode or env.get("WANDB_MODE") or "online").lower(),
        mlflow_uri=uri or "sqlite:///" + os.path.abspath(os.path.join(out_dir, "mlflow.db")),
        mlflow_experiment=cfg.project or env.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT,
        mlflow_default_store=not uri)


def preflight(cfg, run_dir: str, out_dir: str, env: dict | None = None) -> None:
    """Refuse, before any training, a tracker that would fail once the run has started (ConfigError, exit 2)."""
    env = os.environ if env is None else env
    settings = resolve(cfg, run_dir, out_dir, env)
    if "wandb" in cfg.trackers and settings.wandb_mode == "online" and not _wandb_credentials(env):
        raise ConfigError("log.trackers", "wandb is online but has no API key: run `wandb login`, or set "
                          "WANDB_API_KEY, or log offline (WANDB_MODE=offline or log.wandb_mode: offline; "
                          "`wandb sync` uploads later)")
    if "mlflow" in cfg.trackers:
        where = urlparse(settings.mlflow_uri)
        if where.scheme in ("http", "https") and not _answers(where.hostname or "", where.port or
                                                              (443 if where.scheme == "https" else 80)):
            source = "log.mlflow_uri" if cfg.mlflow_uri else "MLFLOW_TRACKING_URI"
            raise ConfigError("log.trackers", f"the MLflow server {settings.mlflow_uri} ({source}) does not answer "
                              f"within {PROBE_TIMEOUT_S:.0f} s: start it, or point {source} at a reachable one "
                              "(or unset it: a local sqlite store in run.out_dir)")


def _wandb_credentials(env) -> bool:
    """Whether wandb has credentials without asking: WANDB_API_KEY, an identity token file, or the netrc entry
    `wandb login` writes for the host (WANDB_BASE_URL, default api.wandb.ai)."""
    if env.get("WANDB_API_KEY") or env.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    path = env.get("NETRC") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


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

    def __init__(self, wandb_dir: str, name: str, project: str, config: dict, run_id: str | None, mode: str):
        import wandb

        self.wandb = wandb
        os.makedirs(wandb_dir, exist_ok=True)
        self.run = wandb.init(project=project, name=name, id=run_id, resume="allow" if run_id else None,
                              dir=wandb_dir, config=config, mode=mode, reinit="create_new")
        self.id = self.run.id

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def image(self, step: int, key: str, path: str) -> None:
        self.run.log({key: self.wandb.Image(path)}, step=step)

    def close(self) -> None:
        self.run.finish()


class MLflowTracker:
    """An MLflow run, resumed by id: in ``log.mlflow_uri``, else MLFLOW_TRACKING_URI, else a local sqlite store
    ``<run.out_dir>/mlflow.db`` with its artifacts in ``<run.out_dir>/mlartifacts`` (MLflow 3 deprecates the
    file store acl_dist used before; a file: URI still works for those who name one)."""

    def __init__(self, uri: str, name: str, project: str, config: dict, run_id: str | None,
                 artifacts: str | None = None):
        if uri.startswith("file:"):  # MLflow 3 keeps its file store for those who opt in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        if run_id is None:
            experiment = self.client.get_experiment_by_name(project)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment(project, artifact_location=artifacts))
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
    settings = resolve(cfg, run_dir, out_dir)
    ids: dict[str, str] = {}
    if os.path.isfile(path):
        with open(path) as f:
            ids = json.load(f)
    opened: list[Tracker] = []
    for tracker in cfg.trackers:
        if tracker == "tensorboard":
            opened.append(TensorBoardTracker(run_dir))
        elif tracker == "wandb":
            opened.append(WandbTracker(settings.wandb_dir, name, settings.wandb_project, config, ids.get("wandb"),
                                       settings.wandb_mode))
            ids["wandb"] = opened[-1].id
        elif tracker == "mlflow":
            artifacts = (Path(os.path.abspath(os.path.join(out_dir, "mlartifacts"))).as_uri()
                         if settings.mlflow_default_store else None)
            opened.append(MLflowTracker(settings.mlflow_uri, name, settings.mlflow_experiment, config,
                                        ids.get("mlflow"), artifacts))
            ids["mlflow"] = opened[-1].id
    if set(ids) & {"wandb", "mlflow"}:
        with open(path, "w") as f:
            json.dump(ids, f, indent=1)
    return opened
