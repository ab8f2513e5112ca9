"""The names a recipe may give the evaluation, and what each extractor can compute: a light registry.

Why a module of its own: validating a recipe needs these names, not the extractors and metrics themselves,
which import torch-fidelity and build networks; ``acl_dist.config.load_recipe`` imports only this.
``tests/unit/test_extractors.py`` keeps the table equal to what the extractors report.
"""

from __future__ import annotations

DIGITS_CNN = "digits-cnn"
MNIST_CNN = "mnist-cnn"
MNIST_LENET = "mnist-lenet"  # MNIST-5k's second feature space: another architecture and seed than mnist-cnn's
INCEPTION = "inception-v3-compat"
DINOV2 = "fd-dinov2"
CLIP = "clip"
EXTRACTORS = (DIGITS_CNN, MNIST_CNN, MNIST_LENET, INCEPTION, DINOV2, CLIP)  # eval.feature_extractor
METRICS = ("fid", "kid", "isc", "prc")  # the names `eval.metrics` and `--metrics` take
WITH_CLASS_LOGITS = (DIGITS_CNN, MNIST_CNN, MNIST_LENET, INCEPTION)  # the extractors the Inception Score can use


def metric_problem(metric: str, extractor: str) -> str | None:
    """Why ``extractor`` cannot compute ``metric`` (None: it can)."""
    if metric == "isc" and extractor not in WITH_CLASS_LOGITS:
        return (f"isc needs class logits, which {extractor} does not have "
                f"({' and '.join(WITH_CLASS_LOGITS[:-1])} and {WITH_CLASS_LOGITS[-1]} do)")
    return None
