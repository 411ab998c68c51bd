"""No kernel entry point takes more than 8 arguments, in any backend (issue 17).

Kernel state travels as one struct per family (a NamedTuple or dataclass read by field name
in numpy, numba, C++ and Cython), so a call is ``(state, t, inputs, out)`` and no long
positional list is a contract between backends. This test keeps it that way: it counts the
parameters of every entry point of the Python and numba kernels (by introspection), of the
pybind11 module (from the signatures pybind11 writes into each docstring), of the Cython
codec (its ``.pyx`` source), of both ``.pyi`` stubs, and of the C++ kernel headers.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avatar_engine.kernels.backends import native_module, numba_available
from avatar_engine.kernels.filters import OneEuroState, one_euro_kernel

MAX_ARGS = 8
ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "avatar_engine"
KERNEL_MODULES = (
    "avatar_engine.kernels.retarget",
    "avatar_engine.kernels.sampling",
    "avatar_engine.kernels.filters",
    "avatar_engine.kernels.compose",
    "avatar_engine.kernels.life",
    "avatar_engine.kernels.life_events",
    "avatar_engine.kernels.envelopes",
    "avatar_engine.kernels.audio_features",
    "avatar_engine.codec.encoder",
)
NUMBA_MODULES = tuple(
    f"avatar_engine.kernels._numba_{family}"
    for family in (
        "retarget",
        "sampling",
        "filters",
        "compose",
        "life",
        "life_events",
        "envelopes",
        "audio_features",
    )
)
KERNEL_HEADERS = ("retarget", "curves", "filters", "compose", "life", "envelopes", "audio_features")
"""The headers the pybind11 families bind (native/src/register_*.cpp)."""


def _is_struct(cls: type) -> bool:
    """State and table structs are data, not entry points (their fields are named)."""
    return issubclass(cls, tuple) or dataclasses.is_dataclass(cls)


def _count(fn: Callable[..., Any]) -> int:
    params = inspect.signature(fn).parameters.values()
    return sum(1 for p in params if p.name not in ("self", "cls"))


def _python_entry_points(module_name: str) -> Iterator[tuple[str, Callable[..., Any]]]:
    module = importlib.import_module(module_name)
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", None) != module_name:
            continue
        if isinstance(obj, type):
            if _is_struct(obj):
                continue
            for method in ("__init__", "__call__"):
                if method in vars(obj):
                    yield f"{name}.{method}", vars(obj)[method]
            for attr, member in vars(obj).items():
                if inspect.isfunction(member) and not attr.startswith("__"):
                    yield f"{name}.{attr}", member
        elif hasattr(obj, "py_func"):  # a numba dispatcher: count its Python function
            yield name, obj.py_func
        elif inspect.isfunction(obj):
            yield name, obj


def _split_top_level(params: str) -> list[str]:
    """Split a parameter list at commas outside brackets (types may hold commas)."""
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in params:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip() and p.strip() not in ("/", "*")]


def _pybind_signatures(obj: Any) -> Iterator[tuple[str, str]]:
    """(name, parameter list) of each signature line pybind11 wrote into a docstring."""
    for line in (obj.__doc__ or "").splitlines():
        m = re.match(r"^(?:\d+\. )?(\w+)\((.*)\) -> ", line)
        if m:
            yield m.group(1), m.group(2)


def test_python_kernels_take_at_most_8_arguments() -> None:
    counts = {
        f"{module}.{name}": _count(fn)
        for module in KERNEL_MODULES
        for name, fn in _python_entry_points(module)
    }
    assert "avatar_engine.kernels.life.life_numpy" in counts  # the walk found the kernels
    assert "avatar_engine.kernels.compose.NumpyCompose.__call__" in counts
    assert {k: v for k, v in counts.items() if v > MAX_ARGS} == {}


@pytest.mark.skipif(not numba_available(), reason="numba is not installed here")
def test_numba_kernels_take_at_most_8_arguments() -> None:
    counts = {
        f"{module}.{name}": _count(fn)
        for module in NUMBA_MODULES
        for name, fn in _python_entry_points(module)
    }
    assert "avatar_engine.kernels._numba_life.life_step" in counts
    assert {k: v for k, v in counts.items() if v > MAX_ARGS} == {}


@pytest.mark.skipif(native_module() is None, reason="the native module is not built here")
def test_native_kernels_take_at_most_8_arguments() -> None:
    core = native_module()
    counts: dict[str, int] = {}
    for name in dir(core):
        obj = getattr(core, name)
        if name.startswith("_"):
            continue
        if isinstance(obj, type):
            targets = [vars(obj)[m] for m in ("__init__", "__call__") if m in vars(obj)]
        else:
            targets = [obj]
        for target in targets:
            for fn_name, params in _pybind_signatures(target):
                args = [p for p in _split_top_level(params) if not p.startswith("self")]
                counts[f"{name}.{fn_name}"] = len(args)
    assert "LifePlan.__call__" in counts and "ComposePlan.__call__" in counts
    assert {k: v for k, v in counts.items() if v > MAX_ARGS} == {}


def test_cython_codec_takes_at_most_8_arguments() -> None:
    source = (PACKAGE / "codec" / "_fast.pyx").read_text()
    counts = {}
    for m in re.finditer(r"^\s*(?:def\s+|cp?def\s[^(\n]*?)\b(\w+)\(([^)]*)\)", source, re.M):
        args = [a for a in _split_top_level(m.group(2)) if a.split()[-1] != "self"]
        counts[m.group(1)] = len(args)
    assert "__init__" in counts and "_encode" in counts
    assert {k: v for k, v in counts.items() if v > MAX_ARGS} == {}


@pytest.mark.parametrize("stub", ["_core.pyi", "codec/_fast.pyi"])
def test_stubs_declare_at_most_8_arguments(stub: str) -> None:
    tree = ast.parse((PACKAGE / stub).read_text())
    counts = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            a = node.args
            names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            extra = (a.vararg is not None) + (a.kwarg is not None)
            counts[node.name] = len([n for n in names if n != "self"]) + extra
    assert counts
    assert {k: v for k, v in counts.items() if v > MAX_ARGS} == {}


@pytest.mark.parametrize("family", KERNEL_HEADERS)
def test_cpp_kernel_headers_take_at_most_8_arguments(family: str) -> None:
    source = (ROOT / "native" / "include" / "avatar_engine" / f"{family}.hpp").read_text()
    pattern = re.compile(
        r"\binline\s+[\w:<>*&\s]+?\b(\w+)\s*\(([^()]*)\)\s*(?:const\s*)?(?:noexcept)?\s*\{"
    )
    counts = {m.group(1): len(_split_top_level(m.group(2))) for m in pattern.finditer(source)}
    assert counts
    assert {k: v for k, v in counts.items() if v > MAX_ARGS} == {}


@pytest.mark.skipif(native_module() is None, reason="the native module is not built here")
def test_native_binding_names_a_bad_state_field_and_never_copies() -> None:
    """A state field with the wrong dtype is an error naming it, not a silent copy whose
    writes would be lost; a read-only output field is refused before anything is written."""
    fn = one_euro_kernel("native")
    x = np.ones((2, 3), np.float32)
    out = np.zeros_like(x)
    good = OneEuroState(
        region=np.zeros(3, np.int8),
        xhat=np.zeros((2, 3), np.float32),
        dxhat=np.zeros((2, 3), np.float32),
        primed=np.zeros(2, np.uint8),
        min_cutoff=np.ones((2, 1), np.float32),
        beta=np.zeros((2, 1), np.float32),
        d_cutoff=np.ones((2, 1), np.float32),
    )
    dt = np.full(2, 1 / 60, np.float32)
    with pytest.raises(TypeError, match="xhat"):
        fn(good._replace(xhat=np.zeros((2, 3), np.float64)), dt, x, out)
    frozen = np.zeros(2, np.uint8)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="primed"):
        fn(good._replace(primed=frozen), dt, x, out)
    np.testing.assert_array_equal(out, 0.0)  # nothing was written
    fn(good, dt, x, out)
    np.testing.assert_array_equal(out, x)  # the same struct with the right fields runs
    assert good.primed.tolist() == [1, 1]  # and its state is updated in place
