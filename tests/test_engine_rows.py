"""The one row table of a rig group: every stage's blocks grow and swap-remove together.

Built in process with no server: a table on its own (add, remove, grow, hooks), the encoder's
streams following their rows through the ``on_move`` hook, and a whole engine where removing a
session must leave every other session's face, speech and capture exactly as if nothing
had moved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from avatar_engine.codec.encoder import BatchEncoder
from avatar_engine.codec.messages import StreamParams
from avatar_engine.codec.schema import StreamSchema
from avatar_engine.engine.engine import Engine
from avatar_engine.rigs.arkit import ARKIT_COUNT, ARKIT_NAMES, ROTATION_COUNT
from avatar_engine.rigs.profile import load_rig
from avatar_engine.rows import Block, BlockField, RowTable


def _table(capacity: int = 2) -> tuple[RowTable[str], list[Block[Any]]]:
    """A table with blocks of several shapes, dtypes and row axes."""
    rows: RowTable[str] = RowTable(capacity=capacity)
    blocks: list[Block[Any]] = [
        rows.declare("scalar", (), np.float64, -1.0),
        rows.declare("vector", (3,), np.int32, 7),
        rows.declare("planes", (4, 5), np.float32, 0.5, axis=1),
        rows.declare("flags", (2,), np.bool_, [True, False]),
    ]
    return rows, blocks


def _stamp(blocks: list[Block[Any]], row: int, value: int) -> None:
    """Write ``value`` into every element of ``row`` in every block."""
    for block in blocks:
        block.by_row()[row] = value % 2 if block.data.dtype == np.bool_ else value


def _value_of(block: Block[Any], row: int) -> set[float]:
    return set(np.unique(block.by_row()[row]).tolist())


def test_add_remove_and_grow_keep_every_block_aligned() -> None:
    rows, blocks = _table(capacity=2)
    rng = np.random.default_rng(3)
    value = {}
    for step in range(60):
        if len(rows) and rng.random() < 0.4:
            rows.remove(rows.ids[int(rng.integers(len(rows)))])
        else:
            key = f"s{step}"
            value[key] = step
            _stamp(blocks, rows.add(key), step)
        for key in rows.ids:
            for block in blocks:
                expect = value[key] % 2 if block.data.dtype == np.bool_ else value[key]
                assert _value_of(block, rows.row(key)) == {expect}, (block.spec.name, key)
    assert rows.capacity >= 16  # it grew on the way
    assert blocks[2].data.shape == (4, rows.capacity, 5)  # the row axis stayed where declared


def test_a_new_row_starts_at_every_default_even_in_a_reused_slot() -> None:
    rows, blocks = _table()
    for key in "abc":
        _stamp(blocks, rows.add(key), 99)
    rows.remove("c")
    row = rows.add("d")  # the slot "c" left, still holding its numbers
    assert _value_of(blocks[0], row) == {-1.0}
    assert _value_of(blocks[1], row) == {7}
    assert _value_of(blocks[2], row) == {0.5}
    assert blocks[3].by_row()[row].tolist() == [True, False]


def test_swap_remove_moves_the_last_row_and_tells_the_hooks() -> None:
    rows, blocks = _table(capacity=8)
    for i, key in enumerate("abcd"):
        _stamp(blocks, rows.add(key), 10 + i)
    calls: list[tuple[str, int, int]] = []

    def removed(row: int) -> None:  # runs before the last row overwrites this one
        calls.append(("remove", row, int(blocks[1].by_row()[row, 0])))

    rows.on_remove(removed)
    rows.on_move(lambda src, dst: calls.append(("move", src, dst)))
    rows.remove("b")
    assert calls == [("remove", 1, 11), ("move", 3, 1)]
    assert rows.ids == ["a", "d", "c"]
    assert rows.rows(["c", "a", "d"]) == [rows.row("c"), 0, 1] == [2, 0, 1]  # a burst's lookup
    assert all(_value_of(block, 1) == {13 % 2 if block.data.dtype == np.bool_ else 13}
               for block in blocks)  # fmt: skip
    calls.clear()
    rows.remove("c")  # the last row: nothing moves
    assert calls == [("remove", 2, 12)]


def test_declaring_checks_names_and_defaults() -> None:
    rows: RowTable[str] = RowTable()
    rows.declare("x", (3,), np.float32)
    with pytest.raises(ValueError, match="declared twice"):
        rows.declare("x", (3,), np.float32)
    with pytest.raises(ValueError):
        rows.declare("y", (3,), np.float32, [1.0, 2.0])  # does not fit a row
    with pytest.raises(KeyError):
        rows.remove("nobody")


class _Stage:
    """A stage the way every stage is written: block fields bound from the table."""

    level = BlockField[np.float32]()

    def __init__(self, rows: RowTable[str]) -> None:
        self.level = rows.declare("stage.level", (), np.float32)


def test_a_block_field_reads_the_current_array_after_a_grow() -> None:
    rows: RowTable[str] = RowTable(capacity=1)
    stage = _Stage(rows)
    rows.add("a")
    stage.level[0] = 3.0
    rows.add("b")  # grows: the array behind the field is replaced
    stage.level[1] = 4.0
    assert stage.level.shape == (2,)
    np.testing.assert_array_equal(rows.block("stage.level"), [3.0, 4.0])


def test_a_stage_cannot_keep_an_array_of_its_own_in_a_block_field() -> None:
    rows: RowTable[str] = RowTable()
    stage = _Stage(rows)
    with pytest.raises(TypeError, match=r"RowTable\.declare"):
        stage.level = np.zeros(8, np.float32)  # type: ignore[assignment]
    with pytest.raises(AttributeError, match="not bound"):
        _ = _Stage.__new__(_Stage).level  # never declared: no silent empty array


def _walk(obj: object, seen: set[int], path: str = "") -> list[tuple[str, object]]:
    """Every array and block held in an object's attributes, recursively through project
    objects (the row table itself is not entered: it is where blocks belong)."""
    found: list[tuple[str, object]] = []
    if id(obj) in seen or isinstance(obj, RowTable):
        return found
    seen.add(id(obj))
    values: dict[str, object] = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
    for name in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, name):
            values[name] = getattr(obj, name)
    for name, value in values.items():
        if isinstance(value, np.ndarray | Block):
            found.append((f"{path}{name}", value))
        elif type(value).__module__.startswith("avatar_engine"):
            found += _walk(value, seen, f"{path}{name}.")
    return found


def test_every_per_session_array_of_a_rig_group_is_a_block_of_its_table() -> None:
    """Nothing to leave out of a list, so a swap-remove cannot miss an array: no stage holds
    a per-row ndarray of its own, and every block a stage holds is in the group's table (not
    in a private one whose rows would never move). Rig tables and slot arrays are sized by
    the rig or the speech slots, never by the rows."""
    engine = Engine(backend="numpy")
    for i in range(37):  # grows the table to 64 rows, a size no rig table has here
        engine.create_session(f"s{i}", t=0.0)
    group = engine.group("cc4-extended")
    assert group.rows.capacity == 64
    held = _walk(group, set())
    own_arrays = [name for name, v in held if isinstance(v, np.ndarray) and 64 in v.shape]
    assert own_arrays == []
    blocks = [(name, v) for name, v in held if isinstance(v, Block)]
    assert len(blocks) > 80
    for name, block in blocks:
        assert isinstance(block, Block)
        assert np.shares_memory(group.rows.block(block.spec.name), block.data), name


def test_encoder_streams_follow_their_rows_through_the_move_hook() -> None:
    rows: RowTable[str] = RowTable()
    encoder = BatchEncoder(StreamSchema.from_rig(load_rig("arkit52")), 4)
    rows.on_move(encoder.move_row)
    for key in "abc":
        rows.add(key)
    slot_c = encoder.add_stream(rows.row("c"), 3, 0, StreamParams())
    slot_a = encoder.add_stream(rows.row("a"), 1, 0, StreamParams())
    encoder.remove_stream(slot_a)  # the shell drops a session's streams before its row
    rows.remove("a")
    assert encoder.row[slot_c] == rows.row("c") == 0


def _capture(jaw: float) -> np.ndarray:
    arkit = np.zeros(ARKIT_COUNT, np.float32)
    arkit[ARKIT_NAMES.index("jawOpen")] = jaw
    return arkit


def _drive(engine: Engine, ids: list[str], start: float, frames: int) -> dict[str, np.ndarray]:
    """Feed the capture sessions and step; returns every session's morphs, frame by frame."""
    out: dict[str, list[np.ndarray]] = {sid: [] for sid in ids}
    for k in range(frames):
        t = start + (k + 1) / 60
        for i, sid in enumerate(ids):
            if sid.startswith("cap"):
                engine.push_capture(sid, _capture(0.3 + 0.2 * np.sin(t + i)),
                                    np.zeros(ROTATION_COUNT, np.float32), t)  # fmt: skip
        engine.step(t)
        for sid in ids:
            morphs, channels = engine.frame(sid)
            out[sid].append(np.concatenate([morphs, channels]))
    return {sid: np.array(rows) for sid, rows in out.items()}


def test_removing_a_session_leaves_every_other_exactly_as_it_was() -> None:
    """Speech slots, capture, emotion, life, filters and compositor state all move with the
    row: the moved sessions' frames match, frame by frame, an engine where nobody was removed."""
    ids = ["gone", "cap1", "moody", "cap2", "talker"]
    moved, kept = Engine(backend="numpy"), Engine(backend="numpy")
    for engine in (moved, kept):
        for sid in ids:
            engine.create_session(sid, t=0.0)
        engine.push_text("talker", "Hello there, this keeps talking for a while. " * 4, 0.0)
        engine.push_text("gone", "Someone who leaves mid sentence. " * 4, 0.0)
        engine.set_emotion("moody", {"sad": 0.7}, 0.0, transition_s=2.0)
        _drive(engine, ids, 0.0, 30)
    moved.delete_session("gone")  # the talker (last row) moves into row 0, with its slot
    moved.delete_session("cap1")  # cap2 (now last) moves into row 1, with its capture
    assert (moved.row_of("talker"), moved.row_of("cap2")) == (0, 1)
    live = ["moody", "cap2", "talker"]
    got, want = _drive(moved, live, 0.5, 90), _drive(kept, live, 0.5, 90)
    for sid in live:
        np.testing.assert_array_equal(got[sid], want[sid], err_msg=sid)
    assert moved.get("talker").speaking and kept.get("talker").speaking
