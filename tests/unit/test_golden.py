"""Refactors change no number a user computes: every method's first steps from a fixed seed equal the
golden run recorded before the refactor (tests/golden/make_golden.py, at the commit before issue 13's).

Parameters, EMA copies and every logged metric are compared bit for bit on the machine and torch build that
wrote the golden file. Elsewhere (another CPU model takes other vectorised kernels, which round differently)
they are compared to a relative 1e-4: still far below what any change of logic moves.
"""

from __future__ import annotations

import os

import pytest
import torch

from tests.golden.make_golden import CONFIGS, machine, run

GOLDEN = torch.load(os.path.join(os.path.dirname(os.path.dirname(__file__)), "golden", "steps.pt"),
                    weights_only=True)


def _same(a: torch.Tensor, b: torch.Tensor, exact: bool) -> bool:
    if exact or not a.is_floating_point():
        return torch.equal(a, b)
    return torch.allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_steps_equal_the_golden_run(name, tmp_path):
    exact = GOLDEN["machine"] == machine()
    golden, now = GOLDEN["runs"][name], run(name, str(tmp_path))
    assert set(now["nets"]) == set(golden["nets"])
    for key, value in golden["nets"].items():
        assert _same(now["nets"][key], value, exact), f"{name}: {key} ({'exact' if exact else 'rtol 1e-4'})"
    for net, tensors in golden["ema"].items():
        for key, value in tensors.items():
            assert _same(now["ema"][net][key], value, exact), f"{name}: ema {net}.{key}"
    assert [set(row) for row in now["metrics"]] == [set(row) for row in golden["metrics"]]
    for got, want in zip(now["metrics"], golden["metrics"]):
        for key, value in want.items():
            assert got[key] == value if exact else got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (name, key)
