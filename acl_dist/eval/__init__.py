"""Evaluation: FID, KID, Inception Score and precision/recall on any number of processes, on torch-fidelity's
extractors and a shipped digits extractor; Parzen windows, picture grids, videos and metric curves.

FID crosses the network as sufficient statistics only (see :mod:`acl_dist.eval.fid`), so it costs the same per
rank on 1 or 1000 ranks; KID, precision/recall and IS need the features or logits themselves, gathered to
rank 0 alone (see :mod:`acl_dist.eval.metrics`). Importing :mod:`acl_dist.eval.extractors` registers
``digits-cnn``, ``mnist-cnn``, ``fd-dinov2`` and ``clip`` with torch-fidelity, so
``torch_fidelity.calculate_metrics(feature_extractor="digits-cnn")`` works too.
"""
