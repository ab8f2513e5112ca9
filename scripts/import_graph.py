"""The package's import graph, read from the source, and how well its floors hold, module by module and folder
by folder (what ``tests/unit/test_architecture.py`` checks, and what a refactor measures before and after).

    python scripts/import_graph.py      # upward imports, circles and the largest modules, at both levels

Imports are read from the source: module level, inside functions (a lazy import is still a dependency) and under
``if TYPE_CHECKING:`` (a type-only import is a dependency of the reader, and circles through them are circles).
A folder is a sub-package (``acl_dist.eval``) or a top-level module (``acl_dist.config``); a folder imports
another when any of its modules does.
"""

from __future__ import annotations

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "acl_dist")


def modules() -> dict[str, str]:
    """{dotted module name: file} for every module of the package."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                out[dotted.removesuffix(".__init__")] = path
    return out


def imports(path: str) -> set[str]:
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


def graph() -> dict[str, set[str]]:
    """{module: the package modules it imports}."""
    mods = modules()

    def owner(name: str) -> str | None:  # the package module an import name refers to
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    return {m: {o for name in imports(p) if (o := owner(name)) and o != m} for m, p in mods.items()}


def folder(module: str) -> str:
    """``acl_dist.eval.fid`` -> ``acl_dist.eval``; a top-level module is its own folder."""
    parts = module.split(".")
    return ".".join(parts[:2])


def folder_graph(g: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    g = graph() if g is None else g
    out: dict[str, set[str]] = {}
    for m, targets in g.items():
        out.setdefault(folder(m), set()).update(folder(t) for t in targets if folder(t) != folder(m))
    return out


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in g.get(node, ()):
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
                found.append(sorted(component))

    for node in list(g):
        if node not in index:
            visit(node)
    return found


def largest(n: int = 5) -> list[tuple[int, str]]:
    sizes = []
    for m, p in modules().items():
        with open(p) as f:
            sizes.append((sum(1 for _ in f), m))
    return sorted(sizes, reverse=True)[:n]


def main() -> None:
    g = graph()
    fg = folder_graph(g)
    print(f"modules: {len(g)}, import edges: {sum(map(len, g.values()))}; module circles: {circles(g) or 'none'}")
    print(f"folders: {len(fg)}, import edges: {sum(map(len, fg.values()))}")
    for c in circles(fg):
        print("  folder circle:", " <-> ".join(c))
    pairs = sorted({tuple(sorted((a, b))) for a, ts in fg.items() for b in ts if a in fg.get(b, ())})
    print(f"folder pairs importing each other: {len(pairs)}")
    for a, b in pairs:
        print(f"  {a} <-> {b}")
    print("largest modules:", ", ".join(f"{m} ({n} lines)" for n, m in largest()))


if __name__ == "__main__":
    main()
