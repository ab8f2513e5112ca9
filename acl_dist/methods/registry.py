"""The method registry: every method class by the name recipes use (``method.name``).

The family modules register their classes with ``@register`` (``methods.base``) as they load; this module
loads them, in an explicit list (no module scanning), so nothing below it imports it back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acl_dist.methods import acl_gan, autoencoders, gan, infogan, r3gan  # noqa: F401  (their @register lines run)
from acl_dist.methods.base import _REGISTRY, Method
from acl_dist.methods.options import MethodOptions

if TYPE_CHECKING:
    from acl_dist.ops.augment_pipe import AugmentPipe
    from acl_dist.sections import ModelConfig


def method_names() -> list[str]:
    return sorted(_REGISTRY)


def method_class(name: str) -> type[Method]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def options_class(name: str) -> type[MethodOptions]:
    """The dataclass a recipe's ``method:`` section becomes for method ``name``."""
    return method_class(name).Options


def build_method(options: MethodOptions, model: ModelConfig, data_dim: int | None = None,
                 augment: AugmentPipe | None = None) -> Method:
    """The method ``options.name`` from its own section, the nets' shapes, the vector size of vector data (None
    for images) and the augmentation pipe its critics see images through (built once by the trainer)."""
    return method_class(options.name)(options, model, data_dim, augment)
