"""Cross-field checks of a recipe: impossible combinations fail here, naming the key path, before any
process group, device or file is touched."""

from __future__ import annotations

import glob
import os

from acl_dist.config import ConfigError, Recipe

CHOICES = {
    "data.source": ("digits", "toy", "shards"),
    "data.corrupt": ("skip", "raise"),
    "model.g_norm": ("batch", "layer", "instance", "none"),
    "model.d_norm": ("batch", "layer", "instance", "none"),
    "method.prior": ("gaussian", "uniform", "gmm", "categorical"),
    "method.gan_loss": ("minimax", "nonsaturating"),
    "method.gp_kind": ("wgan", "r1", "r2"),
    "method.gp_impl": ("auto", "ref", "fused", "split"),
    "method.fake_source": ("code_generator", "encoder"),
    "method.code_generator": ("mlp", "residual"),
    "method.encoder_code_norm": ("none", "batch"),
    "method.generator_norm_stats": ("all", "sampling_codes"),
    "method.code_loss": ("nonsaturating", "wgan_gp"),
    "train.mixed_precision": ("no", "bf16", "fp16"),
    "train.compile_backend": ("inductor", "aot_eager", "eager"),
    "train.cuda_graphs": ("auto", "always", "never"),
    "train.channels_last": ("auto", "always", "never"),
    "eval.feature_extractor": ("digits-cnn", "inception-v3-compat", "fd-dinov2", "clip"),
    "launch.device": ("auto", "cpu", "cuda"),
}
POSITIVE = ("model.code_dim", "model.base_channels", "model.max_channels", "model.channels", "model.acl_hidden",
            "model.mlp_hidden", "model.num_classes", "method.d_steps", "method.code_d_steps", "method.gp_every",
            "method.prior_modes",
            "train.steps", "train.batch_size", "train.log_every", "train.sample_every", "train.max_bad_steps",
            "eval.num_samples", "eval.batch_size", "eval.kid_subsets", "eval.kid_subset_size",
            "eval.prc_neighborhood", "launch.num_processes", "launch.num_machines",
            "data.toy_modes", "data.toy_samples")
VECTOR_METHODS = ("gan", "wgan_gp", "vae", "aae", "arae", "acl_ae", "acl_gan", "acl_gan_gp")


def _get(recipe: Recipe, path: str):
    section, key = path.split(".")
    return getattr(getattr(recipe, section), key)


def validate(recipe: Recipe) -> None:
    """Raise ConfigError (naming the key path) for the first impossible value or combination."""
    for path, allowed in CHOICES.items():
        if _get(recipe, path) not in allowed:
            raise ConfigError(path, f"{_get(recipe, path)!r} is not one of {', '.join(allowed)}")
    for path in POSITIVE:
        if _get(recipe, path) <= 0:
            raise ConfigError(path, f"must be positive, got {_get(recipe, path)}")
    _check_model(recipe)
    _check_method(recipe)
    _check_data(recipe)
    _check_train(recipe)
    check_metrics(recipe.eval.metrics, recipe.eval.feature_extractor)


def _check_model(recipe: Recipe) -> None:
    res = recipe.model.resolution
    if recipe.data.source != "toy":
        if res < 8 or res > 1024 or res & (res - 1):
            reason = "is not a power of two" if res & (res - 1) else "is outside 8..1024"
            raise ConfigError("model.resolution", f"{res} {reason} (conv nets need a power of two, 8 to 1024)")
    if recipe.model.channels not in (1, 3):
        raise ConfigError("model.channels", f"{recipe.model.channels}: images have 1 or 3 channels")


def _check_method(recipe: Recipe) -> None:
    from acl_dist.methods.base import method_class, method_names

    m = recipe.method
    if m.name not in method_names():
        raise ConfigError("method.name", f"unknown method {m.name!r}; known: {', '.join(method_names())}")
    cls = method_class(m.name)
    if m.gp_weight is not None and m.gp_weight > 0 and not cls.has_image_discriminator:
        critics = [n for n in method_names() if method_class(n).has_image_discriminator]
        raise ConfigError("method.gp_weight", f"{m.name} has no image critic to penalise "
                          f"(methods with one: {', '.join(critics)})")
    gp_on = cls.has_image_discriminator and (m.gp_weight if m.gp_weight is not None
                                             else getattr(cls, "default_gp_weight", 0.0)) > 0
    if gp_on and recipe.model.d_norm == "batch" and recipe.data.source != "toy":
        raise ConfigError("model.d_norm", "batch norm couples the samples of a batch, so a per-sample gradient "
                          "penalty is ill-defined (WGAN-GP sec. 4); use layer, instance or none")
    if m.prior == "categorical" and m.prior_modes > recipe.model.code_dim:
        raise ConfigError("method.prior_modes", f"{m.prior_modes} categories do not fit in model.code_dim "
                          f"{recipe.model.code_dim}")
    if any(k <= 1 for k in m.info_categorical):
        raise ConfigError("method.info_categorical", "every categorical code needs at least 2 categories")
    if m.generator_norm_stats == "sampling_codes" and m.fake_source != "code_generator":
        raise ConfigError("method.generator_norm_stats", "sampling_codes keeps Gx's statistics of Gz(z) codes, "
                          "which no phase feeds Gx under method.fake_source: encoder; use all")
    _check_per_net(recipe)


def _check_per_net(recipe: Recipe) -> None:
    """``optim.lr_per_net`` / ``optim.betas_per_net`` name nets the method has, with sensible values."""
    o, names = recipe.optim, None
    for key, table in (("lr_per_net", o.lr_per_net), ("betas_per_net", o.betas_per_net)):
        for net, value in table.items():
            names = names or _net_names(recipe)
            if net not in names:
                raise ConfigError(f"optim.{key}.{net}", f"{recipe.method.name} has no net {net!r} "
                                  f"(its nets: {', '.join(names)})")
            if key == "betas_per_net" and (len(value) != 2 or not all(0 <= b < 1 for b in value)):
                raise ConfigError(f"optim.betas_per_net.{net}", f"{value}: Adam betas are two numbers in [0, 1)")


def _net_names(recipe: Recipe) -> list[str]:
    from acl_dist.data import data_dim
    from acl_dist.methods.base import build_method

    import torch

    with torch.device("meta"):  # shapes only: no memory, no init cost, whatever the resolution
        return list(build_method(recipe, data_dim(recipe)).nets.keys())


def _check_data(recipe: Recipe) -> None:
    from acl_dist.methods.base import method_class

    d, name = recipe.data, recipe.method.name
    if d.source == "toy" and name not in VECTOR_METHODS:
        raise ConfigError("data.source", f"toy (2-D vector) data needs one of {', '.join(VECTOR_METHODS)}; "
                          f"{name} is image-only")
    if method_class(name).needs_labels and d.source == "toy":
        raise ConfigError("data.source", f"{name} needs class labels; toy data has none")
    if d.source == "shards":
        if not d.shards:
            raise ConfigError("data.shards", "missing: source 'shards' needs a brace pattern, manifest.json "
                              "or pipe: URL pattern")
        _check_local_shards(d.shards)


def _check_local_shards(pattern: str) -> None:
    """Local shard paths must exist now; remote ones (pipe:, http) are checked when the stream opens."""
    if pattern.startswith(("pipe:", "http://", "https://", "s3://", "gs://")):
        return
    if pattern.endswith(".json"):
        if not os.path.isfile(pattern):
            raise ConfigError("data.shards", f"manifest not found: {pattern}")
        return
    try:
        import braceexpand

        paths = list(braceexpand.braceexpand(pattern))
    except ImportError:  # pragma: no cover - braceexpand comes with webdataset
        paths = glob.glob(pattern)
    missing = [p for p in paths if not os.path.isfile(p)]
    if not paths or missing:
        raise ConfigError("data.shards", f"{len(missing) or 'no'} shard file(s) not found, e.g. "
                          f"{(missing or [pattern])[0]}")


def check_metrics(metrics: list[str], extractor: str) -> None:
    """``eval.metrics`` names known metrics, once each, that ``extractor`` can compute (IS needs class logits).

    Shared with ``acl-dist eval --metrics``, which checks the same list the same way.
    """
    from acl_dist.eval.metrics import METRICS, extractor_layers  # torch-fidelity's import, only when checking

    if not metrics:
        raise ConfigError("eval.metrics", f"empty; name at least one of {', '.join(METRICS)}")
    for i, name in enumerate(metrics):
        if name not in METRICS:
            raise ConfigError(f"eval.metrics[{i}]", f"unknown metric {name!r}; known: {', '.join(METRICS)}")
        if name in metrics[:i]:
            raise ConfigError(f"eval.metrics[{i}]", f"{name} is listed twice")
        if name == "isc":
            try:
                extractor_layers(extractor, [name])
            except ValueError as err:
                raise ConfigError(f"eval.metrics[{i}]", f"{err}; eval.feature_extractor is {extractor}") from None


def _check_train(recipe: Recipe) -> None:
    t = recipe.train
    if not 0 <= t.ema < 1:
        raise ConfigError("train.ema", f"{t.ema}: an EMA decay is in [0, 1)")
    if recipe.run.resume not in ("auto", "none") and not os.path.exists(recipe.run.resume):
        raise ConfigError("run.resume", f"checkpoint not found: {recipe.run.resume}")
    if recipe.launch.deepspeed:
        _check_deepspeed(recipe)
    if recipe.train.cuda_graphs == "always":
        _check_cuda_graphs(recipe)


def _check_cuda_graphs(recipe: Recipe) -> None:
    """``always``: what a recipe alone shows cannot be graphed (device and process count are checked at start)."""
    if recipe.train.mixed_precision == "fp16":
        raise ConfigError("train.cuda_graphs", "fp16's GradScaler decides on the host when to skip and "
                          "rescale, which a CUDA graph cannot replay; use train.mixed_precision: bf16 or no")
    if recipe.train.compile:
        raise ConfigError("train.cuda_graphs", "train.compile and train.cuda_graphs are alternatives; pick one")
    if recipe.launch.deepspeed:
        raise ConfigError("train.cuda_graphs", "DeepSpeed engines step on the host; drop launch.deepspeed or "
                          "train.cuda_graphs")


def _check_zero3(recipe: Recipe) -> None:
    """ZeRO-3 releases each parameter's gathered copy after its use in a backward pass, so a gradient penalty's
    second backward through the critic finds empty weights (DeepSpeed issue #3539: ZeRO-3 does not support
    backpropagating twice through one forward). Refuse those configurations here, before any process starts."""
    from acl_dist.methods.base import method_class

    keys = method_class(recipe.method.name).penalty_keys(recipe.method)
    if keys:
        raise ConfigError("launch.deepspeed", f"ZeRO-3 cannot train {recipe.method.name} with its gradient penalty "
                          f"({', '.join(keys)} > 0): the penalty backpropagates twice through the critic, and "
                          "ZeRO-3 frees the gathered weights after the first pass (DeepSpeed issue #3539). Use "
                          "ZeRO-1/2 (launch/deepspeed/zero2.json), which train every method")


def _check_deepspeed(recipe: Recipe) -> None:
    if not os.path.isfile(recipe.launch.deepspeed):
        raise ConfigError("launch.deepspeed", f"DeepSpeed config not found: {recipe.launch.deepspeed}")
    from acl_dist.deepspeed_engines import load_deepspeed_config

    config = load_deepspeed_config(recipe)  # raises ConfigError for sections acl_dist owns
    if config.get("zero_optimization", {}).get("stage", 0) == 3:
        _check_zero3(recipe)
    if recipe.train.mixed_precision == "fp16":
        raise ConfigError("train.mixed_precision", "fp16 needs one GradScaler shared by all phases, which "
                          "DeepSpeed engines do not share; use bf16 under DeepSpeed")
    if recipe.train.compile:
        raise ConfigError("train.compile", "DeepSpeed engines wrap the nets themselves and are not compiled "
                          "here; set train.compile: false under DeepSpeed")
    if recipe.train.channels_last == "always":
        raise ConfigError("train.channels_last", "DeepSpeed engines broadcast parameters as bytes, which needs "
                          "the default memory layout; use train.channels_last: auto or never under DeepSpeed")
