"""The recipe's schema: one typed dataclass per section, and strict building from plain data.

A recipe is YAML holding values; the dataclasses here are its schema, every field with a comment saying what it
means (``docs/recipe.md`` is generated from them). Building is strict: an unknown key or a value of the wrong
type raises :class:`ConfigError` naming the key path. The ``method:`` section is the method's own options class
(``Method.Options``, beside the method's phases) and the ``data:`` section the source's: the components declare
those sections' base classes (``methods/options.py``, ``data/options.py``) and register them here
(``register_chosen_section``); which class a name stands for is the loader's business (``acl_dist.config``). So
nothing here imports a component: the schema gathers the sections components fill in.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from acl_dist.errors import ConfigError


def choice(default: str, *others: str) -> Any:
    """A string field taking one of ``default, *others``: validation refuses any other value, naming its key."""
    return field(default=default, metadata={"choices": (default, *others)})


def positive(default: int) -> Any:
    """An integer field that must be positive: validation refuses 0 and below, naming its key."""
    return field(default=default, metadata={"positive": True})


def declared_problems(recipe: Any) -> list[tuple[str, str]]:
    """(key path, what is wrong) for every value outside what its field declares (``choice``, ``positive``), in
    the fixed sections (the chosen ones, ``method:`` and ``data:``, check themselves)."""
    out = []
    for section in dataclasses.fields(recipe):
        if section.name in CHOSEN_BY:
            continue
        values = getattr(recipe, section.name)
        for f in dataclasses.fields(values):
            value, path = getattr(values, f.name), f"{section.name}.{f.name}"
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                out.append((path, f"{value!r} is not one of {', '.join(f.metadata['choices'])}"))
            if f.metadata.get("positive") and value <= 0:
                out.append((path, f"must be positive, got {value}"))
    return out


# Sections whose schema one of their keys chooses: ``method.name`` (the method's options class) and ``data.source``
# (the source's). Their base classes are registered by the components that declare them.
CHOSEN_BY = {"method": "name", "data": "source"}
_CHOSEN_BASES: dict[str, type] = {}


def register_chosen_section(section: str, base: type) -> None:
    """A component declares the base options class of a chosen section (``CHOSEN_BY``)."""
    if section not in CHOSEN_BY:
        raise ValueError(f"{section!r} is not a chosen section ({', '.join(CHOSEN_BY)})")
    _CHOSEN_BASES[section] = base


def chosen_base(section: str) -> type:
    """The registered base options class of ``section`` (its fields: what every choice has)."""
    if section not in _CHOSEN_BASES:
        raise RuntimeError(f"no options class is registered for the {section}: section; import acl_dist.config, "
                           "which loads the components that declare it")
    return _CHOSEN_BASES[section]


@dataclass
class RunConfig:
    """Where a run writes and how it starts."""

    name: str = "run"  # run directory name under out_dir
    out_dir: str = "runs"  # parent folder of run directories
    seed: int = 0  # seeds nets, noise and the data order; each rank derives its own stream from it
    resume: str = "auto"  # "auto": newest complete checkpoint in the run dir; "none"; or a checkpoint path


@dataclass
class ModelConfig:
    """Network shapes. Images: DCGAN-style or R3GAN conv nets; toy data: MLPs."""

    arch: str = choice("dcgan", "r3gan")  # image nets: dcgan (conv, transposed conv, norms); r3gan (residual, no
    # norms; nets/r3gan.py)
    resolution: int = 32  # image side, a power of two from 8 to 1024 (ignored for toy data)
    channels: int = positive(1)  # image channels (1 for digits/MNIST, 3 for RGB)
    code_dim: int = positive(32)  # d: code and noise dimension (d_c = d_z = d, as in the ACL paper)
    base_channels: int = positive(64)  # channels of the highest-resolution conv layer
    max_channels: int = positive(512)  # cap of the doubling channel schedule
    g_norm: str = choice("batch", "layer", "instance", "none")  # generator/decoder norm
    d_norm: str = choice("layer", "batch", "instance", "none")  # discriminator/encoder norm (no batch norm
    # under a penalty)
    spectral_norm: bool = False  # spectral norm on discriminator layers
    acl_hidden: int = positive(256)  # width of the ACL module's MLPs (Gz, Dc)
    acl_layers: int = 2  # hidden layers of the ACL module's MLPs (paper: 2-layer MLPs)
    mlp_hidden: int = positive(128)  # width of the MLP nets used for 2-D toy data
    num_classes: int = positive(10)  # classes for the acl_sgan classifier
    checkpoint_activations: bool = False  # recompute conv-block activations in backward to save memory
    r3gan_blocks: int = positive(2)  # arch=r3gan: residual blocks per resolution
    r3gan_expansion: int = positive(2)  # arch=r3gan: inverted bottleneck's widening of each block
    r3gan_group_width: int = positive(16)  # arch=r3gan: channels per group of each block's 3x3 conv


@dataclass
class OptimConfig:
    """Adam for every trained net; per-net learning rates override the default."""

    lr: float = 2e-4  # default learning rate (DCGAN: 2e-4)
    beta1: float = 0.5  # Adam beta1 (DCGAN: 0.5; WGAN-GP: 0.0)
    beta2: float = 0.999  # Adam beta2 (WGAN-GP: 0.9)
    weight_decay: float = 0.0  # Adam's L2 weight decay on every trained net (0: none)
    lr_per_net: dict[str, float] = field(default_factory=dict)  # e.g. {D: 4e-4}
    betas_per_net: dict[str, list[float]] = field(default_factory=dict)  # e.g. {Gz: [0.5, 0.9]}: Adam betas of one net
    grad_clip: float = 0.0  # clip each phase's gradient norm to this; 0 disables
    lr_decay_to: float = 1.0  # each net's learning rate moves from its own value to this fraction of it over the
    # schedule's horizon (train.schedule_images; R3GAN decays it), then holds; 1.0: constant
    beta2_final: float | None = None  # Adam beta2 moves from its own value to this over the horizon (R3GAN raises
    # it), then holds; None: constant
    schedule: str = choice("cosine", "linear")  # the shape of lr_decay_to and beta2_final over the horizon
    # (R3GAN as published: linear)


@dataclass
class TrainConfig:
    """The loop: length, batch, precision, EMA and what is written when."""

    steps: int = positive(1000)  # generator steps (one step runs every phase once, D phases d_steps times)
    batch_size: int = positive(64)  # per process; the global batch is this times the number of processes
    mixed_precision: str = choice("no", "bf16", "fp16")  # fp16 uses one GradScaler shared by all phases
    ema: float = 0.999  # EMA decay of the sampling nets; 0 disables
    ema_start: int = 0  # steps before the EMA starts tracking (it copies the nets until then)
    ema_halflife_images: int = 0  # > 0: the EMA's half-life in images (not train.ema), ramped linearly from 0 to
    # this over train.schedule_images (stylegan2-ada's and R3GAN's EMA; decay 0.5 ** (global batch / half-life))
    schedule_images: int = 0  # the horizon of every schedule (lr, beta2, R3GAN's gamma, the EMA ramp) in images
    # over the whole batch (batch_size x processes a step), so a recipe means the same at any batch and process
    # count; they run to it and then hold; 0: the run's own length
    log_every: int = positive(50)  # metrics line (JSONL + TensorBoard) every N steps
    sample_every: int = positive(500)  # PNG sample grid every N steps (and at the end)
    ckpt_every: int = 1000  # checkpoint every N steps (and at the end); 0: only at the end
    keep_checkpoints: int = 2  # complete checkpoints kept (newest first), besides best-FID
    max_bad_steps: int = positive(10)  # stop after this many non-finite losses in a row
    progress: bool = True  # progress bar on rank 0
    compile: bool = False  # torch.compile the nets (penalty double backwards stay eager)
    compile_backend: str = choice("inductor", "aot_eager", "eager")  # torch.compile backend
    channels_last: str = choice("auto", "always", "never")  # NHWC conv nets; auto = on the CPU (1.2x there), not CUDA
    cuda_graphs: str = choice("auto", "always", "never")  # replay each step from a CUDA graph (training/cuda_graphs.py)


@dataclass
class LogConfig:
    """Where rank 0 sends metrics besides RUN/metrics.jsonl: scalars every log tick, the recipe as the run's
    config, sample grids and the evaluation plot as images; a resumed run continues the same tracker run."""

    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])  # any of accelerate's: tensorboard,
    # wandb, mlflow (extras: pip install acl_dist[wandb] / acl_dist[mlflow]), aim, comet_ml, clearml, dvclive,
    # swanlab, trackio (their own packages); [] = metrics.jsonl only
    project: str = ""  # the wandb project / MLflow experiment; empty: the environment's WANDB_PROJECT /
    # MLFLOW_EXPERIMENT_NAME, else acl_dist (a value set here wins over the environment)
    mlflow_uri: str = ""  # MLflow tracking URI; empty: MLFLOW_TRACKING_URI, else sqlite <run.out_dir>/mlflow.db
    wandb_mode: str = ""  # online | offline | disabled; empty: WANDB_MODE, else online (wandb writes under
    # WANDB_DIR if set, else the run directory)


@dataclass
class EvalConfig:
    """Evaluation during training and in `acl-dist eval`."""

    every: int = 0  # evaluate every N steps (0: never during training)
    metrics: list[str] = field(default_factory=lambda: ["fid"])  # fid | kid | isc (needs class logits) | prc
    num_samples: int = positive(2000)  # generated samples per evaluation (split across ranks)
    feature_extractor: str = "digits-cnn"  # digits-cnn, mnist-cnn, mnist-lenet (shipped) | inception-v3-compat |
    # fd-dinov2 | clip
    feature_extractor_weights_path: str = ""  # Inception/DINOv2/CLIP weights file; else torch hub cache; no download
    second_extractor: str = ""  # also FID/KID in this extractor's features, from the same samples (second_fid, ...):
    # a second feature space a verdict must hold in; its shipped or hub-cache weights; "" none
    kid_subsets: int = positive(100)  # KID: random subsets averaged (torch-fidelity's default)
    kid_subset_size: int = positive(1000)  # KID: samples per subset, capped at the smaller sample count
    prc_neighborhood: int = positive(3)  # precision/recall: k of the k-nearest-neighbour balls (torch-fidelity's
    # default)
    batch_size: int = positive(100)  # generation/extraction batch per rank
    parzen: bool = False  # also Parzen-window log-likelihood (GAN paper)
    bn_recalibration: int = 0  # batches of samples re-estimating sampling nets' batch norms before grids/FID; 0: off


@dataclass
class LaunchConfig:
    """How many processes; `acl-dist train` re-launches itself through accelerate when this asks for more."""

    num_processes: int = positive(1)  # processes on this machine
    num_machines: int = positive(1)  # machines (nodes); >1 normally comes from SLURM
    device: str = choice("auto", "cpu", "cuda")  # auto: cuda if available
    deepspeed: str = ""  # path of a DeepSpeed JSON config (launch/deepspeed/zero2.json); empty: plain DDP
    accelerate_config: str = ""  # accelerate config file passed to `accelerate launch`
    process_group: str = choice("auto", "gloo")  # auto: NCCL on GPUs, gloo on CPUs; gloo: processes may share a GPU
    # (slower)


@dataclass
class Recipe:
    """A whole recipe: one section per concern."""

    run: RunConfig = field(default_factory=RunConfig)
    data: Any = field(default_factory=lambda: chosen_base("data")())  # the source's options (a DataOptions)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: Any = field(default_factory=lambda: chosen_base("method")())  # the method's options (a MethodOptions)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)

    @property
    def run_dir(self) -> str:
        return os.path.join(self.run.out_dir, self.run.name)


# ----------------------------------------------------------------------------------------------------------
# Building dataclasses from plain data, strictly.


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check (and where lossless, convert) one value against a type hint."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, path)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(path, f"expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {value!r}")
        key_t, val_t = typing.get_args(tp)
        return {_coerce(k, key_t, path): _coerce(v, val_t, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string; accept what float() reads
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(path, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):  # YAML 1.1 reads a bare `no` (train.mixed_precision: no) as False
            return "no" if value is False else "yes"
        raise ConfigError(path, f"expected a string, got {value!r}")
    raise ConfigError(path, f"unsupported type {_type_name(tp)}")


def chosen_section(section: str, data: Any, classes: Mapping[str, type], strict: bool = True) -> Any:
    """The ``section`` built into the options class its key names (``classes``: {name: class}).

    A key the chosen class does not read is an error naming it, so it cannot be silently ignored. ``strict=False``
    drops such keys instead: recipes stored in checkpoints of older versions held every method's options (and
    every source's) in one flat section.
    """
    key, base = CHOSEN_BY[section], chosen_base(section)
    data = dict(data or {})
    name = data.get(key, getattr(base, key))
    if name not in classes:
        raise ConfigError(f"{section}.{key}", f"unknown {section} {name!r}; known: {', '.join(sorted(classes))}")
    cls = classes[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown and strict:
        raise ConfigError(f"{section}.{unknown[0]}", f"{name} has no option {unknown[0]!r}, so it would be "
                          f"ignored (its options: {', '.join(sorted(known - {key}))})")
    return build_dataclass(cls, {k: v for k, v in data.items() if k in known}, section)


# Keys earlier versions had, and where their setting lives now (a recipe written for them gets this in its error)
MOVED = {"train.tensorboard": "set log.trackers: [tensorboard] (true) or [] (false)"}


def build_dataclass(cls: type, data: Any, path: str = "", strict: bool = True) -> Any:
    """Build ``cls`` from a mapping; unknown keys (dropped with ``strict=False``: a key older versions had) and
    wrong types raise ConfigError naming the key path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path or "recipe", f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            if not strict:
                continue
            if key_path in MOVED:
                raise ConfigError(key_path, f"this key has moved: {MOVED[key_path]}")
            raise ConfigError(key_path, f"unknown key (known: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(value, hints[key], key_path)
    return cls(**kwargs)


def build_recipe(data: dict, methods: Mapping[str, type], sources: Mapping[str, type], strict: bool = True
                 ) -> Recipe:
    """A Recipe from plain data: the fixed sections as they are, ``method`` and ``data`` into the classes their
    names choose (``methods``, ``sources``: {name: options class}). ``strict=False`` drops keys this version
    does not have (a recipe saved by an older one) instead of refusing them."""
    data = dict(data)
    chosen = {section: data.pop(section, {}) for section in CHOSEN_BY}
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(data) - set(fields))
    if unknown and strict:
        raise ConfigError(unknown[0], f"unknown key (known: {', '.join(sorted(fields))})")
    recipe = Recipe(**{name: build_dataclass(typing.get_type_hints(Recipe)[name], value, name, strict)
                       for name, value in data.items() if name in fields})
    recipe.method = chosen_section("method", chosen["method"], methods, strict)
    recipe.data = chosen_section("data", chosen["data"], sources, strict)
    return recipe


def to_dict(recipe: Recipe) -> dict:
    """The resolved recipe as plain data (what is written into the run directory), the method's name and the
    data source first."""
    data = dataclasses.asdict(recipe)
    for section, key in CHOSEN_BY.items():
        data[section] = {key: data[section].pop(key), **data[section]}
    return data


