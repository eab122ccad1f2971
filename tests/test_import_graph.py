"""The ``xlam`` package imports without cycles.

What counts as an edge ``a -> b`` (module ``a`` imports module ``b``), by reading the source
with ``ast``:

- every ``import`` statement in ``a``, at module level or inside a function or class.
  Deferred imports count: they are how a cycle is usually hidden (``formats/tool_schema``
  importing ``formats/base`` inside its functions), and they tie the two modules together
  as firmly as a top-level import, only later;
- a string constant in ``a`` that is exactly the dotted name of an ``xlam`` module: a module
  imported by name (``importlib.import_module``, the CLI's lazy command registry);
- not imports under ``if TYPE_CHECKING:`` (never run), and not the implicit edge from a
  module to its parent package (a package whose ``__init__`` re-exports its submodules
  would otherwise always be a cycle).

``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "xlam"


def modules(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at ``package_dir``."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith(
        "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node under ``node``, skipping ``if TYPE_CHECKING:`` bodies (their ``else`` runs)."""
    for child in ast.iter_child_nodes(node):
        if _type_checking(child):
            for n in child.orelse:
                yield n
                yield from _walk(n)
            continue
        yield child
        yield from _walk(child)


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for each import edge of module ``name`` (see above)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            if node.level:
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known:
            targets = [node.value]
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a function, attribute
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target, node.lineno


def import_graph(package_dir: Path) -> dict[str, dict[str, int]]:
    """Module -> {imported module: line of the first such import}."""
    known = modules(package_dir)
    graph: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        edges: dict[str, int] = {}
        for target, line in imports(name, path, known):
            edges.setdefault(target, line)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def describe(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    edges = [
        f"  {a} -> {b} (line {graph[a][b]})" for a in component for b in graph[a] if b in component
    ]
    return "\n".join([f"cycle among {', '.join(component)}:", *edges])


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    return import_graph(ROOT)


def test_xlam_has_no_import_cycle(graph: dict[str, dict[str, int]]) -> None:
    found = cycles(graph)
    assert not found, "\n".join(describe(graph, c) for c in found)


def test_the_graph_sees_deferred_and_by_name_imports(graph: dict[str, dict[str, int]]) -> None:
    """Guards the walker itself: the edges that once made cycles are still found."""
    assert len(graph) > 50
    # At module level, deferred (stats imports verify inside functions), and by name.
    assert "xlam.data.formats.tool_schema" in graph["xlam.data.formats.base"]
    assert "xlam.data.verify" in graph["xlam.data.commands.stats"]
    assert "xlam.data.commands.convert" in graph["xlam.data.cli"]


def test_cycles_are_found_in_every_form(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from .a import A\n",
        "a.py": "from . import b\nA = 1\n",
        "b.py": "def f():\n    from pkg.a import A\n    return A\n",  # deferred: a <-> b
        "c.py": "import importlib\nM = 'pkg.sub.d'\n",  # by name: c -> sub.d
        "sub/__init__.py": "",
        "sub/d.py": "from typing import TYPE_CHECKING\nfrom .. import c\n"
        "if TYPE_CHECKING:\n    from pkg import e\n",
        "e.py": "from pkg.sub import d\n",  # e -> d, but d -> e only for type checkers
    }
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    graph = import_graph(pkg)
    assert graph["pkg.sub.d"] == {"pkg.c": 2}
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.sub.d"]]
