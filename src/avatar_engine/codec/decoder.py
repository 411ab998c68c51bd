"""The v1.1 decoder (sans-I/O): bytes in, a typed result out, stream values in arrays.

``Decoder.feed(message)`` returns one of the objects of :mod:`avatar_engine.codec.messages`
and keeps, per stream id, the state a renderer reads: ``decoder.stream(sid).morphs`` (float32,
every rig morph) and ``.channels``. Bad input raises :class:`ProtocolError` with a category
code and leaves every stream untouched. A frame that cannot be applied (a gap in a chained
stream, a delta against a keyframe the decoder does not have, another LOD) returns
:class:`NeedKeyframe`: the client then sends CONTROL REQUEST_KEYFRAME; it never shows garbage.

Keyframes and deltas go through the Cython twin (``codec._fast``) when it is built; both
produce the same results and error codes on the conformance vectors.
"""

from __future__ import annotations

import numpy as np

from avatar_engine.codec import messages as m
from avatar_engine.codec.body import unpack_body
from avatar_engine.codec.mpack import Value, unpack
from avatar_engine.codec.schema import code_limits
from avatar_engine.codec.wire import (
    LIMIT,
    LOD_LEVELS,
    MAX_MESSAGE_BYTES,
    MAX_STREAMS,
    TYPE,
    VALUE,
    MsgType,
    ProtocolError,
    seq_newer,
)
from avatar_engine.types import F32, I32

try:
    from avatar_engine.codec import _fast
except ImportError:  # pragma: no cover - source tree without the built extension
    _fast = None  # type: ignore[assignment]


class StreamState:
    """One stream as its decoder holds it (a renderer reads ``morphs`` and ``channels``)."""

    __slots__ = (
        "_ci",
        "_lo",
        "_mi",
        "_span",
        "channels",
        "codes",
        "has_kf",
        "hello",
        "kf_codes",
        "kf_seq",
        "kf_t",
        "last_seq",
        "last_t",
        "lod",
        "morphs",
        "want_lod",
    )

    def __init__(self, hello: m.Hello) -> None:
        s = hello.schema
        n = s.lods[0].size
        self.hello = hello
        self.morphs: F32 = s.lo.astype(np.float32)
        self.channels: F32 = np.zeros(s.n_channels, np.float32)
        self.codes: I32 = np.zeros(n, np.int32)
        self.kf_codes: I32 = np.zeros(n, np.int32)
        self.lod = -1
        self._mi = self._ci = np.zeros(0, np.int64)
        self._lo = self._span = np.zeros(0, np.float64)
        self.want_lod = -1
        self.has_kf = False
        self.last_seq = 0
        self.kf_seq = 0
        self.last_t = 0
        self.kf_t = 0

    @property
    def t_ms(self) -> int:
        """The stream time of the last frame applied (ms): what a delta's ``dt`` counts from."""
        return self.last_t

    def set_level(self, lod: int) -> None:
        """Switch to level ``lod``: every element rests at code 0, the level's tables cached."""
        s = self.hello.schema
        table = s.lods[lod]
        self.lod = lod
        self._mi = np.asarray(table.morphs, dtype=np.int64)
        self._ci = np.asarray(table.channels, dtype=np.int64)
        self._lo = s.lo[self._mi]
        self._span = s.hi[self._mi] - self._lo
        self.morphs[:] = s.lo.astype(np.float32)
        self.channels[:] = 0.0

    def refresh_values(self) -> None:
        """Dequantize the level's codes into ``morphs``/``channels`` (docs/protocol.md 6.1)."""
        q, r = code_limits(self.hello.params.bits)
        nm = len(self._mi)
        codes = self.codes[: nm + len(self._ci)].astype(np.float64)
        self.morphs[self._mi] = self._lo + (self._span * codes[:nm]) / q
        self.channels[self._ci] = (self.hello.schema.rot_scale * codes[nm:]) / r


class Decoder:
    """Decodes every v1.1 message; holds the streams announced by hello messages (audio is
    checked against its stream's hello)."""

    def __init__(self, *, use_fast: bool | None = None, max_streams: int = MAX_STREAMS) -> None:
        if use_fast and _fast is None:
            raise RuntimeError("the Cython codec extension (codec._fast) is not built")
        self.use_fast = _fast is not None if use_fast is None else use_fast
        self.max_streams = max_streams
        self._streams: dict[int, StreamState] = {}
        self._publishers: dict[int, m.PublishHello] = {}

    def stream(self, sid: int) -> StreamState:
        """The state of stream ``sid`` (KeyError before its hello): current values, level and
        sequence."""
        return self._streams[sid]

    def expect_lod(self, sid: int, lod: int) -> None:
        """Call when sending SET_LOD: keyframes of other levels (late, reordered) are stale."""
        st = self._streams.get(sid)
        if st is not None:
            st.want_lod = lod

    def feed(self, data: bytes | bytearray | memoryview) -> m.Message:
        """Decode one WebSocket message (or data-channel message) and apply it to its stream's
        state.

        Returns the parsed message (a frame's result after its stream state is updated).
        Malformed input raises :class:`ProtocolError` carrying the protocol's error code, so the
        caller can close with it.
        """
        if len(data) > MAX_MESSAGE_BYTES:
            raise ProtocolError(LIMIT, f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
        raw = bytes(data)
        if self.use_fast and raw and raw[0] in (0x96, 0x97, 0xDC, 0xDD):
            head = _fast.parse_frame(raw)
            if head is not None:
                return self._frame_fast(raw, head)
        msg = unpack(raw)
        if not isinstance(msg, list) or not msg:
            raise ProtocolError(TYPE, "a message is a non-empty msgpack array")
        kind = m.field_uint(msg, 0, "message type", 255)
        if kind == MsgType.HELLO:
            hello = m.parse_hello(msg)
            if hello.sid not in self._streams and len(self._streams) >= self.max_streams:
                raise ProtocolError(LIMIT, f"more than {self.max_streams} streams")
            self._streams[hello.sid] = StreamState(hello)
            return hello
        if kind in (MsgType.KEYFRAME, MsgType.DELTA):
            return self._frame(msg, kind == MsgType.KEYFRAME)
        if kind == MsgType.EVENT:
            return m.parse_event(msg)
        if kind == MsgType.AUDIO:
            st = self._streams.get(msg[1]) if len(msg) > 1 and isinstance(msg[1], int) else None
            return m.parse_audio(msg, None if st is None else st.hello)
        if kind == MsgType.CONTROL:
            return m.parse_control(msg)
        if kind in (MsgType.PING, MsgType.PONG):
            return m.parse_ping(msg, kind == MsgType.PONG)
        if kind == MsgType.ERROR:
            return m.parse_error(msg)
        if kind == MsgType.PUBLISH_HELLO:
            pub = m.parse_publish_hello(msg)
            if pub.pid not in self._publishers and len(self._publishers) >= self.max_streams:
                raise ProtocolError(LIMIT, f"more than {self.max_streams} publishers")
            self._publishers[pub.pid] = pub
            return pub
        if kind == MsgType.CAPTURE:
            pid = msg[1] if len(msg) > 1 and isinstance(msg[1], int) else -1
            return m.parse_capture(msg, self._publishers.get(pid))
        return m.Ignored(kind)

    # ------------------------------------------------------------------ frames

    def _frame(self, msg: list[Value], keyframe: bool) -> m.Message:
        n_fields = 6 if keyframe else 7
        if len(msg) < n_fields:
            raise ProtocolError(TYPE, f"a frame needs {n_fields} elements, got {len(msg)}")
        sid = m.field_uint(msg, 1, "sid", 0xFFFFFFFF)
        lod = m.field_uint(msg, 2, "lod", 255)
        seq = m.field_uint(msg, 3, "seq", 0xFFFF)
        if keyframe:
            t = m.field_uint(msg, 4, "t")
            back = 0
        else:
            back = m.field_uint(msg, 4, "back", 0xFFFF)
            t = m.field_uint(msg, 5, "dt")
        body = msg[n_fields - 1]
        if not isinstance(body, bytes):
            raise ProtocolError(TYPE, "a frame body must be bin")
        if lod >= LOD_LEVELS:
            raise ProtocolError(VALUE, f"lod {lod} is not 0..{LOD_LEVELS - 1}")
        if not keyframe and not 1 <= back < 1 << 15:
            raise ProtocolError(VALUE, f"back {back} is not 1..32767")
        return self._apply(sid, lod, seq, t, back, keyframe, body)

    def _frame_fast(
        self, raw: bytes, head: tuple[int, int, int, int, int, int, int, int]
    ) -> m.Message:
        kind, sid, lod, seq, t_or_back, dt, body_off, body_len = head
        keyframe = kind == MsgType.KEYFRAME
        body = raw[body_off : body_off + body_len]
        back = 0 if keyframe else t_or_back
        t = t_or_back if keyframe else dt
        return self._apply(sid, lod, seq, t, back, keyframe, body)

    def _apply(
        self, sid: int, lod: int, seq: int, t: int, back: int, keyframe: bool, body: bytes
    ) -> m.Message:
        st = self._streams.get(sid)
        if st is None:
            return m.UnknownStream(sid)
        schema = st.hello.schema
        bits = st.hello.params.bits
        table = schema.lods[lod]
        n = table.size
        nm = len(table.morphs)
        if self.use_fast:
            idx, codes = _fast.unpack_body(body, n, nm, bits)
        else:
            idx, codes = unpack_body(body, n, nm, bits)
        # The body is valid for its level: from here on only stream state decides.
        if keyframe:
            if st.want_lod >= 0 and lod != st.want_lod:
                return m.Stale(sid, lod, seq)
            if st.has_kf and lod == st.lod and seq_newer(st.last_seq, seq):
                return m.Stale(sid, lod, seq)
            st.codes[:] = 0
            st.codes[idx] = codes
            st.kf_codes[:] = st.codes
            if lod != st.lod:
                st.set_level(lod)
            st.has_kf = True
            st.last_seq = st.kf_seq = seq
            st.last_t = st.kf_t = t
            st.refresh_values()
            return m.Frame(sid, lod, seq, t, True, len(idx))
        if st.want_lod >= 0 and lod != st.want_lod:
            return m.Stale(sid, lod, seq)  # a late frame of a level this client left
        if not st.has_kf or lod != st.lod:
            return m.NeedKeyframe(sid, lod, "no keyframe for this level")
        if not seq_newer(seq, st.last_seq):
            return m.Stale(sid, lod, seq)
        ref = (seq - back) & 0xFFFF
        if ref == st.kf_seq:
            st.codes[:] = st.kf_codes
            ref_t = st.kf_t
        elif ref == st.last_seq:
            ref_t = st.last_t
        else:
            return m.NeedKeyframe(
                sid, lod, f"delta {seq} refers to {ref}, which this decoder lacks"
            )
        st.codes[idx] = codes
        st.last_seq = seq
        st.last_t = ref_t + t
        st.refresh_values()
        return m.Frame(sid, lod, seq, st.last_t, False, len(idx))
