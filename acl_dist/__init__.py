"""acl_dist: adversarial image generators, the Adversarial Code Learning (ACL) family first, from one CPU core
to multi-node GPU clusters. See DESIGN.md for the map."""

__version__ = "0.1.0"
