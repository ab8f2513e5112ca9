"""Evaluation: distributed FID on torch-fidelity's extractors, a shipped digits extractor, Parzen windows,
picture grids, videos and FID curves.

Only sufficient statistics cross the network (see :mod:`acl_dist.eval.fid`), so an evaluation costs the same
per rank on 1 or 1000 ranks. Importing :mod:`acl_dist.eval.extractors` registers ``digits-cnn`` with
torch-fidelity, so ``torch_fidelity.calculate_metrics(feature_extractor="digits-cnn")`` works too.
"""
