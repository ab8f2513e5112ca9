"""Methods: one file per family, each method registered under its recipe name."""

from acl_dist.methods.base import Method, Phase, StepContext, build_method, method_class, method_names

__all__ = ["Method", "Phase", "StepContext", "build_method", "method_class", "method_names"]
