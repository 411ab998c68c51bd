"""Structural rules of the source tree, read from its syntax tree (no import of the package).

Two rules from the project guide that review alone does not keep: a function fits on a screen
(at most 80 lines, ``def`` to the end of its body), so a reader never has to hold more than one
job in mind; and every public function, method and class says in a docstring why it exists, so
a newcomer can read the API without reading its bodies. Numba kernel loops are exempt from the
length rule: they are written as one flat loop on purpose (a call inside an ``@njit`` loop is
not free, and their argument order is the contract checked by the parity tests).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "avatar_engine"
MAX_FUNCTION_LINES = 80

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
DefNode = FunctionNode | ast.ClassDef


def _source_files() -> list[Path]:
    return sorted(path for path in SRC.rglob("*.py") if "web" not in path.relative_to(SRC).parts)


def _relative(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _decorator_name(decorator: ast.expr) -> str:
    """A decorator's dotted name without its call: ``@numba.njit(cache=True)`` -> numba.njit."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    parts: list[str] = []
    while isinstance(target, ast.Attribute):
        parts.append(target.attr)
        target = target.value
    if isinstance(target, ast.Name):
        parts.append(target.id)
    return ".".join(reversed(parts))


NUMBA_DECORATORS = frozenset({"njit", "jit", "vectorize", "guvectorize", "stencil", "cfunc"})


def _is_numba_kernel(path: Path, node: FunctionNode) -> bool:
    if path.name.startswith("_numba_"):
        return True
    return any(_decorator_name(d).split(".")[-1] in NUMBA_DECORATORS for d in node.decorator_list)


def _functions(tree: ast.AST) -> Iterator[FunctionNode]:
    for node in ast.walk(tree):
        if isinstance(node, FunctionNode):
            yield node


def long_functions() -> list[str]:
    """Every function over the limit, as ``path:line name (N lines)``."""
    found: list[str] = []
    for path in _source_files():
        for node in _functions(_parse(path)):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES and not _is_numba_kernel(path, node):
                found.append(f"{_relative(path)}:{node.lineno} {node.name} ({length} lines)")
    return found


def _is_public_module(path: Path) -> bool:
    parts = path.relative_to(SRC).parts
    return not any(part.startswith("_") and part != "__init__.py" for part in parts)


def _is_accessor_or_overload(node: DefNode) -> bool:
    """Setters and deleters share their getter's docstring; ``@overload`` stubs the real one."""
    for decorator in node.decorator_list:
        name = _decorator_name(decorator)
        if name.endswith((".setter", ".deleter")) or name.split(".")[-1] == "overload":
            return True
    return False


def _public_definitions(body: list[ast.stmt], prefix: str = "") -> Iterator[tuple[str, DefNode]]:
    """Module-level functions and classes and the methods of public classes (not closures)."""
    for node in body:
        if not isinstance(node, DefNode) or node.name.startswith("_"):
            continue
        if _is_accessor_or_overload(node):
            continue
        yield f"{prefix}{node.name}", node
        if isinstance(node, ast.ClassDef):
            yield from _public_definitions(node.body, prefix=f"{prefix}{node.name}.")


def undocumented() -> list[str]:
    """Every public definition without a docstring, as ``path:line qualified.name``."""
    found: list[str] = []
    for path in _source_files():
        if not _is_public_module(path):
            continue
        for name, node in _public_definitions(_parse(path).body):
            if ast.get_docstring(node) is None:
                found.append(f"{_relative(path)}:{node.lineno} {name}")
    return found


def test_no_function_is_longer_than_80_lines() -> None:
    found = long_functions()
    assert not found, f"{len(found)} functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(
        found
    )


def test_every_public_definition_has_a_docstring() -> None:
    found = undocumented()
    assert not found, f"{len(found)} public definitions without a docstring:\n" + "\n".join(found)


def test_the_checks_see_the_whole_tree() -> None:
    """A guard for the two checks above: they must read real files, not an empty glob."""
    files = _source_files()
    assert len(files) > 50
    assert any(path.name == "engine.py" for path in files)


def _imported_modules(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_no_core_package_imports_the_command_line() -> None:
    """The CLI is a front-end of the library, never a dependency of it."""
    found = [
        f"{_relative(path)} imports {name}"
        for path in _source_files()
        if path.relative_to(SRC).parts[0] != "cli"
        for name in _imported_modules(_parse(path))
        if name == "avatar_engine.cli" or name.startswith("avatar_engine.cli.")
    ]
    assert not found, "\n".join(found)


def _is_array_alias(node: ast.stmt) -> bool:
    value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
    return (
        isinstance(value, ast.Subscript)
        and isinstance(value.value, ast.Attribute)
        and value.value.attr == "NDArray"
    )


def test_array_aliases_are_declared_once_in_types() -> None:
    """``F32`` and friends come from avatar_engine.types, not a copy per module."""
    found = [
        f"{_relative(path)}:{node.lineno}"
        for path in _source_files()
        if path.name != "types.py"
        for node in _parse(path).body
        if _is_array_alias(node)
    ]
    assert not found, "module-local array aliases:\n" + "\n".join(found)
