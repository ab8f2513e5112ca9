"""Loading a recipe: YAML, ``key=value`` overrides, the method's and the data source's options classes, and
validation.

The schema itself (one dataclass per section) is :mod:`acl_dist.sections`; this module puts a recipe together
from a file and the command line and checks it (:mod:`acl_dist.validation`), so a recipe that loads is one that
can run: an unknown key, a value of the wrong type or an impossible combination raises :class:`ConfigError`
naming the key path (``model.resolution: 96 is not a power of two``), before any process group, device or
file is touched.
"""

from __future__ import annotations

import os

import yaml

from acl_dist.data.options import DataOptions  # the data: section's base (re-exported)
from acl_dist.data.sources import source_class, source_names
from acl_dist.errors import ConfigError  # noqa: F401  (re-exported: recipes and tools import it from here)
from acl_dist.methods.registry import method_names, options_class
from acl_dist.sections import (  # the schema's names, re-exported for users of this module
    EvalConfig,
    LaunchConfig,
    LogConfig,
    ModelConfig,
    OptimConfig,
    Recipe,
    RunConfig,
    TrainConfig,
    build_recipe,
    to_dict,
)
from acl_dist.validation import validate

__all__ = ["ConfigError", "DataOptions", "EvalConfig", "LaunchConfig", "LogConfig", "ModelConfig", "OptimConfig",
           "Recipe", "RunConfig", "TrainConfig", "apply_override", "dump_recipe", "find_recipe", "load_recipe",
           "recipe_from_dict", "to_dict"]


def _option_classes() -> tuple[dict[str, type], dict[str, type]]:
    """{name: options class} of every method and every data source."""
    return ({name: options_class(name) for name in method_names()},
            {name: source_class(name).Options for name in source_names()})


def recipe_from_dict(data: dict, strict: bool = True) -> Recipe:
    """A Recipe from plain data (a checkpoint's saved recipe), not validated; ``strict=False`` drops method and
    data options the chosen method or source does not have (older checkpoints saved every one's options)."""
    return build_recipe(data, *_option_classes(), strict=strict)


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``a.b.c=value`` override in place; the value is parsed as YAML (``lr=1e-4``, ``flip=true``)."""
    if "=" not in assignment:
        raise ConfigError(assignment, "an override must look like key.path=value")
    key_path, raw = assignment.split("=", 1)
    keys = key_path.strip().split(".")
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(keys[: i + 1]), "is a value, not a section")
        node = child
    value = yaml.safe_load(raw) if raw.strip() else ""
    node[keys[-1]] = value


YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it (10x faster:
# the reports resolve hundreds of recipes), with the safe loader's types either way


def read_yaml(stream):
    """``yaml.safe_load`` through ``YAML_LOADER``."""
    return yaml.load(stream, Loader=YAML_LOADER)


SHIPPED = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes"),  # inside an installed wheel
           os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")]  # a checkout


def find_recipe(spec: str) -> str:
    """The file ``spec`` names: a path, or a shipped recipe by name (``digits/gan``, ``digits/gan.yaml`` or
    ``recipes/digits/gan.yaml`` from any directory, in a checkout or an installed package).

    Raises:
        ConfigError: no such file and no shipped recipe of that name.
    """
    if os.path.isfile(spec):
        return spec
    name = spec.removeprefix("recipes/")
    for folder in SHIPPED:
        for candidate in (name, f"{name}.yaml"):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
    raise ConfigError("recipe", f"file not found: {spec} (nor a shipped recipe of that name, such as digits/gan)")


def load_recipe(path: str | None, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load a YAML recipe (a path or a shipped name, :func:`find_recipe`), apply overrides, validate. Raises
    ConfigError naming the key path."""
    data: dict = {}
    if path is not None:
        path = find_recipe(path)
        with open(path) as f:
            try:
                data = read_yaml(f) or {}
            except yaml.YAMLError as err:
                raise ConfigError("recipe", f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError("recipe", f"{path}: expected a mapping of sections, got {type(data).__name__}")
    for assignment in overrides:
        apply_override(data, assignment)
    recipe = recipe_from_dict(data)
    validate(recipe)
    return recipe


def dump_recipe(recipe: Recipe) -> str:
    """YAML text of the resolved recipe."""
    return yaml.safe_dump(to_dict(recipe), sort_keys=False)

