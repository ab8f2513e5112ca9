"""The layering the tree shows, kept by tests: maths free of distributed code, no import circles.

Imports are read from the source (module level and inside functions alike: a lazy import is still a
dependency), except those under ``if TYPE_CHECKING:``, which never run.
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
    """Every module name ``path`` imports, outside ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            if getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module and node.level == 0:
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


def test_nets_methods_losses_and_ops_import_nothing_distributed():
    offenders = [f"{m} imports {name}" for m, p in _modules().items() if m.startswith(SINGLE_DEVICE)
                 for name in _imports(p) if name.startswith(DISTRIBUTED)]
    assert not offenders, offenders


def test_collectives_live_in_distributed_py():
    """torch.distributed is called from distributed.py (and DeepSpeed's own module and process-group set-up)."""
    allowed = {"acl_dist.distributed", "acl_dist.train.deepspeed_engines"}
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


def test_the_graph_sees_a_circle_when_there_is_one(tmp_path, monkeypatch):
    """The circle test reads lazy imports too: a function-level import back is a circle."""
    graph = _graph()
    assert "acl_dist.config" in graph["acl_dist.validation"] or "acl_dist.errors" in graph["acl_dist.validation"]
    assert "acl_dist.methods.registry" in graph["acl_dist.config"]  # imported inside method_options()
