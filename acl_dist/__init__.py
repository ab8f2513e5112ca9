"""acl_dist: adversarial image generators, the Adversarial Code Learning (ACL) family first, from one CPU core
to multi-node GPU clusters. See docs/architecture.md for the map.

The Python API (``acl_dist.load_recipe``, ``acl_dist.train``, ``acl_dist.load_run``: :mod:`acl_dist.api`) is
imported on first use, so importing a part of the package does not load the trainer.
"""

__version__ = "0.1.0"
_API = ("load_recipe", "train", "load_run")


def __getattr__(name: str):
    if name in _API:
        from acl_dist import api

        return getattr(api, name)
    raise AttributeError(f"module 'acl_dist' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
