"""The layering the tree shows, kept by tests: floors whose modules import only their own floor and the ones
below (``FLOORS``, as docs/architecture.md draws them), maths free of distributed code, no import circles, and
the reports' code (``repro/``) outside the package.

Imports are read from the source: module level, inside functions (a lazy import is still a dependency) and under
``if TYPE_CHECKING:`` (a type-only import is a dependency of the reader, and circles through them are circles).
"""

from __future__ import annotations

import ast
import os

from tests.conftest import REPO

PACKAGE = os.path.join(REPO, "acl_dist")
SINGLE_DEVICE = ("acl_dist.nets", "acl_dist.methods", "acl_dist.losses", "acl_dist.ops", "acl_dist.stats",
                 "acl_dist.priors")
DISTRIBUTED = ("torch.distributed", "accelerate", "deepspeed")


def _modules() -> dict[str, str]:
    """{dotted module name: file} for every module of the package."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                out[dotted.removesuffix(".__init__")] = path
    return out


def _imports(path: str) -> set[str]:
    """Every module name ``path`` imports: module level, in functions and under ``if TYPE_CHECKING:`` alike."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module and node.level == 0:
                if node.module != "acl_dist":  # `from acl_dist import losses` imports losses, not the root's API
                    found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)

    with open(path) as f:
        Visitor().visit(ast.parse(f.read()))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def owner(name: str) -> str | None:  # the package module an import name refers to
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    return {m: {o for name in _imports(p) if (o := owner(name)) and o != m} for m, p in modules.items()}


FLOORS = [  # bottom to top: (floor, module prefixes); a module is on the floor of its longest matching prefix
    ("errors", ["acl_dist.errors"]),
    ("building blocks", ["acl_dist.nets", "acl_dist.ops", "acl_dist.losses", "acl_dist.stats", "acl_dist.priors",
                         "acl_dist.media", "acl_dist.distributed", "acl_dist.pictures"]),
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


def test_no_import_circles():
    graph, index, low, stack, on_stack, circles = _graph(), {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not circles, circles


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
