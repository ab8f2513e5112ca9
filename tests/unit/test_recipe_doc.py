"""docs/recipe.md is the schema's comments, rendered: it must be what scripts/recipe_doc.py writes now."""

from __future__ import annotations

import importlib.util
import os

from tests.conftest import REPO


def _script():
    spec = importlib.util.spec_from_file_location("recipe_doc", os.path.join(REPO, "scripts", "recipe_doc.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_reference_is_current():
    with open(os.path.join(REPO, "docs", "recipe.md")) as f:
        assert f.read() == _script().render(), "docs/recipe.md is out of date: run python scripts/recipe_doc.py"


def test_every_field_of_every_section_is_documented():
    """A field without a comment would be a row without a meaning."""
    text = _script().render()
    undocumented = [line for line in text.splitlines() if line.startswith("| `") and line.endswith("|  |")]
    assert not undocumented, undocumented


def test_every_section_of_the_recipe_has_its_part():
    import dataclasses

    from acl_dist.sections import Recipe

    text = _script().render()
    for f in dataclasses.fields(Recipe):
        assert f"## `{f.name}:`" in text, f.name  # log: was missing while its keys were hard-coded
