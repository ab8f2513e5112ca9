"""A recipe's checks: each component's own (``MethodOptions.check``, ``DataOptions.check`` and its source's), then
what spans sections, in one place beside the schema. Impossible values and combinations fail here, naming the
key path, before any process group, device or file is touched. Capability rules that the trainer applies again
at start (CUDA graphs, channels-last, DeepSpeed stages) are written once, in :mod:`acl_dist.rules`.
"""

from __future__ import annotations

import os

from acl_dist import rules
from acl_dist.data.sources import source_class
from acl_dist.errors import ConfigError
from acl_dist.eval.names import EXTRACTORS, METRICS, metric_problem
from acl_dist.methods.registry import method_class, method_names
from acl_dist.sections import Recipe, declared_problems


def _get(recipe: Recipe, path: str):
    section, key = path.split(".")
    return getattr(getattr(recipe, section), key)


def validate(recipe: Recipe) -> None:
    """Raise ConfigError (naming the key path) for the first impossible value or combination."""
    for path, problem in declared_problems(recipe):  # what the schema's fields declare (choice, positive)
        raise ConfigError(path, problem)
    if recipe.eval.feature_extractor not in EXTRACTORS:  # the component's registry names them
        raise ConfigError("eval.feature_extractor", f"{recipe.eval.feature_extractor!r} is not one of "
                          f"{', '.join(EXTRACTORS)}")
    _check_second_extractor(recipe.eval)
    _check_data(recipe)
    _check_model(recipe)
    _check_method(recipe)
    _check_train(recipe)
    _check_log(recipe)
    check_metrics(recipe.eval.metrics, recipe.eval.feature_extractor)


def _check_second_extractor(cfg) -> None:
    """A second feature space is another known extractor, for FID or KID (what it computes)."""
    second = cfg.second_extractor
    if not second:
        return
    if second not in EXTRACTORS:
        raise ConfigError("eval.second_extractor", f"{second!r} is not one of {', '.join(EXTRACTORS)}")
    if second == cfg.feature_extractor:
        raise ConfigError("eval.second_extractor", f"{second!r} is eval.feature_extractor already; a second "
                          "feature space must be another extractor")
    if not {"fid", "kid"} & set(cfg.metrics):
        raise ConfigError("eval.second_extractor", f"it computes FID and KID, and eval.metrics {cfg.metrics} asks "
                          "for neither")


def _check_log(recipe: Recipe) -> None:
    """Known trackers, once each, whose libraries are installed (else one line naming the extra to install)."""
    trackers = recipe.log.trackers
    for i, name in enumerate(trackers):
        if name not in rules.TRACKERS:
            raise ConfigError(f"log.trackers[{i}]", f"unknown tracker {name!r}; known: {', '.join(rules.TRACKERS)}")
        if name in trackers[:i]:
            raise ConfigError(f"log.trackers[{i}]", f"{name} is listed twice")
        install = rules.missing_tracker_library(name)
        if install:
            raise ConfigError(f"log.trackers[{i}]", f"{name} is not installed: {install}")
    if recipe.log.wandb_mode not in ("", "online", "offline", "disabled"):
        raise ConfigError("log.wandb_mode", f"{recipe.log.wandb_mode!r} is not one of online, offline, disabled")


def vector_data(recipe: Recipe) -> bool:
    """Whether the recipe's source yields vectors (the 2-D toys) rather than images."""
    return source_class(recipe.data.source).data_dim is not None


def _check_model(recipe: Recipe) -> None:
    res = recipe.model.resolution
    if not vector_data(recipe):
        if res < 8 or res > 1024 or res & (res - 1):
            reason = "is not a power of two" if res & (res - 1) else "is outside 8..1024"
            raise ConfigError("model.resolution", f"{res} {reason} (conv nets need a power of two, 8 to 1024)")
    if recipe.model.channels not in (1, 3):
        raise ConfigError("model.channels", f"{recipe.model.channels}: images have 1 or 3 channels")
    o = recipe.optim
    if not 0 < o.lr_decay_to <= 1:
        raise ConfigError("optim.lr_decay_to", f"{o.lr_decay_to}: a fraction of the learning rate in (0, 1]")
    if o.beta2_final is not None and not 0 <= o.beta2_final < 1:
        raise ConfigError("optim.beta2_final", f"{o.beta2_final}: an Adam beta2 is in [0, 1)")


def _check_method(recipe: Recipe) -> None:
    """The method's own options (``Options.check``), then what they must agree on with other sections."""
    m = recipe.method
    m.check()
    cls = method_class(m.name)
    image_penalty = bool({"method.gp_weight", "method.gamma"} & set(cls.penalty_keys(m)))  # code critics: no norms
    if image_penalty and recipe.model.d_norm == "batch" and not vector_data(recipe):
        raise ConfigError("model.d_norm", "batch norm couples the samples of a batch, so a per-sample gradient "
                          "penalty is ill-defined (WGAN-GP sec. 4); use layer, instance or none")
    if m.prior == "categorical" and m.prior_modes > recipe.model.code_dim:
        raise ConfigError("method.prior_modes", f"{m.prior_modes} categories do not fit in model.code_dim "
                          f"{recipe.model.code_dim}")
    _check_per_net(recipe, cls.net_names)


def _check_per_net(recipe: Recipe, names: tuple[str, ...]) -> None:
    """``optim.lr_per_net`` / ``optim.betas_per_net`` name nets the method has (declared by its class, so
    nothing is built to know them), with sensible values."""
    o = recipe.optim
    for key, table in (("lr_per_net", o.lr_per_net), ("betas_per_net", o.betas_per_net)):
        for net, value in table.items():
            if net not in names:
                raise ConfigError(f"optim.{key}.{net}", f"{recipe.method.name} has no net {net!r} "
                                  f"(its nets: {', '.join(names)})")
            if key == "betas_per_net" and (len(value) != 2 or not all(0 <= b < 1 for b in value)):
                raise ConfigError(f"optim.betas_per_net.{net}", f"{value}: Adam betas are two numbers in [0, 1)")


def _check_data(recipe: Recipe) -> None:
    """The source's own options, then what the method needs of the data (images, labels)."""
    d, name = recipe.data, recipe.method.name
    d.check()
    source = source_class(d.source)
    source.check(d, recipe.model.resolution, recipe.model.channels)
    method = method_class(name)
    if source.data_dim is not None and method.images_only:
        vector = [n for n in method_names() if not method_class(n).images_only]
        raise ConfigError("data.source", f"{d.source} gives {source.data_dim}-d vectors, which need one of "
                          f"{', '.join(vector)}; {name} is image-only")
    if method.needs_labels and not source.labelled:
        raise ConfigError("data.source", f"{name} needs class labels; {d.source} data has none")
    if d.ada_target and not method.ada_feedback:
        shown = [n for n in method_names() if method_class(n).ada_feedback]
        raise ConfigError("data.ada_target", f"ADA adapts to the critic's scores of real images, which {name}'s loss "
                          f"does not report ({', '.join(shown)} do); schedule the probability with data.augment_p")


def check_metrics(metrics: list[str], extractor: str) -> None:
    """``eval.metrics`` names known metrics, once each, that ``extractor`` can compute (IS needs class logits).

    Shared with ``acl-dist eval --metrics``, which checks the same list the same way.
    """
    if not metrics:
        raise ConfigError("eval.metrics", f"empty; name at least one of {', '.join(METRICS)}")
    for i, name in enumerate(metrics):
        if name not in METRICS:
            raise ConfigError(f"eval.metrics[{i}]", f"unknown metric {name!r}; known: {', '.join(METRICS)}")
        if name in metrics[:i]:
            raise ConfigError(f"eval.metrics[{i}]", f"{name} is listed twice")
        problem = metric_problem(name, extractor)
        if problem:
            raise ConfigError(f"eval.metrics[{i}]", f"{problem}; eval.feature_extractor is {extractor}")


def _check_train(recipe: Recipe) -> None:
    for key in ("ema_halflife_images", "schedule_images"):
        if getattr(recipe.train, key) < 0:
            raise ConfigError(f"train.{key}", f"{getattr(recipe.train, key)}: images are 0 or more")
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
    why = rules.cuda_graph_conflict(recipe)
    if why:
        raise ConfigError("train.cuda_graphs", f"always cannot be honoured: {why}")


def _check_deepspeed(recipe: Recipe) -> None:
    if not os.path.isfile(recipe.launch.deepspeed):
        raise ConfigError("launch.deepspeed", f"DeepSpeed config not found: {recipe.launch.deepspeed}")
    config = rules.load_deepspeed_config(recipe)  # raises ConfigError for sections acl_dist owns
    conflict = rules.deepspeed_conflict(recipe, config.get("zero_optimization", {}).get("stage", 0))
    if conflict:
        raise ConfigError(*conflict)
