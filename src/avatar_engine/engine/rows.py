"""Rows of engine-owned arrays: the struct-of-arrays layout every per-tick stage reads.

A session is a row index into each block (capture weights, morphs, channels...). Removing a
session moves the last row into its place, like three.js's active/inactive lists, so the live
rows stay packed at ``[0, len)`` and a stage always runs on one contiguous slice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt


class RowTable:
    """Fixed-width float blocks whose rows are sessions; capacity doubles when full."""

    __slots__ = ("_blocks", "_capacity", "_ids", "_row_of")

    def __init__(
        self, widths: Mapping[str, tuple[int, npt.DTypeLike]], *, capacity: int = 8
    ) -> None:
        self._capacity = max(1, capacity)
        self._blocks: dict[str, npt.NDArray[Any]] = {
            name: np.zeros((self._capacity, width), dtype=dtype)
            for name, (width, dtype) in widths.items()
        }
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: object) -> bool:
        return key in self._row_of

    @property
    def ids(self) -> list[str]:
        """Session ids in row order (do not mutate)."""
        return self._ids

    def row(self, key: str) -> int:
        return self._row_of[key]

    def add(self, key: str) -> int:
        """Append a zeroed row for ``key`` and return its index."""
        if key in self._row_of:
            raise KeyError(f"row {key!r} exists")
        if len(self._ids) == self._capacity:
            self._grow()
        row = len(self._ids)
        for block in self._blocks.values():
            block[row] = 0
        self._ids.append(key)
        self._row_of[key] = row
        return row

    def remove(self, key: str) -> None:
        """Drop ``key``'s row; the last row moves into the hole."""
        row = self._row_of.pop(key)
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            for block in self._blocks.values():
                block[row] = block[last]
            self._ids[row] = moved
            self._row_of[moved] = row
        self._ids.pop()

    def block(self, name: str) -> npt.NDArray[Any]:
        """The live rows of one block: a view, valid until the next add/remove."""
        return self._blocks[name][: len(self._ids)]

    def _grow(self) -> None:
        self._capacity *= 2
        for name, block in self._blocks.items():
            grown = np.zeros((self._capacity, *block.shape[1:]), dtype=block.dtype)
            grown[: block.shape[0]] = block
            self._blocks[name] = grown
