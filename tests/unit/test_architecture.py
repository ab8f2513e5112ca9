"""The layering the tree shows, kept by tests: floors whose modules import only their own floor and the ones
below (``FLOORS``, as docs/architecture.md draws them), maths free of distributed code, no import circles, and
the reports' code (``repro/``) outside the package.

Imports are read from the source: module level, inside functions (a lazy import is still a dependency) and under
``if TYPE_CHECKING:`` (a type-only import is a dependency of the reader, and circles through them are circles).
"""

from __future__ import annotations

import importlib.util
import os

from tests.conftest import REPO


def _load_graph_script():
    spec = importlib.util.spec_from_file_location("import_graph", os.path.join(REPO, "scripts", "import_graph.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GRAPH = _load_graph_script()  # scripts/import_graph.py: the graph this test reads, and the measurement it prints
PACKAGE = GRAPH.PACKAGE
SINGLE_DEVICE = ("acl_dist.nets", "acl_dist.methods", "acl_dist.losses", "acl_dist.ops", "acl_dist.stats",
                 "acl_dist.priors")
DISTRIBUTED = ("torch.distributed", "accelerate", "deepspeed")
_modules, _imports, _graph = GRAPH.modules, GRAPH.imports, GRAPH.graph


FLOORS = [  # bottom to top: (floor, module prefixes); a module is on the floor of its longest matching prefix
    ("errors", ["acl_dist.errors"]),
    ("building blocks", ["acl_dist.nets", "acl_dist.ops", "acl_dist.losses", "acl_dist.stats", "acl_dist.priors",
                         "acl_dist.media", "acl_dist.distributed", "acl_dist.pictures", "acl_dist.schedules"]),
    ("schema", ["acl_dist.methods.options", "acl_dist.data.options", "acl_dist.sections"]),
    ("components", ["acl_dist.methods", "acl_dist.data", "acl_dist.eval"]),
    ("rules and loading", ["acl_dist.rules", "acl_dist.validation", "acl_dist.config"]),
    ("trainer", ["acl_dist.training"]),
    ("tools", ["acl_dist", "acl_dist.api", "acl_dist.cli", "acl_dist.__main__", "acl_dist.submit", "acl_dist.demo",
               "acl_dist.tools"]),
]


def floor_of(module: str) -> int:
    matches = [(len(p), i) for i, (_, prefixes) in enumerate(FLOORS) for p in prefixes
               if module == p or (module.startswith(p + ".") and p != "acl_dist")]  # the root: itself only
    assert matches, f"{module} is on no floor: add it to FLOORS (and docs/architecture.md)"
    return max(matches)[1]


def test_every_module_imports_only_its_floor_and_those_below():
    graph = _graph()
    upward = [f"{m} ({FLOORS[floor_of(m)][0]}) imports {o} ({FLOORS[floor_of(o)][0]})"
              for m, targets in graph.items() for o in targets if floor_of(o) > floor_of(m)]
    assert not upward, upward


def test_the_package_never_imports_the_reports_code():
    """repro/ (the reports) sits beside the package: it uses acl_dist as a user does, never the reverse."""
    offenders = [f"{m} imports {name}" for m, p in _modules().items() for name in _imports(p)
                 if name == "repro" or name.startswith("repro.")]
    assert not offenders, offenders
    assert not os.path.exists(os.path.join(PACKAGE, "repro"))


def test_nets_methods_losses_and_ops_import_nothing_distributed():
    offenders = [f"{m} imports {name}" for m, p in _modules().items() if m.startswith(SINGLE_DEVICE)
                 for name in _imports(p) if name.startswith(DISTRIBUTED)]
    assert not offenders, offenders


def test_collectives_live_in_distributed_py():
    """torch.distributed is called from distributed.py (and DeepSpeed's own module and process-group set-up)."""
    allowed = {"acl_dist.distributed", "acl_dist.training.deepspeed_engines"}
    users = [m for m, p in _modules().items() if m not in allowed
             and any(name.startswith("torch.distributed") for name in _imports(p))]
    assert not users, users
    calls = [m for m, p in _modules().items() if m not in allowed and "torch.distributed." in open(p).read()]
    assert not calls, calls  # nor reached as an attribute of torch (`torch.distributed.get_backend()`)


def test_no_import_circles():
    assert not GRAPH.circles(_graph())


def test_folders_import_only_their_floor_and_those_below_and_never_each_other():
    """One level up: a sub-package (``acl_dist.eval``) or top-level module is a folder, and a folder imports
    another when any of its modules does. No two folders import each other, and every folder import runs down
    the floors (``eval/`` under ``training/``, ``sections.py`` under ``methods/`` and ``data/``)."""
    folders = GRAPH.folder_graph()
    assert not GRAPH.circles(folders)
    upward = [f"{a} imports {b}" for a, targets in folders.items() for b in targets if floor_of(b) > floor_of(a)]
    assert not upward, upward


def test_the_graph_reads_lazy_and_type_only_imports(tmp_path):
    """A function-level import and an ``if TYPE_CHECKING:`` import are both edges (either would close a circle)."""
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from acl_dist.sections import Recipe\n"
                      "def f():\n    from acl_dist.config import load_recipe\n")
    assert {"acl_dist.sections", "acl_dist.config"} <= _imports(str(source))
    graph = _graph()
    assert "acl_dist.sections" in graph["acl_dist.methods.registry"]  # its type-only import of ModelConfig


def test_components_take_their_own_sections_never_the_whole_recipe():
    """Methods, data sources and evaluation are built from their sections (docs/architecture.md): none of them
    imports the loader or names the ``Recipe`` class (the tools, a floor above, may)."""
    components = ("acl_dist.methods", "acl_dist.data", "acl_dist.eval", "acl_dist.nets", "acl_dist.ops")
    offenders = []
    for module, path in _modules().items():
        if not module.startswith(components):
            continue
        names = _imports(path)
        if "acl_dist.config" in names or "acl_dist.sections.Recipe" in names:
            offenders.append(module)
    assert not offenders, offenders


def test_the_architecture_page_draws_every_module_and_folder_on_its_floor():
    """docs/architecture.md's drawing names every top-level module and sub-package, every module of the
    trainer's and the tools' folders, on the floor FLOORS gives it."""
    with open(os.path.join(REPO, "docs", "architecture.md")) as f:
        drawing = f.read().split("```", 2)[1]
    rows: dict[str, str] = {}  # floor -> its text in the drawing
    floor = None
    for line in drawing.strip().splitlines():
        name = next((n for n, _ in FLOORS if line.startswith(n)), None)
        floor = name or floor
        rows[floor] = rows.get(floor, "") + line[len(name):] if name else rows[floor] + line
    expected: dict[str, str] = {}
    for module in _modules():
        parts = module.split(".")
        if len(parts) == 2 and parts[1] not in ("__main__",):
            shown = f"{parts[1]}.py" if os.path.isfile(os.path.join(PACKAGE, f"{parts[1]}.py")) else f"{parts[1]}/"
            expected[shown] = FLOORS[floor_of(module)][0]
        if parts[1:2] in (["training"], ["tools"]) and len(parts) == 3:
            expected[f"{parts[2]}.py"] = FLOORS[floor_of(module)][0]
    missing = [f"{shown} ({where})" for shown, where in expected.items() if shown not in rows.get(where, "")]
    assert not missing, missing
