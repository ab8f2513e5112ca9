"""Experiment trackers rank 0 writes to besides ``metrics.jsonl``: every tracker accelerate supports.

Built on accelerate's tracker layer (``accelerate.tracking``: TensorBoard, Weights & Biases, MLflow, Aim,
Comet, ClearML, DVCLive, SwanLab, Trackio), created here rather than through ``Accelerator(log_with=...)``
because the trainer adds what that layer lacks: pictures from the PNG files it writes, resuming the same
wandb and MLflow run by the id kept in the run directory, and the precedence below (accelerate's MLflow
tracker lets the environment override its arguments).

Each tracker gets the scalars of every log tick (and every evaluation), the resolved recipe as the run's
config, and the pictures as images (sample grids, the evaluation plot). A resumed run continues the same
tracker run: the ids are kept in ``RUN/trackers.json``. The libraries are optional extras
(``pip install acl_dist[wandb]`` / ``acl_dist[mlflow]``; the others their own packages); validation refuses a
recipe naming one that is not installed, so a run never fails at its first log tick.

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

    project: str  # for the trackers without a variable of their own
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
        project=cfg.project or DEFAULT_PROJECT,
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


class AccelerateTracker:
    """One of accelerate's trackers (``accelerate.tracking``) behind the three calls the trainer makes.

    accelerate gives every tracker ``log`` and ``finish``; what it lacks, this keeps: a picture from a PNG file
    (its ``log_images`` where the tracker has one, an artifact for MLflow, which has none; nothing for a
    tracker with neither) and the id a resumed run continues (``id``, wandb's and MLflow's)."""

    def __init__(self, name: str, tracker, run_id: str | None = None):
        self.name, self.tracker, self.id = name, tracker, run_id

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.tracker.log(values, step=step)

    def image(self, step: int, key: str, path: str) -> None:
        if self.name == "mlflow":
            self.tracker.log_artifact(path, artifact_path=f"{key}/step-{step:08d}")
            return
        if not hasattr(self.tracker, "log_images"):
            return
        import numpy as np
        from PIL import Image

        with Image.open(path) as picture:
            pixels = np.asarray(picture.convert("RGB"))  # [H, W, 3]
        if self.name == "tensorboard":
            self.tracker.log_images({key: pixels[None]}, step=step, dataformats="NHWC")
        else:
            self.tracker.log_images({key: [pixels]}, step=step)

    def close(self) -> None:
        """Finish the tracker's run. wandb 0.31 may return from ``finish`` before its service has written an
        offline run's file; the process's exit (or ``wandb.teardown()``) writes it."""
        self.tracker.finish()


def _tensorboard(run_dir: str, config: dict) -> AccelerateTracker:
    from accelerate.tracking import TensorBoardTracker

    tracker = TensorBoardTracker("tensorboard", run_dir)  # RUN/tensorboard, as before accelerate wrote it
    tracker.start()
    tracker.store_init_configuration({k: v if isinstance(v, (bool, int, float, str)) else str(v)
                                      for k, v in _flat(config).items()})
    return AccelerateTracker("tensorboard", tracker)


def _wandb(settings: Resolved, name: str, config: dict, run_id: str | None) -> AccelerateTracker:
    """wandb.init through accelerate (its ``run_name`` is wandb's project); the config goes in with the run,
    not through ``wandb.config``, which is the global of whichever run started last."""
    from accelerate.tracking import WandBTracker

    os.makedirs(settings.wandb_dir, exist_ok=True)
    tracker = WandBTracker(settings.wandb_project, name=name, id=run_id, resume="allow" if run_id else None,
                           dir=settings.wandb_dir, config=config, mode=settings.wandb_mode, reinit="create_new")
    tracker.start()
    return AccelerateTracker("wandb", tracker, tracker.run.id)


def _mlflow(settings: Resolved, name: str, config: dict, run_id: str | None, out_dir: str) -> AccelerateTracker:
    """MLflow through accelerate, with this module's precedence: accelerate lets MLFLOW_EXPERIMENT_NAME and
    MLFLOW_RUN_ID override its arguments, so they are set aside while it reads them (the recipe's project, the
    environment's name and the default are already resolved; a resumed run's saved id wins over
    MLFLOW_RUN_ID). accelerate's ``logging_dir`` is the experiment's artifact location, not the tracking URI,
    which is set here (MLflow's global, as accelerate's fluent calls use it)."""
    import mlflow
    from accelerate.tracking import MLflowTracker

    if settings.mlflow_uri.startswith("file:"):  # MLflow 3 keeps its file store for those who opt in
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(settings.mlflow_uri)
    artifacts = (Path(os.path.abspath(os.path.join(out_dir, "mlartifacts"))).as_uri()
                 if settings.mlflow_default_store else None)
    run_id = run_id or os.environ.get("MLFLOW_RUN_ID")
    aside = {k: os.environ.pop(k) for k in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID") if k in os.environ}
    try:
        tracker = MLflowTracker(experiment_name=settings.mlflow_experiment, logging_dir=artifacts, run_id=run_id,
                                run_name=name)
    finally:
        os.environ.update(aside)
    if mlflow.active_run() is not None:  # a run this process started and did not end (an earlier crash)
        mlflow.end_run()
    tracker.start()
    if run_id is None:
        tracker.store_init_configuration({k: str(v)[:500] for k, v in _flat(config).items()})  # MLflow's limit
        mlflow.log_dict(config, "recipe.json")
    return AccelerateTracker("mlflow", tracker, tracker.active_run.info.run_id)


def _other(tracker_name: str, run_dir: str, settings: Resolved, config: dict) -> AccelerateTracker:
    """Any other tracker accelerate supports (Aim, Comet, ClearML, DVCLive, SwanLab, Trackio): its run named by
    the project, its files (for those that write locally) in ``RUN/<name>``; a resumed run is a new run there
    (accelerate keeps no run id for them)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    cls = LOGGER_TYPE_TO_CLASS[tracker_name]
    kwargs = {"logging_dir": os.path.join(run_dir, tracker_name)} if cls.requires_logging_directory else {}
    tracker = cls(settings.project, **kwargs)
    tracker.start()
    tracker.store_init_configuration({k: v if isinstance(v, (bool, int, float, str)) else str(v)
                                      for k, v in _flat(config).items()})
    return AccelerateTracker(tracker_name, tracker)


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
            opened.append(_tensorboard(run_dir, config))
        elif tracker == "wandb":
            opened.append(_wandb(settings, name, config, ids.get("wandb")))
        elif tracker == "mlflow":
            opened.append(_mlflow(settings, name, config, ids.get("mlflow"), out_dir))
        else:
            opened.append(_other(tracker, run_dir, settings, config))
        if opened[-1].id is not None:
            ids[tracker] = opened[-1].id
    if ids:
        with open(path, "w") as f:
            json.dump(ids, f, indent=1)
    return opened
