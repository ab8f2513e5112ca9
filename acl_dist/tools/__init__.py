"""The tools' floor beside ``cli.py`` and ``api.py``: what works on a finished run or on raw data, above the
trainer and the libraries it uses: ``run_loading`` (a run's nets from its newest checkpoint), ``sample_eval``
(`acl-dist sample` and `acl-dist eval`), ``shard`` (`acl-dist shard`). Nothing below this floor imports it.
"""
