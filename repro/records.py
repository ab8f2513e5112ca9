"""Run records: what a finished training run leaves behind that outlives its run directory.

Why: run directories (checkpoints, logs) stay out of git and are lost when a session or a machine ends, while a
campaign of converged runs takes longer than any session. Each finished run appends one JSON line to a records
file committed with the reports: what it computed (the recipe's fingerprint and a key of it), its FD curve and
final metrics, its diagnostics over training, and where it ran (CPU or GPU, thread count: results are bitwise
equal only at equal thread counts). A campaign continued later, on another machine or a fresh clone, reads the
records, skips what is done and trains only what is missing; its report is rebuilt from the records alone.

A record's ``key`` leaves out what changes no trained number and no evaluated number at a given step
(``PREFIX_FREE``): the run's length, how often it evaluates, logs, samples and checkpoints. Evaluation draws
noise of its own (acl_dist.training.eval_noise), and the families the campaign keys this way train at a
constant learning rate, so a run of B steps is the exact prefix of a longer run of the same key: a budget B is
read off any record of that key with at least B steps that evaluated at the needed steps.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field

from repro.jobs import REPO, fingerprint

PREFIX_FREE = {"train": ("steps", "sample_every", "ckpt_every", "log_every", "keep_checkpoints"),
               "eval": ("every",)}


def computed(recipe_data: dict) -> dict:
    """What a run computes at every step: its fingerprint without ``PREFIX_FREE`` (``train.steps`` stays for a
    recipe scheduled over its length: its prefix is not a shorter run)."""
    data = fingerprint(recipe_data)
    length_free = not schedules_over_length(data)
    for section, keys in PREFIX_FREE.items():
        for key in keys:
            if length_free or (section, key) != ("train", "steps"):
                data.get(section, {}).pop(key, None)
    return data


def record_key(recipe_data: dict) -> str:
    """16 hex digits naming ``computed(recipe_data)``: what a run computes, whatever its length and evaluation
    density (an index; ``same_computation`` decides across schema versions)."""
    text = json.dumps(computed(recipe_data), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def schema_defaults(recipe_data: dict) -> dict:
    """The resolved recipe of the same method and data source with every other value at its default."""
    from acl_dist.config import recipe_from_dict, to_dict

    return to_dict(recipe_from_dict({"method": {"name": recipe_data["method"]["name"]},
                                     "data": {"source": recipe_data["data"]["source"]}}))


def same_computation(recorded: dict, wanted: dict, defaults: dict) -> bool:
    """Whether a record's ``computed`` fingerprint, written by an older version of the schema, computes what
    ``wanted`` does: every key equal, and a key the record lacks (a field added since) at its default in
    ``wanted``, since a new field's default keeps what runs computed before it (the golden test holds that).
    A default that changed is a value the record holds explicitly, so it does not match."""
    for section, values in wanted.items():
        have = recorded.get(section, {})
        for key, value in values.items():
            if key in have:
                if have[key] != value:
                    return False
            elif value != defaults.get(section, {}).get(key, object()):
                return False
    return True


def schedules_over_length(data: dict) -> bool:
    """Whether a resolved recipe's numbers follow a schedule over ``train.steps`` (so no run is the prefix of
    a longer one): a learning-rate or beta2 schedule, or a method option ending in ``_final``."""
    optim, method = data.get("optim", {}), data.get("method", {})
    if optim.get("lr_decay_to", 1) != 1 or optim.get("beta2_final") is not None:
        return True
    return any(k.endswith("_final") and v is not None for k, v in method.items())


@dataclass(frozen=True)
class Need:
    """A run a campaign needs: its recipe (as a repro Job), and the budget and evaluation density read off it."""

    label: str  # what the report calls it, e.g. "gan/recipe"
    method: str
    seed: int
    key: str
    steps: int
    eval_every: int
    wanted: dict = field(default_factory=dict, compare=False, hash=False)  # computed(): what the run computes
    defaults: dict = field(default_factory=dict, compare=False, hash=False)  # schema_defaults() of its recipe


def satisfies(record: dict, need: Need) -> bool:
    """A record computing what the need does (the same key, or the same computation under an older schema), at
    least as long, evaluated at every step the need evaluates at."""
    if record["steps"] < need.steps or need.eval_every % record["eval_every"]:
        return False
    if record["key"] == need.key:
        return True
    return bool(need.wanted) and "fingerprint" in record and same_computation(
        computed(record["fingerprint"]), need.wanted, need.defaults)


def find(records: list[dict], need: Need) -> dict | None:
    """The first record that satisfies ``need`` (records are appended in the order runs finished)."""
    return next((r for r in records if satisfies(r, need)), None)


def at_budget(record: dict, steps: int) -> dict:
    """The record read as a run of ``steps`` steps: its curve cut at ``steps``, its final metrics there."""
    curve = [row for row in record["curve"] if row["step"] <= steps]
    return {**record, "steps": steps, "curve": curve, "final": curve[-1] if curve else {}}


def load(path: str) -> list[dict]:
    """Every record in ``path`` (none when it does not exist yet). A torn last line (a write cut short) is
    dropped with the run it described, which then counts as missing."""
    if not os.path.isfile(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def append(path: str, record: dict) -> None:
    """One line, written and flushed whole (one write call of a line shorter than the pipe buffer is not
    guaranteed atomic on every file system, so ``load`` also drops a torn line)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def machine() -> dict:
    """Where a run ran: CPU model, core count, torch version, the commit of the code that trained it."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "commit": commit}
