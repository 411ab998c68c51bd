"""Speech for one rig group: text streams and timed utterances, sampled for all rows per tick.

Sessions that have spoken hold a *slot* in the group's :class:`SpeechSessions` bank (slots are
handed out on first use and returned when the session goes, so silent sessions cost nothing).
Per tick the bank is sampled in one kernel call, gathered into row order with one fancy index,
and mapped onto the rig's morphs in one retarget call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from avatar_engine.rigs.profile import RigProfile
from avatar_engine.rows import BlockField, RowTable
from avatar_engine.speech.coarticulation import CHANNELS
from avatar_engine.speech.lipsync import Utterance
from avatar_engine.speech.rig import SpeechRig
from avatar_engine.speech.stream import SpeechSessions, StreamOptions
from avatar_engine.types import F32

INITIAL_SLOTS: Final = 8
LIP_ACTIVITY: Final = 0.15
"""A lip channel above this counts as 'inside a word' (blinks wait for word ends)."""


@dataclass(frozen=True, slots=True)
class SpeakingChange:
    """A row started or stopped speaking this tick (the engine turns it into an event)."""

    row: int
    speaking: bool


class SpeechStage:
    """Slots, streams and per-tick sampling for the sessions (rows) of one rig.

    Its per-row arrays are blocks of the group's row table; the slots are this stage's own,
    indexed by ``_slot_of_row``, and a removed row's slot is returned by an ``on_remove`` hook.
    """

    _slot_of_row = BlockField[np.int64]()
    """Each row's slot in the bank, or -1 for a session that has not spoken."""
    _layer = BlockField[np.float32]()
    """This tick's sampled speech channels in row order."""

    def __init__(self, rig: RigProfile, rows: RowTable[Any], backend: str | None) -> None:
        self.rig = SpeechRig(rig, backend=backend)
        self.sessions = SpeechSessions(INITIAL_SLOTS, backend=backend)
        self._free: list[int] = list(range(INITIAL_SLOTS - 1, -1, -1))
        self._slot_of_row = rows.declare("speech.slot_of_row", (), np.int64, -1)
        self._layer = rows.declare("speech.layer", (CHANNELS,), np.float32)
        rows.on_remove(self._release)
        self._utterance_end = np.full(INITIAL_SLOTS, -np.inf)
        self._channels: F32 = np.zeros((INITIAL_SLOTS + 1, CHANNELS), np.float32)
        """Sampled slots; the extra last row stays zero for rows without a slot."""
        self._stream_active = np.zeros(INITIAL_SLOTS, np.bool_)
        silent = np.zeros((1, self.rig.rig.morph_count), np.float32)
        self.rig.run(np.zeros((1, CHANNELS), np.float32), silent)
        self._silent = silent[0]
        """The morphs of no speech (the rig's offsets, clamped): every row's while none has a
        slot, computed by the same kernel so the shortcut in :meth:`step` equals the full path."""

    def _release(self, row: int) -> None:
        """A removed row gives its slot back (the table then moves the last row into it)."""
        slot = int(self._slot_of_row[row])
        if slot >= 0:
            self.sessions.release(slot)
            self._utterance_end[slot] = -np.inf
            self._free.append(slot)

    def _slot(self, row: int) -> int:
        slot = int(self._slot_of_row[row])
        if slot >= 0:
            return slot
        if not self._free:
            old = self.sessions.bank.sessions
            self.sessions.grow(2 * old)
            self._free = list(range(2 * old - 1, old - 1, -1))
            ends = np.full(2 * old, -np.inf)
            ends[:old] = self._utterance_end
            self._utterance_end = ends
            self._channels = np.zeros((2 * old + 1, CHANNELS), np.float32)
            self._stream_active = np.zeros(2 * old, np.bool_)
        slot = self._free.pop()
        self._slot_of_row[row] = slot
        return slot

    # -- inputs --------------------------------------------------------------------------

    def push_text(self, row: int, delta: str, now: float, options: StreamOptions | None) -> None:
        """Streamed text for a row: words are scheduled as soon as they are complete."""
        slot = self._slot(row)
        if options is not None:
            self.sessions.stream(slot, options)
        self.sessions.push(slot, delta, now)

    def interrupt(self, row: int, now: float) -> None:
        """Barge-in: cut the row's speech at ``now`` (a row that never spoke has nothing)."""
        slot = int(self._slot_of_row[row])
        if slot >= 0:
            self.sessions.interrupt(slot, now)
            self._utterance_end[slot] = min(self._utterance_end[slot], now)

    def play(self, row: int, utterance: Utterance, start: float, now: float) -> None:
        """Play timed keyframes (external timings, audio) with their time 0 at ``start``."""
        slot = self._slot(row)
        keys = utterance.keys
        if not len(keys):
            return
        self.sessions.interrupt(slot, now)
        self.sessions.bank.splice(slot, keys.times + start, keys.values, keep_after=now)
        self._utterance_end[slot] = float(keys.times[-1]) + start

    def play_frames(
        self, row: int, times: npt.NDArray[np.float64], channels: F32, now: float
    ) -> None:
        """Streamed frames (audio lip-sync): appended to the row's curves from ``times[0]``."""
        slot = self._slot(row)
        self.sessions.bank.splice(slot, times, channels, keep_after=now)
        self._utterance_end[slot] = max(self._utterance_end[slot], float(times[-1]))

    # -- the tick ------------------------------------------------------------------------

    def step(
        self,
        t: float,
        n_rows: int,
        speech_morphs: F32,
        speaking: F32,
        in_word: npt.NDArray[np.bool_],
    ) -> list[SpeakingChange]:
        """Sample every slot, write rows' speech morphs and flags; return speaking changes.

        ``speaking`` is the animator's row array: its previous contents are last tick's flags,
        so changes come from comparing, with no state of our own to keep in row order.
        """
        slots = self._slot_of_row[:n_rows]
        if not (slots >= 0).any():  # nobody has spoken (capture only): no curve to sample
            return self._silence(n_rows, speech_morphs, speaking, in_word)
        self.sessions.update(t)
        n_slots = self.sessions.bank.sessions
        sampled = self._channels[:n_slots]
        self.sessions.sample(t, sampled)
        gather = np.where(slots >= 0, slots, n_slots)  # rows without a slot read the zero row
        layer = self._layer[:n_rows]
        np.take(self._channels, gather, axis=0, out=layer)
        self.rig.run(layer, speech_morphs[:n_rows])
        self._stream_active[:] = False
        self._stream_active[list(self.sessions.speaking)] = True
        safe = np.maximum(slots, 0)
        now_speaking = (slots >= 0) & ((self._utterance_end[safe] > t) | self._stream_active[safe])
        changed = np.flatnonzero((speaking[:n_rows] > 0) != now_speaking)
        speaking[:n_rows] = now_speaking
        in_word[:n_rows] = now_speaking & (layer.max(axis=1) > LIP_ACTIVITY)
        return [SpeakingChange(r, bool(now_speaking[r])) for r in changed.tolist()]

    def _silence(self, n_rows: int, speech_morphs: F32, speaking: F32,
                 in_word: npt.NDArray[np.bool_]) -> list[SpeakingChange]:  # fmt: skip
        """:meth:`step` when no row holds a slot: what the full path gives for rows that read
        the zero row (0.124 -> 0.017 ms of CPU a tick at 100 rows here, most of it the rig's
        kernel: ``benchmarks/tick_profile.py --speaking 0``). A row gets a slot before it can
        speak and keeps it until it is removed (its flags go with it), so no row here was
        speaking: there is no change to report."""
        self._layer[:n_rows] = 0.0
        speech_morphs[:n_rows] = self._silent
        speaking[:n_rows] = 0.0
        in_word[:n_rows] = False
        return []
