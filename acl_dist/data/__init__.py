"""Data: the training sources a run reads (``data.source``: :mod:`acl_dist.data.sources`), the shard writer and
its inputs (``acl-dist shard``: :mod:`~acl_dist.data.shards`, :mod:`~acl_dist.data.shard_inputs`), video."""
