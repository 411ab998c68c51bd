"""Frame encoding: every stream of a tick in one call, state in arrays (sans-I/O).

A *stream* here is one (session, LOD, delta mode, bit depth) group: the engine encodes it once
per tick and sends the same bytes to every subscriber of the group. :class:`BatchEncoder`
keeps, per stream, exactly what its decoders hold (the codes after the last frame, the last
keyframe's codes, sequence numbers and times) in struct-of-arrays form::

    held   int32  [K, N]   codes the decoder shows now (N = level 0's element count)
    kf     int32  [K, N]   codes of the last keyframe (what keyframe-relative deltas refer to)
    still  uint8  [K, N]   frames a change has been held back by the dead band
    seq, kf_seq, last_t, kf_t, next_due, ...   one entry per stream

:meth:`BatchEncoder.encode` runs the Cython kernel (``codec._fast``) over all streams in one
call and writes all messages into one reused buffer; without the extension it runs
:func:`_encode_stream`, the readable reference of the same algorithm, stream by stream (the
parity tests require byte-identical output). Time is an argument (``t_ms``, integer ms on the
stream clock, never decreasing); nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgpack
import numpy as np
import numpy.typing as npt

from avatar_engine.codec.body import body_capacity, pack_body
from avatar_engine.codec.messages import StreamParams
from avatar_engine.codec.schema import StreamSchema, quantize
from avatar_engine.codec.wire import LOD_LEVELS, SEQ_HALF, DeltaMode, MsgType
from avatar_engine.types import F32, F64, I32, U8

try:
    from avatar_engine.codec import _fast
except ImportError:  # pragma: no cover - source tree without the built extension
    _fast = None  # type: ignore[assignment]


NONE: Final = 0
KEYFRAME: Final = 1
DELTA: Final = 2
FOLLOW_TOLERANCE: Final = 1.0
"""How early, in periods, an input-driven frame may come before its place in the level's rate
(:meth:`BatchEncoder.make_due`): capture read up to a period late (a busy loop) loses nothing."""

_HEADER_MAX: Final = 48
"""Upper bound of a frame's msgpack header: array, type, sid, lod, seq, t/back/dt, bin header."""


@dataclass(frozen=True, slots=True)
class EncodedTick:
    """The messages of one tick: stream ``k``'s bytes are ``buffer[offsets[k]:offsets[k+1]]``.

    ``buffer`` is reused by the next :meth:`BatchEncoder.encode` call: send (or copy) first.
    """

    buffer: memoryview
    offsets: npt.NDArray[np.int64]
    kinds: npt.NDArray[np.uint8]
    """0 = nothing this tick (not due, or an empty chained delta), 1 = keyframe, 2 = delta."""

    def message(self, k: int) -> memoryview:
        """Stream ``k``'s message this tick (empty if it sent nothing): a view, valid until
        the next encode."""
        return self.buffer[int(self.offsets[k]) : int(self.offsets[k + 1])]


@dataclass(frozen=True, slots=True)
class QuantTables:
    """The quantization tables of every (level, bits) pair, flattened for the kernel.

    Table ``lv * 2 + (bits == 16)`` is entries ``tab_off[i] : tab_off[i] + tab_n[i]`` of the
    ``q_*`` arrays; ``period`` is each level's frame period in ms.
    """

    tab_off: I32
    tab_n: I32
    tab_nm: I32
    q_index: I32
    q_lo: F64
    q_scale: F64
    q_cmin: I32
    q_cmax: I32
    period: F64

    @classmethod
    def for_schema(cls, schema: StreamSchema) -> QuantTables:
        """Every table of ``schema``, built once per encoder (the kernel only indexes them)."""
        tabs = [schema.quant_table(lv, b) for lv in range(LOD_LEVELS) for b in (8, 16)]
        return cls(
            tab_off=np.cumsum([0] + [len(t.index) for t in tabs[:-1]]).astype(np.int32),
            tab_n=np.array([len(t.index) for t in tabs], np.int32),
            tab_nm=np.array([t.n_morphs for t in tabs], np.int32),
            q_index=np.concatenate([t.index for t in tabs]).astype(np.int32),
            q_lo=np.concatenate([t.lo for t in tabs]),
            q_scale=np.concatenate([t.scale for t in tabs]),
            q_cmin=np.concatenate([t.cmin for t in tabs]).astype(np.int32),
            q_cmax=np.concatenate([t.cmax for t in tabs]).astype(np.int32),
            period=np.array([1000.0 / lv.fps for lv in schema.lods], np.float64),
        )


@dataclass(frozen=True, slots=True)
class TickBuffers:
    """Where a tick's messages go: stream ``k`` at ``buffer[offsets[k]:offsets[k + 1]]``."""

    buffer: bytearray
    max_msg: int
    """Bytes reserved per stream: the largest message a stream can produce."""
    offsets: npt.NDArray[np.int64]
    kinds: U8


class BatchEncoder:
    """Encoder state for up to ``capacity`` streams of one rig (one :class:`StreamSchema`)."""

    def __init__(self, schema: StreamSchema, capacity: int, *, use_fast: bool | None = None):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if use_fast and _fast is None:
            raise RuntimeError("the Cython codec extension (codec._fast) is not built")
        self.schema = schema
        self.capacity = capacity
        self.use_fast = _fast is not None if use_fast is None else use_fast
        n = schema.lods[0].size
        self.width = n
        k = capacity
        self.active = np.zeros(k, np.uint8)
        self.row = np.zeros(k, np.int32)
        self.sid = np.zeros(k, np.int64)
        self.lod = np.zeros(k, np.int32)
        self.mode = np.zeros(k, np.int32)
        self.bits = np.full(k, 8, np.int32)
        self.keyframe_ms = np.zeros(k, np.int64)
        self.dead_band = np.zeros(k, np.float64)
        self.hold = np.ones(k, np.int32)
        self.seq = np.zeros(k, np.int32)
        self.kf_seq = np.zeros(k, np.int32)
        self.last_t = np.zeros(k, np.int64)
        self.kf_t = np.zeros(k, np.int64)
        self.next_due = np.zeros(k, np.float64)
        self.follow_t = np.zeros(k, np.float64)
        """When the next input-driven frame is due at the level's rate (see :meth:`make_due`)."""
        self.has_kf = np.zeros(k, np.uint8)
        self.started = np.zeros(k, np.uint8)
        self.force = np.zeros(k, np.uint8)
        self.held = np.zeros((k, n), np.int32)
        self.kf = np.zeros((k, n), np.int32)
        self.still = np.zeros((k, n), np.uint8)
        self._tables = QuantTables.for_schema(schema)
        max_msg = _HEADER_MAX + body_capacity(n, 16)
        self._out = TickBuffers(
            bytearray(max_msg * k), max_msg, np.zeros(k + 1, np.int64), np.zeros(k, np.uint8)
        )
        self._max_row = -1
        self._groups: dict[tuple[int, int, StreamParams], int] = {}
        self._refs = np.zeros(k, np.int64)
        if self.use_fast:
            self._kernel = _fast.TickKernel(self, self._tables, self._out)

    def _rows_changed(self) -> None:
        active = self.row[self.active == 1]
        self._max_row = int(active.max()) if active.size else -1

    # ------------------------------------------------------------------ stream table

    def add_stream(self, row: int, sid: int, lod: int, params: StreamParams) -> int:
        """Start a stream for session row ``row``; returns its slot. It opens with a keyframe."""
        free = np.flatnonzero(self.active == 0)
        if free.size == 0:
            raise RuntimeError(f"all {self.capacity} stream slots are in use")
        if not 0 <= lod < LOD_LEVELS:
            raise ValueError(f"lod must be 0..{LOD_LEVELS - 1}")
        if not 0 <= sid <= 0xFFFFFFFF:
            raise ValueError("sid must fit in 32 bits")
        k = int(free[0])
        self.active[k] = 1
        self.row[k] = row
        self.sid[k] = sid
        self.lod[k] = lod
        self.mode[k] = int(params.mode)
        self.bits[k] = params.bits
        self.keyframe_ms[k] = params.keyframe_ms
        self.dead_band[k] = params.dead_band
        self.hold[k] = params.hold
        self.seq[k] = 0xFFFF  # the first frame is seq 0
        self.kf_seq[k] = 0
        self.last_t[k] = 0
        self.kf_t[k] = 0
        self.next_due[k] = 0.0
        self.follow_t[k] = 0.0
        self.has_kf[k] = 0
        self.started[k] = 0
        self.force[k] = 0
        self.held[k] = 0
        self.kf[k] = 0
        self.still[k] = 0
        self._rows_changed()
        return k

    def remove_stream(self, k: int) -> None:
        """Free slot ``k`` at once, whatever its subscriber count (see :meth:`release`)."""
        self.active[k] = 0
        self._refs[k] = 0
        self._groups = {key: slot for key, slot in self._groups.items() if slot != k}
        self._rows_changed()

    def acquire(self, row: int, sid: int, lod: int, params: StreamParams) -> tuple[int, bool]:
        """Add a subscriber to group (session ``sid``, ``lod``, ``params``): (slot, created).

        The first subscriber creates the stream (it opens with a keyframe on the next tick);
        later ones share its bytes and should be sent
        :meth:`keyframe_for_new_subscriber` first. Balance every call with :meth:`release`.
        """
        key = (sid, lod, params)
        slot = self._groups.get(key)
        created = slot is None
        if slot is None:
            slot = self.add_stream(row, sid, lod, params)
            self._groups[key] = slot
        self._refs[slot] += 1
        return slot, created

    def release(self, slot: int) -> bool:
        """Remove one subscriber of ``slot``; the stream stops with its last one (True)."""
        if self._refs[slot] <= 0:
            raise ValueError(f"slot {slot} has no subscribers")
        self._refs[slot] -= 1
        if self._refs[slot] == 0:
            self.remove_stream(slot)
            return True
        return False

    def subscribers(self, slot: int) -> int:
        """How many subscribers share ``slot``'s bytes."""
        return int(self._refs[slot])

    def move_row(self, src: int, dst: int) -> None:
        """Streams of session row ``src`` follow it to ``dst`` (the engine's row table moved
        it there on a swap-remove; register this as its ``on_move`` hook)."""
        self.row[(self.active == 1) & (self.row == src)] = dst
        self._rows_changed()

    def make_due(self, slots: npt.NDArray[np.intp], t_ms: int) -> None:
        """Let these streams send at ``t_ms`` (fresh input arrived) instead of at their next
        slot, unless that would outrun the level's rate.

        The rate check is a virtual schedule (the generic cell rate algorithm): each
        input-driven frame moves ``follow_t`` one period on from itself (or from now, if
        later), and an input may come up to :data:`FOLLOW_TOLERANCE` periods before it. So
        over any stretch of time a stream sends no more than its level's rate plus one frame,
        while input that arrives at that rate is never dropped for its jitter: a packet read
        late (the loop was busy in a tick) and the next one read on time are both sent. A
        check of the interval since the last frame alone dropped the second of such a pair
        whenever the jitter passed a quarter period (about 3 % of frames at 500 viewers).
        """
        if not slots.size:
            return
        period = self._tables.period[self.lod[slots]]
        ready = (self.started[slots] == 1) & (
            t_ms >= self.follow_t[slots] - FOLLOW_TOLERANCE * period
        )
        due = slots[ready]
        self.next_due[due] = np.minimum(self.next_due[due], float(t_ms))

    def follow_input(self, slots: npt.NDArray[np.intp], t_ms: int) -> None:
        """After sending on input arrival: advance the virtual schedule one period, and let the
        schedule wait 1.5 periods for the next input before sending on its own, so scheduled
        ticks do not take the slot the next input needs (it would then wait most of a
        period)."""
        if not slots.size:
            return
        period = self._tables.period[self.lod[slots]]
        self.follow_t[slots] = np.maximum(self.follow_t[slots], float(t_ms)) + period
        self.next_due[slots] = np.maximum(self.next_due[slots], t_ms + 1.5 * period)

    def force_keyframe(self, k: int) -> None:
        """Make stream ``k``'s next frame a keyframe for every subscriber."""
        self.force[k] = 1

    def keyframe_for_new_subscriber(self, k: int) -> bytes | None:
        """A keyframe one subscriber can start from without disturbing the others.

        Chained: the held state at the last sequence number (the next delta refers to it).
        Keyframe-relative: the last keyframe again, byte for byte (deltas refer to it).
        ``None`` before the stream's first frame: that one is a keyframe anyway.
        """
        if not self.has_kf[k]:
            return None
        n = self.schema.lods[int(self.lod[k])].size
        if self.mode[k] == DeltaMode.KEYFRAME:
            codes, seq, t = self.kf[k, :n], int(self.kf_seq[k]), int(self.kf_t[k])
        else:
            codes, seq, t = self.held[k, :n], int(self.seq[k]), int(self.last_t[k])
        return self._keyframe_bytes(k, codes, seq, t)

    # ------------------------------------------------------------------ the tick

    def encode(self, t_ms: int, morphs: F32, channels: F32) -> EncodedTick:
        """Encode every active stream that is due at ``t_ms`` from the session arrays.

        ``morphs`` is (S, M) float32 and ``channels`` (S, C) float32, rows indexed by the
        streams' session rows. Returns views of this encoder's reused output buffer.
        """
        s = self.schema
        if not 0 <= t_ms < 1 << 63:
            raise ValueError("t_ms must be a non-negative integer number of milliseconds")
        if morphs.dtype != np.float32 or morphs.ndim != 2 or morphs.shape[1] != s.n_morphs:
            raise ValueError(f"morphs: expected float32 (S, {s.n_morphs})")
        if channels.dtype != np.float32 or channels.ndim != 2 or channels.shape[1] != s.n_channels:
            raise ValueError(f"channels: expected float32 (S, {s.n_channels})")
        if channels.shape[0] != morphs.shape[0]:
            raise ValueError("morphs and channels need the same number of rows")
        if self._max_row >= morphs.shape[0]:
            raise ValueError("a stream refers to a session row beyond the arrays")
        morphs = np.ascontiguousarray(morphs)
        channels = np.ascontiguousarray(channels)
        if self.use_fast:
            self._kernel(int(t_ms), morphs, channels)
        else:
            out = self._out
            pos = 0
            for k in range(self.capacity):
                out.offsets[k] = pos
                out.kinds[k] = NONE
                if self.active[k]:
                    kind, data = _encode_stream(self, k, int(t_ms), morphs, channels)
                    out.kinds[k] = kind
                    out.buffer[pos : pos + len(data)] = data
                    pos += len(data)
            out.offsets[self.capacity] = pos
        return EncodedTick(memoryview(self._out.buffer), self._out.offsets, self._out.kinds)

    def _keyframe_bytes(self, k: int, codes: npt.NDArray[np.int32], seq: int, t: int) -> bytes:
        lv = int(self.lod[k])
        table = self.schema.quant_table(lv, int(self.bits[k]))
        idx = np.flatnonzero(codes).astype(np.int32)
        body = pack_body(idx, codes[idx], len(table.index), table.n_morphs, int(self.bits[k]))
        out: bytes = msgpack.packb(
            [MsgType.KEYFRAME, int(self.sid[k]), lv, seq, t, body], use_bin_type=True
        )
        return out


def _encode_stream(
    enc: BatchEncoder, k: int, t: int, morphs: F32, channels: F32
) -> tuple[int, bytes]:
    """The reference algorithm for one stream and one tick (docs/protocol.md, "Encoder")."""
    lv = int(enc.lod[k])
    bits = int(enc.bits[k])
    period = float(enc._tables.period[lv])
    # 1. Rate: a level sends at its fps; a late tick is not made up for with a burst.
    if enc.started[k] and t < enc.next_due[k] - period / 4:
        return NONE, b""
    nxt = float(enc.next_due[k]) + period if enc.started[k] else t + period
    enc.next_due[k] = nxt if nxt > t else t + period
    enc.started[k] = 1
    # 2. Quantize the level's elements.
    table = enc.schema.quant_table(lv, bits)
    n = len(table.index)
    row = int(enc.row[k])
    values = np.concatenate([morphs[row], channels[row]])[table.index]
    x, c = quantize(values, table)
    held = enc.held[k, :n]
    mode = int(enc.mode[k])
    seq_next = (int(enc.seq[k]) + 1) & 0xFFFF
    keyframe = (
        not enc.has_kf[k]
        or enc.force[k]
        or t - int(enc.kf_t[k]) >= int(enc.keyframe_ms[k])
        or (mode == DeltaMode.KEYFRAME and (seq_next - int(enc.kf_seq[k])) % 65536 >= SEQ_HALF)
    )
    if keyframe:
        held[:] = c
        enc.kf[k, :n] = c
        enc.still[k, :n] = 0
        enc.seq[k] = seq_next
        enc.kf_seq[k] = seq_next
        enc.kf_t[k] = t
        enc.last_t[k] = t
        enc.has_kf[k] = 1
        enc.force[k] = 0
        return KEYFRAME, enc._keyframe_bytes(k, c, seq_next, t)
    # 3. Dead band with hold, measured against the value (not its rounded code).
    still = enc.still[k, :n].astype(np.int32)
    changed = c != held
    big = changed & (np.abs(x - held) > enc.dead_band[k])
    small = changed & ~big
    still = np.where(small, still + 1, 0)
    send = big | (small & (still >= enc.hold[k]))
    still[send] = 0
    held[send] = c[send]
    enc.still[k, :n] = still.astype(np.uint8)
    if mode == DeltaMode.CHAINED:
        if not send.any():
            return NONE, b""  # the decoder already shows this frame; no seq is used
        idx = np.flatnonzero(send)
        back, ref_t = 1, int(enc.last_t[k])
    else:
        idx = np.flatnonzero(held != enc.kf[k, :n])
        back, ref_t = (seq_next - int(enc.kf_seq[k])) % 65536, int(enc.kf_t[k])
    enc.seq[k] = seq_next
    enc.last_t[k] = t
    body = pack_body(idx.astype(np.int32), held[idx], n, table.n_morphs, bits)
    data: bytes = msgpack.packb(
        [MsgType.DELTA, int(enc.sid[k]), lv, seq_next, back, max(0, t - ref_t), body],
        use_bin_type=True,
    )
    return DELTA, data
