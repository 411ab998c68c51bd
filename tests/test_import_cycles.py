"""No import cycles between the modules of ``src/avatar_engine`` (issue 17, Acceptance).

The graph is read from the syntax tree of every module, so nothing is imported to check it:
every ``import`` and ``from ... import`` counts, wherever it is written — at module level,
inside a function (a deferred import is still a dependency, only a later one), and inside an
``if TYPE_CHECKING:`` block. Type-only imports count on purpose: a module that needs another's
types to describe itself while that module imports it back is one design split over two files,
and the cure is the same as for a runtime cycle (a protocol in the lower module).

How names resolve:

- ``from pkg import name`` is an edge to ``pkg.name`` when that is a module (a ``.py``, or a
  compiled ``.pyx`` extension), else to ``pkg`` itself (a name its ``__init__`` defines);
- ``import a.b.c`` is an edge to the longest prefix that is a module of the package;
- relative imports are resolved against the importing module's package;
- importing ``pkg.sub`` also runs ``pkg/__init__``, but that implicit edge is not counted: a
  package re-exporting its submodules is the usual shape and would make every such package a
  cycle with each of its members.

The same graph folded onto the first-level packages (``server``, ``cluster``, ``transport``,
``engine``, ...) must be acyclic too, so the layers stay layers: the cluster builds on the
server's placement protocol and the server never imports the cluster (the command line hands it
the cluster's placement); transport never imports the server.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "avatar_engine"


@dataclass(frozen=True)
class Edge:
    """One import: ``source`` imports ``target`` at ``line``."""

    source: str
    target: str
    line: int


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their ``__init__``)."""
    names: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*")):
        if path.suffix not in (".py", ".pyx") or "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.setdefault(".".join(parts), path)
    return names


def _known_prefix(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Edge]:
    """The package-internal imports one module makes, anywhere in its body."""
    if path.suffix != ".py":
        return  # a compiled extension: its imports are C-level (cimports), not modules here
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known_prefix(alias.name, modules)
                if target is not None:
                    yield Edge(name, target, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                target = submodule if submodule in modules else _known_prefix(origin, modules)
                if target is not None and target != name:
                    yield Edge(name, target, node.lineno)


def import_graph(root: Path, package: str) -> dict[str, dict[str, int]]:
    """Module -> {imported module: first line importing it}."""
    modules = module_names(root, package)
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, path in modules.items():
        for edge in imports_of(name, path, modules):
            graph[name].setdefault(edge.target, edge.line)
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative depth-first search (the graph is a few hundred modules deep at most, but
        # recursion limits are not a property of the code under test).
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def one_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first inside it)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    """``a (line 3) -> b (line 9) -> a``: where each import of the cycle is written."""
    steps = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    return " -> ".join([*steps, cycle[-1]])


def test_no_import_cycles_between_modules() -> None:
    graph = import_graph(ROOT, PACKAGE)
    assert len(graph) > 100, "the package was not found: the check would pass vacuously"
    cycles = [describe(graph, one_cycle(graph, c)) for c in strongly_connected(graph)]
    assert not cycles, "import cycles in src/avatar_engine:\n" + "\n".join(cycles)


def package_graph(graph: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The same imports between first-level packages (``avatar_engine.server``, ...; a
    top-level module such as ``avatar_engine.types`` stands for itself)."""

    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, dict[str, int]] = {package(m): {} for m in graph}
    for module, targets in graph.items():
        for target, line in targets.items():
            if package(target) != package(module):
                packages[package(module)].setdefault(package(target), line)
    return packages


def test_no_import_cycles_between_packages() -> None:
    """Layers, not just modules: the shell (server) builds on transport and is built on by
    the cluster and the command line, never the other way round."""
    graph = package_graph(import_graph(ROOT, PACKAGE))
    cycles = [" -> ".join(one_cycle(graph, c)) for c in strongly_connected(graph)]
    assert not cycles, "package import cycles in src/avatar_engine:\n" + "\n".join(cycles)


def test_the_check_finds_a_cycle_hidden_in_a_function_and_a_type_checking_block(
    tmp_path: Path,
) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.sub import low\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "high.py").write_text("def f():\n    from pkg.sub import low\n")
    (pkg / "sub" / "low.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import high\n"
    )
    (pkg / "leaf.py").write_text("import pkg.sub.low\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.sub.low"] == {"pkg.high": 3}
    assert graph["pkg.leaf"] == {"pkg.sub.low": 1}
    components = strongly_connected(graph)
    assert components == [["pkg.high", "pkg.sub.low"]]
    cycle = one_cycle(graph, components[0])
    assert describe(graph, cycle) == "pkg.high (line 2) -> pkg.sub.low (line 3) -> pkg.high"
    assert strongly_connected(package_graph(graph)) == [["pkg.high", "pkg.sub"]]
