"""The row table: every per-session array of a rig group, in one place.

A session is a row index into every *block* of its rig group's table (capture weights, layer
planes, emotion and life state, filter state, speech slots...). Each stage declares its blocks
when it is built (``rows.declare("emotion.current", (12,), np.float32, 0.0)``) and keeps the
returned :class:`Block` handle, never an array: the table alone grows the blocks (doubling,
when full) and swap-removes a row from all of them at once, like three.js's AnimationMixer
does for its per-action arrays. The live rows stay packed at ``[0, len)`` so a stage always
runs on one contiguous slice.

Owners of things indexed *by* row (speech slots, encoder streams) register :meth:`on_remove`
and :meth:`on_move` hooks instead of being told by the shell.

A stage reads its blocks through :class:`BlockField` attributes (``self.speaking[:n]``),
which fetch the block's current array on every access, so no stage can keep a view that a
grow has replaced. A view taken from one (``x = anim.speaking``) is valid until the next
:meth:`RowTable.add`; fetch it again after that.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

import numpy as np
import numpy.typing as npt

S = TypeVar("S", bound=np.generic)
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """What one block holds per row."""

    name: str
    shape: tuple[int, ...]
    """One row's shape (the stored array has the row axis inserted at ``axis``)."""
    dtype: np.dtype[Any]
    default: npt.NDArray[Any]
    """One row's value when it is added (broadcast to ``shape``)."""
    axis: int = 0
    """Where the row axis sits: 1 for per-layer planes ``(L, rows, M)`` a kernel reads whole."""


class Block(Generic[S]):
    """A handle on one block; ``data`` is the whole current array (all ``capacity`` rows).

    The table replaces ``data`` when it grows, so hold the handle (or a :class:`BlockField`),
    never ``data`` itself.
    """

    __slots__ = ("data", "spec")

    def __init__(self, spec: BlockSpec, data: npt.NDArray[S]) -> None:
        self.spec = spec
        self.data = data

    def by_row(self) -> npt.NDArray[S]:
        """``data`` with the row axis first (``data`` itself for most blocks, else a view)."""
        axis = self.spec.axis
        return self.data if axis == 0 else np.moveaxis(self.data, axis, 0)


def _allocate(spec: BlockSpec, capacity: int) -> npt.NDArray[Any]:
    """A C-contiguous array of ``capacity`` rows for ``spec``, every row at its default."""
    by_row = np.empty((capacity, *spec.shape), spec.dtype)
    by_row[...] = spec.default
    return np.moveaxis(by_row, 0, spec.axis).copy()


class RowTable(Generic[K]):
    """Blocks whose rows are sessions (keyed by ``K``); capacity doubles when full."""

    __slots__ = ("_blocks", "_capacity", "_ids", "_on_move", "_on_remove", "_row_of")

    def __init__(self, *, capacity: int = 8) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._blocks: dict[str, Block[Any]] = {}
        self._ids: list[K] = []
        self._row_of: dict[K, int] = {}
        self._on_remove: list[Callable[[int], None]] = []
        self._on_move: list[Callable[[int, int], None]] = []

    # -- declaring ----------------------------------------------------------------------------

    def declare(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: type[S],
        default: npt.ArrayLike = 0,
        *,
        axis: int = 0,
    ) -> Block[S]:
        """A new block of ``shape`` per row, every row (and every row added later) set to
        ``default``; ``axis`` places the row axis in the stored array."""
        if name in self._blocks:
            raise ValueError(f"block {name!r} is declared twice")
        if not 0 <= axis <= len(shape):
            raise ValueError(f"block {name!r}: row axis {axis} outside its shape {shape}")
        value = np.asarray(default, dtype)
        np.broadcast_to(value, shape)  # a default that does not fit a row fails here
        spec = BlockSpec(name, tuple(shape), np.dtype(dtype), value, axis)
        block: Block[S] = Block(spec, _allocate(spec, self._capacity))
        self._blocks[name] = block
        return block

    def on_remove(self, hook: Callable[[int], None]) -> None:
        """Call ``hook(row)`` when a row is removed, before another row moves into it."""
        self._on_remove.append(hook)

    def on_move(self, hook: Callable[[int, int], None]) -> None:
        """Call ``hook(src, dst)`` after the swap-remove moved row ``src`` to ``dst``."""
        self._on_move.append(hook)

    # -- rows ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: object) -> bool:
        return key in self._row_of

    @property
    def capacity(self) -> int:
        """Rows allocated in every block (doubles when an add finds the table full)."""
        return self._capacity

    @property
    def ids(self) -> list[K]:
        """Keys in row order (do not mutate)."""
        return self._ids

    def row(self, key: K) -> int:
        """The row ``key`` is in now (it changes when a swap-remove moves it)."""
        return self._row_of[key]

    def rows(self, keys: Iterable[K]) -> list[int]:
        """The rows several keys are in now, in order (one call for a burst)."""
        row_of = self._row_of
        return [row_of[key] for key in keys]

    def add(self, key: K) -> int:
        """Append a row for ``key``, every block at its default, and return its index."""
        if key in self._row_of:
            raise KeyError(f"row {key!r} exists")
        if len(self._ids) == self._capacity:
            self._grow()
        row = len(self._ids)
        for block in self._blocks.values():
            block.by_row()[row] = block.spec.default
        self._ids.append(key)
        self._row_of[key] = row
        return row

    def remove(self, key: K) -> None:
        """Drop ``key``'s row: the last row moves into the hole, in every block."""
        row = self._row_of[key]
        for hook in self._on_remove:
            hook(row)
        del self._row_of[key]
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            for block in self._blocks.values():
                by_row = block.by_row()
                by_row[row] = by_row[last]
            self._ids[row] = moved
            self._row_of[moved] = row
        self._ids.pop()
        if row != last:
            for move in self._on_move:
                move(last, row)

    def block(self, name: str) -> npt.NDArray[Any]:
        """The live rows of one block, row axis first: a view, valid until the next add."""
        block = self._blocks[name]
        rows = block.data if block.spec.axis == 0 else block.by_row()
        return rows[: len(self._ids)]

    def _grow(self) -> None:
        old = self._capacity
        self._capacity *= 2
        for block in self._blocks.values():
            grown = _allocate(block.spec, self._capacity)
            np.moveaxis(grown, block.spec.axis, 0)[:old] = block.by_row()
            block.data = grown


class BlockField(Generic[S]):
    """A stage attribute backed by a block: ``self.x = rows.declare(...)`` binds it, and
    reading ``self.x`` gives the block's current array (never one a grow replaced)."""

    __slots__ = ("_key", "_name")

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self._key = f"_{name}_block"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> BlockField[S]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> npt.NDArray[S]: ...
    def __get__(
        self, obj: object | None, owner: type | None = None
    ) -> BlockField[S] | npt.NDArray[S]:
        if obj is None:
            return self
        try:
            block: Block[S] = obj.__dict__[self._key]
        except KeyError:
            raise AttributeError(
                f"{type(obj).__name__}.{self._name} is not bound: assign it rows.declare(...)"
            ) from None
        return block.data

    def __set__(self, obj: object, block: Block[S]) -> None:
        if not isinstance(block, Block):
            raise TypeError("a block field takes a Block from RowTable.declare, not an array")
        obj.__dict__[self._key] = block


def table_of(rows: RowTable[Any] | int) -> RowTable[Any]:
    """``rows`` itself, or a private table of that capacity for a stage used on its own."""
    return rows if isinstance(rows, RowTable) else RowTable(capacity=rows)
