"""Which kernel backends exist on this machine, and which one a stage should use.

The numpy backend always exists and defines the semantics; numba and the native C++ module
are optional accelerators that must match it (see the parity tests). The fastest available
backend is the default; ``AVATAR_ENGINE_BACKEND=numpy|numba|native`` or an explicit
``backend=`` argument forces one, and forcing one that is missing is an error rather than a
silent fallback, because a benchmark or a parity test must know what it ran.
"""

from __future__ import annotations

import importlib
import logging
import os
from functools import cache
from types import ModuleType
from typing import Final, Literal

BackendName = Literal["native", "numba", "numpy"]
BACKENDS: Final[tuple[BackendName, ...]] = ("native", "numba", "numpy")
"""All backends, fastest first."""
ENV_VAR: Final = "AVATAR_ENGINE_BACKEND"

log = logging.getLogger(__name__)


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot be loaded here."""


@cache
def native_module() -> ModuleType | None:
    """The compiled ``avatar_engine._core`` module, or None (said once, in the log)."""
    try:
        return importlib.import_module("avatar_engine._core")
    except ImportError as exc:
        log.warning(
            "avatar-engine: native kernels unavailable (%s); falling back to numba/numpy", exc
        )
        return None


def require_native() -> ModuleType:
    """The native module for a stage compiled for the ``native`` backend.

    ``resolve_backend`` only returns ``native`` when the module loads, so this failing means a
    caller bypassed it.
    """
    core = native_module()
    if core is None:
        raise BackendUnavailableError("native backend requested but avatar_engine._core is missing")
    return core


@cache
def numba_available() -> bool:
    """Whether numba can be imported (it is an optional extra)."""
    try:
        importlib.import_module("numba")
    except ImportError:
        return False
    return True


def available_backends() -> list[BackendName]:
    """Backends that load on this machine, fastest first."""
    found: list[BackendName] = []
    if native_module() is not None:
        found.append("native")
    if numba_available():
        found.append("numba")
    found.append("numpy")
    return found


def default_backend() -> BackendName:
    """The backend stages use when none is given: the environment's choice or the fastest."""
    return resolve_backend(None)


def resolve_backend(requested: str | None) -> BackendName:
    """Validate an explicit or environment-chosen backend name, or pick the fastest."""
    choice = requested if requested is not None else os.environ.get(ENV_VAR) or None
    if choice is None:
        return available_backends()[0]
    if choice not in BACKENDS:
        raise ValueError(f"unknown backend {choice!r}; choose one of {', '.join(BACKENDS)}")
    name: BackendName = choice  # narrowed by the membership test above
    if name not in available_backends():
        source = "argument" if requested is not None else f"${ENV_VAR}"
        raise BackendUnavailableError(f"backend {name!r} (from {source}) is not available here")
    return name
