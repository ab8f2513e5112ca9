"""Methods: one file per family (``gan``, ``autoencoders``, ``infogan``, ``acl_gan``), each a set of nets and
update phases registered under its recipe name; ``registry`` finds them by name, ``options`` holds the option
groups they share. This file imports nothing, so the recipe schema can read ``options`` without loading the
nets (``from acl_dist.methods.registry import build_method``)."""
