"""The ablation's runs are what its report says: every variant is a valid recipe setting every attachment
option the method has, and a change alone differs from the paper attachment in exactly that change."""

from __future__ import annotations

import os

import pytest

from acl_dist.config import load_recipe
from repro import ablation
from tests.conftest import REPO


def _recipe(job):
    return load_recipe(os.path.join(REPO, job.recipe), job.overrides)


@pytest.mark.parametrize("budget", ["tiny", "full"])
def test_every_job_is_a_valid_recipe(budget):
    for job in ablation.jobs_for(budget):
        _recipe(job)


@pytest.mark.parametrize("method", list(ablation.BASES))
def test_a_change_alone_differs_from_the_paper_attachment_in_that_change_only(method):
    variants = ablation.variants(method)
    paper = variants["paper"]
    for name, (_, overrides, methods) in ablation.CHANGES.items():
        if method not in methods:
            assert name not in variants
            continue
        changed = {k for k, v in variants[name].items() if paper.get(k) != v}
        assert changed == set(overrides), (method, name)
    assert set(variants["all"]) == set(paper)
