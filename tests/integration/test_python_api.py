"""docs/python_api.md runs: its Python blocks, in order, in one namespace, in an empty directory (as a notebook
would), with what they print checked."""

from __future__ import annotations

import contextlib
import io
import os
import re

from tests.conftest import REPO


def test_the_python_api_page_runs_as_written(tmp_path, monkeypatch):
    with open(os.path.join(REPO, "docs", "python_api.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, "docs/python_api.md", "exec"), namespace)  # noqa: S102  (our own docs page)
    lines = [line for line in out.getvalue().splitlines() if "[WARNING]" not in line]  # DeepSpeed's import notice
    assert lines[0] == "gan 20 digits"
    assert lines[1].startswith(os.path.join("runs", "digits-gan") + " 20 ")
    assert lines[2] == "20 (16, 1, 16, 16) True"
    assert lines[3] == "30"
    assert (tmp_path / "samples.png").stat().st_size > 0
    assert (tmp_path / "runs" / "digits-gan-30" / "metrics.jsonl").is_file()
