"""Every v1.1 message as a value object, with its encoder (msgpack positional arrays).

Frames (keyframe, delta) are written by :mod:`avatar_engine.codec.encoder` (and its Cython
twin); this module writes the rest and validates decoded arrays into these objects. Field
order is the wire order; ``docs/protocol.md`` is the normative text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack
import numpy as np
import numpy.typing as npt

from avatar_engine.codec.mpack import Ext, Value
from avatar_engine.codec.schema import LodTable, StreamSchema
from avatar_engine.codec.wire import (
    BODY,
    DEFAULT_DEAD_BAND,
    DEFAULT_HOLD_FRAMES,
    DEFAULT_KEYFRAME_MS,
    LIMIT,
    LOD_LEVELS,
    MAX_CHANNELS,
    MAX_EVENT_TEXT,
    MAX_MESSAGE_BYTES,
    MAX_MORPHS,
    MAX_NAME_BYTES,
    MAX_PCM16_RATE,
    MIN_PCM16_RATE,
    OPUS_RATE,
    PROTOCOL_MINOR,
    PROTOCOL_VERSION,
    SESSION_STATES,
    TYPE,
    VALUE,
    VERSION,
    AudioCodec,
    ControlOp,
    DeltaMode,
    EventKind,
    MsgType,
    ProtocolError,
    pcm16_max_bytes,
)
from avatar_engine.types import F32

_U64_MAX: Final = (1 << 64) - 1


def pack(obj: Any) -> bytes:
    """msgpack with the options the spec fixes: bin for bytes, str for text, float64 floats."""
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


# --------------------------------------------------------------------------- value objects


@dataclass(frozen=True, slots=True)
class StreamParams:
    """Per-subscription coding choices, announced in hello."""

    bits: int = 8
    mode: DeltaMode = DeltaMode.CHAINED
    keyframe_ms: int = DEFAULT_KEYFRAME_MS
    dead_band: float = DEFAULT_DEAD_BAND
    hold: int = DEFAULT_HOLD_FRAMES

    def __post_init__(self) -> None:
        if self.bits not in (8, 16):
            raise ValueError("bits must be 8 or 16")
        if self.keyframe_ms < 1:
            raise ValueError("keyframe_ms must be at least 1")
        if not (np.isfinite(self.dead_band) and self.dead_band >= 0):
            raise ValueError("dead_band must be a finite number >= 0 (steps)")
        if not 1 <= self.hold <= 255:
            raise ValueError("hold must be 1..255 frames")


@dataclass(frozen=True, slots=True)
class Hello:
    """HELLO: what a stream carries (its schema, LOD and quantization) before its first frame."""

    sid: int
    schema: StreamSchema
    params: StreamParams
    audio: AudioCodec = AudioCodec.OFF
    """The stream's voice (v1.1); OFF when the hello names none."""
    audio_rate: int = 0
    """Sample rate of the voice in Hz (0 without a voice)."""
    minor: int = 0
    """The sender's minor version (key ``minor``; absent in v1.0 hellos)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A keyframe or delta that was applied; the values are in the decoder's stream state."""

    sid: int
    lod: int
    seq: int
    t_ms: int
    keyframe: bool
    count: int
    """Elements the message carried."""


@dataclass(frozen=True, slots=True)
class NeedKeyframe:
    """A frame the decoder cannot apply: send CONTROL REQUEST_KEYFRAME for (sid, lod)."""

    sid: int
    lod: int
    reason: str


@dataclass(frozen=True, slots=True)
class Stale:
    """An old or duplicate frame (unordered transports reorder); dropped, nothing to do."""

    sid: int
    lod: int
    seq: int


@dataclass(frozen=True, slots=True)
class UnknownStream:
    """A frame or event for a stream id this decoder has no hello for; dropped."""

    sid: int


@dataclass(frozen=True, slots=True)
class Event:
    """EVENT: a session's discrete change (state, speaking, emotion, voice cut) at a stream time."""

    sid: int
    t_ms: int
    kind: int
    value: Any
    """STATE: a name from SESSION_STATES; SPEAKING: bool; EMOTION: (name, intensity)."""


@dataclass(frozen=True, slots=True)
class Audio:
    """One packet of a stream's voice (v1.1), with the codec and rate its hello named."""

    sid: int
    seq: int
    t_ms: int
    """Stream-clock time of the payload's first sample (the clock of the frames)."""
    codec: AudioCodec
    rate: int
    payload: bytes
    """One Opus packet, or PCM16 little-endian mono samples."""


@dataclass(frozen=True, slots=True)
class Control:
    """CONTROL: a subscriber's request (subscribe, unsubscribe, set LOD, ask for a keyframe...); the
    fields not used by ``op`` keep their defaults."""

    op: ControlOp
    sid: int = 0
    lod: int = 0
    seq: int = 0
    session: str = ""
    mode: DeltaMode = DeltaMode.CHAINED
    bits: int = 8
    audio: AudioCodec | None = None
    """SET_AUDIO's voice, or SUBSCRIBE's optional seventh element (None: absent, no voice)."""


@dataclass(frozen=True, slots=True)
class Ping:
    """PING: a clock-sync probe; the peer answers with a PONG carrying the same nonce."""

    nonce: int
    t_ms: int


@dataclass(frozen=True, slots=True)
class Pong:
    """PONG: the answer to a PING, stamped with the sender's stream time for clock sync."""

    nonce: int
    t_ms: int


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """ERROR: a peer's refusal with a protocol error code, sent before it closes."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class PublishHello:
    """PUBLISH_HELLO: a publisher declares the names, rate and source of the positional captures
    that follow."""

    pid: int
    morphs: tuple[str, ...]
    channels: tuple[str, ...]
    fps: int
    source: str


@dataclass(frozen=True, slots=True)
class Capture:
    """CAPTURE: one frame of a publisher's face, positional (after a publish hello) or by name."""

    pid: int
    seq: int
    t_ms: int
    values: F32 | None = None
    """Positional: float32 in the publish hello's order (morphs then channels)."""
    named: dict[str, float] = field(default_factory=dict)
    """By name: no publish hello needed."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message of a type this v1 decoder does not know (newer minor version): skipped."""

    type: int


Message = (
    Hello
    | Frame
    | NeedKeyframe
    | Stale
    | UnknownStream
    | Event
    | Audio
    | Control
    | Ping
    | Pong
    | ErrorMessage
    | PublishHello
    | Capture
    | Ignored
)


# --------------------------------------------------------------------------- encoders


def encode_hello(
    sid: int,
    schema: StreamSchema,
    params: StreamParams,
    audio: AudioCodec = AudioCodec.OFF,
    audio_rate: int | None = None,
) -> bytes:
    """The hello of a subscription; ``audio`` names the voice the server will send (v1.1).

    ``audio_rate`` defaults to the codec's rate (48 kHz Opus, 16 kHz PCM16). Without a voice
    the hello is byte for byte a v1.0 hello.
    """
    info: dict[str, Any] = {
        "rig": schema.rig,
        "morphs": list(schema.morph_names),
        "channels": list(schema.channel_names),
        "lo": [float(x) for x in schema.lo],
        "hi": [float(x) for x in schema.hi],
        "rot_scale": float(schema.rot_scale),
        "lods": [[t.level, t.fps, list(t.morphs), list(t.channels)] for t in schema.lods],
        "bits": params.bits,
        "mode": int(params.mode),
        "keyframe_ms": params.keyframe_ms,
        "dead_band": float(params.dead_band),
        "hold": params.hold,
    }
    if audio is not AudioCodec.OFF:
        rate = audio.rate if audio_rate is None else audio_rate
        if (fault := audio_rate_fault(audio, rate)) is not None:
            raise ValueError(fault)
        info.update(minor=PROTOCOL_MINOR, audio=audio.wire_name, audio_rate=rate)
    data = pack([MsgType.HELLO, PROTOCOL_VERSION, sid, info])
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"the hello is {len(data)} bytes; messages are limited to 64 KiB")
    return data


def encode_event(sid: int, t_ms: int, kind: EventKind, value: Any) -> bytes:
    """Pack an EVENT; STATE is sent as its index in SESSION_STATES and VOICE_CUT as a u16, so the
    wire stays compact and typed."""
    if kind is EventKind.STATE:
        wire_value: Any = SESSION_STATES.index(value) if isinstance(value, str) else int(value)
    elif kind is EventKind.SPEAKING:
        wire_value = bool(value)
    elif kind is EventKind.VOICE_CUT:
        wire_value = _u16(value, "next_seq")
    else:
        name, intensity = value
        wire_value = [str(name), float(intensity)]
    return pack([MsgType.EVENT, sid, t_ms, int(kind), wire_value])


def encode_voice_cut(sid: int, t_ms: int, next_seq: int) -> bytes:
    """VOICE_CUT (barge-in): the voice stops at ``t_ms``; ``next_seq`` starts a new utterance."""
    return encode_event(sid, t_ms, EventKind.VOICE_CUT, next_seq)


def encode_audio(sid: int, seq: int, t_ms: int, payload: bytes) -> bytes:
    """AUDIO ``[10, sid, seq, t, payload]``: one Opus packet or up to 20 ms of PCM16.

    ``t_ms`` is the stream-clock time of the payload's first sample; ``seq`` (u16) counts the
    stream's audio messages. The payload is not inspected beyond being non-empty: its hello
    says what it is.
    """
    if not payload:
        raise ValueError("an audio payload is never empty")
    return pack([MsgType.AUDIO, sid, _u16(seq, "seq"), t_ms, bytes(payload)])


def encode_subscribe(
    session: str, lod: int, mode: DeltaMode, bits: int, audio: AudioCodec | None = None
) -> bytes:
    """SUBSCRIBE; ``audio`` (v1.1) adds the seventh element, else the voice is off."""
    fields: list[Any] = [MsgType.CONTROL, ControlOp.SUBSCRIBE, session, lod, int(mode), bits]
    if audio is not None:
        fields.append(int(audio))
    return pack(fields)


def encode_control(
    op: ControlOp, sid: int, lod: int = 0, seq: int = 0, audio: AudioCodec = AudioCodec.OFF
) -> bytes:
    """UNSUBSCRIBE [4,1,sid], SET_LOD [4,2,sid,lod], REQUEST_KEYFRAME [4,3,sid,lod],
    ACK [4,4,sid,lod,seq], SET_AUDIO [4,5,sid,audio]."""
    if op is ControlOp.SUBSCRIBE:
        raise ValueError("use encode_subscribe")
    fields: list[int] = [MsgType.CONTROL, int(op), sid]
    if op is ControlOp.SET_AUDIO:
        fields.append(int(AudioCodec(audio)))
    elif op is not ControlOp.UNSUBSCRIBE:
        fields.append(lod)
    if op is ControlOp.ACK:
        fields.append(seq)
    return pack(fields)


def encode_ping(nonce: int, t_ms: int) -> bytes:
    """Pack a PING with ``nonce`` and the sender's stream time."""
    return pack([MsgType.PING, nonce, t_ms])


def encode_pong(nonce: int, t_ms: int) -> bytes:
    """Pack the PONG that answers the PING with ``nonce``."""
    return pack([MsgType.PONG, nonce, t_ms])


def encode_error(code: int, message: str) -> bytes:
    """Pack an ERROR: a protocol error code and a human-readable reason."""
    return pack([MsgType.ERROR, code, message])


def encode_publish_hello(
    pid: int, morphs: Sequence[str], channels: Sequence[str], fps: int, source: str = "arkit52"
) -> bytes:
    """Pack a PUBLISH_HELLO declaring the order of the positional captures that follow."""
    info = {"morphs": list(morphs), "channels": list(channels), "fps": fps, "source": source}
    return pack([MsgType.PUBLISH_HELLO, PROTOCOL_VERSION, pid, info])


def encode_capture(
    pid: int, seq: int, t_ms: int, values: npt.ArrayLike | dict[str, float]
) -> bytes:
    """Positional (float32 LE bin, the publish hello's order) or by name (a str->float map)."""
    if isinstance(values, dict):
        payload: Any = {str(k): float(v) for k, v in values.items()}
    else:
        payload = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return pack([MsgType.CAPTURE, pid, seq, t_ms, payload])


def _u16(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} is not a u16")
    return int(value)


def audio_rate_fault(codec: AudioCodec, rate: int) -> str | None:
    """Why ``rate`` is not allowed for ``codec`` (Opus 48 kHz, PCM16 8..48 kHz), else None."""
    if codec is AudioCodec.OPUS:
        return None if rate == OPUS_RATE else f"audio_rate {rate} is not allowed for opus"
    return (
        None
        if MIN_PCM16_RATE <= rate <= MAX_PCM16_RATE
        else f"audio_rate {rate} is not allowed for {codec.wire_name}"
    )


# --------------------------------------------------------------------------- validation


def field_uint(msg: list[Value], i: int, what: str, maximum: int = _U64_MAX) -> int:
    """Field ``i`` of ``msg`` as an integer in ``0..maximum``; anything else is a ProtocolError that
    names ``what``."""
    v = msg[i]
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError(TYPE, f"{what} must be an integer")
    if v < 0 or v > maximum:
        raise ProtocolError(VALUE, f"{what} {v} is outside 0..{maximum}")
    return v


def _need(msg: list[Value], n: int, what: str) -> None:
    if len(msg) < n:
        raise ProtocolError(TYPE, f"{what} needs at least {n} elements, got {len(msg)}")


def _str(v: Value, what: str, limit: int = MAX_NAME_BYTES) -> str:
    if not isinstance(v, str):
        raise ProtocolError(TYPE, f"{what} must be a str")
    if len(v.encode("utf-8")) > limit:
        raise ProtocolError(LIMIT, f"{what} is longer than {limit} bytes")
    return v


def _num(v: Value, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ProtocolError(TYPE, f"{what} must be a number")
    return float(v)


def _list(v: Value, what: str, limit: int) -> list[Value]:
    if not isinstance(v, list):
        raise ProtocolError(TYPE, f"{what} must be an array")
    if len(v) > limit:
        raise ProtocolError(LIMIT, f"{what} has {len(v)} entries, the limit is {limit}")
    return v


def _names(v: Value, what: str, limit: int) -> tuple[str, ...]:
    return tuple(_str(x, f"{what} entry") for x in _list(v, what, limit))


def _uints(v: Value, what: str, limit: int) -> tuple[int, ...]:
    items = _list(v, what, limit)
    out: list[int] = []
    for x in items:
        if not isinstance(x, int) or isinstance(x, bool):
            raise ProtocolError(TYPE, f"{what} entries must be integers")
        out.append(x)
    return tuple(out)


def parse_hello(msg: list[Value]) -> Hello:
    """Validate and decode a HELLO: version, schema names, LOD tables and voice; every bound is
    checked before anything is allocated."""
    _need(msg, 4, "hello")
    version = field_uint(msg, 1, "hello version", 255) if isinstance(msg[1], int) else None
    if version is None:
        raise ProtocolError(TYPE, "hello version must be an integer")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(VERSION, f"protocol version {version}; this decoder speaks 1")
    sid = field_uint(msg, 2, "sid", 0xFFFFFFFF)
    info = msg[3]
    if not isinstance(info, dict):
        raise ProtocolError(TYPE, "hello info must be a map")

    def get(key: str) -> Value:
        if key not in info:
            raise ProtocolError(TYPE, f"hello info lacks {key!r}")
        return info[key]

    rig = _str(get("rig"), "rig")
    morphs = _names(get("morphs"), "morphs", MAX_MORPHS)
    channels = _names(get("channels"), "channels", MAX_CHANNELS)
    lo = [_num(x, "lo") for x in _list(get("lo"), "lo", MAX_MORPHS)]
    hi = [_num(x, "hi") for x in _list(get("hi"), "hi", MAX_MORPHS)]
    rot_scale = _num(get("rot_scale"), "rot_scale")
    raw_lods = _list(get("lods"), "lods", LOD_LEVELS)
    lods: list[LodTable] = []
    for entry in raw_lods:
        item = _list(entry, "lods entry", 16)
        if len(item) < 4:
            raise ProtocolError(TYPE, "a lods entry is [level, fps, morphs, channels]")
        level = field_uint(item, 0, "lod level", LOD_LEVELS - 1)
        fps = field_uint(item, 1, "lod fps", 240)
        lods.append(
            LodTable(
                level,
                fps,
                _uints(item[2], "lod morphs", MAX_MORPHS),
                _uints(item[3], "lod channels", MAX_CHANNELS),
            )
        )
    bits = field_uint([get("bits")], 0, "bits", 255)
    mode = field_uint([get("mode")], 0, "mode", 1)
    keyframe_ms = field_uint([info.get("keyframe_ms", DEFAULT_KEYFRAME_MS)], 0, "keyframe_ms")
    dead_band = _num(info.get("dead_band", DEFAULT_DEAD_BAND), "dead_band")
    hold = field_uint([info.get("hold", DEFAULT_HOLD_FRAMES)], 0, "hold", 255)
    minor = field_uint([info.get("minor", 0)], 0, "minor")
    audio, audio_rate = _hello_audio(info)
    try:
        schema = StreamSchema(
            rig=rig,
            morph_names=morphs,
            channel_names=channels,
            lo=np.asarray(lo, dtype=np.float64),
            hi=np.asarray(hi, dtype=np.float64),
            rot_scale=rot_scale,
            lods=tuple(lods),
        )
        params = StreamParams(
            bits=bits,
            mode=DeltaMode(mode),
            keyframe_ms=max(1, keyframe_ms),
            dead_band=dead_band,
            hold=max(1, hold),
        )
    except ValueError as exc:
        raise ProtocolError(VALUE, f"hello: {exc}") from None
    return Hello(sid, schema, params, audio, audio_rate, minor)


_HELLO_AUDIO: Final = {AudioCodec.OPUS.wire_name: AudioCodec.OPUS,
                       AudioCodec.PCM16.wire_name: AudioCodec.PCM16}  # fmt: skip


def _hello_audio(info: dict[Value, Value]) -> tuple[AudioCodec, int]:
    """The voice a hello names (v1.1 keys ``audio``, ``audio_rate``); (OFF, 0) for none."""
    if "audio" not in info:
        return AudioCodec.OFF, 0
    name = _str(info["audio"], "audio")
    codec = _HELLO_AUDIO.get(name)
    if codec is None:
        raise ProtocolError(VALUE, f"audio {name!r} is not opus or pcm16")
    rate = field_uint([info.get("audio_rate", codec.rate)], 0, "audio_rate")
    if (fault := audio_rate_fault(codec, rate)) is not None:
        raise ProtocolError(VALUE, fault)
    return codec, rate


def parse_audio(msg: list[Value], hello: Hello | None) -> Audio | UnknownStream:
    """AUDIO against its stream's hello (None: an unknown sid); docs/protocol.md 3.8."""
    _need(msg, 5, "audio")
    sid = field_uint(msg, 1, "sid", 0xFFFFFFFF)
    seq = field_uint(msg, 2, "seq", 0xFFFF)
    t_ms = field_uint(msg, 3, "t")
    payload = msg[4]
    if not isinstance(payload, bytes):
        raise ProtocolError(TYPE, "an audio payload must be bin")
    if hello is None:
        return UnknownStream(sid)
    codec = hello.audio
    if codec is AudioCodec.OFF:
        raise ProtocolError(VALUE, f"audio for stream {sid}, whose hello named no voice")
    if not payload:
        raise ProtocolError(BODY, "an empty audio payload")
    if codec is AudioCodec.PCM16:
        limit = pcm16_max_bytes(hello.audio_rate)
        if len(payload) % 2 or len(payload) > limit:
            raise ProtocolError(
                BODY, f"pcm16 payload of {len(payload)} bytes (even, at most {limit})"
            )
    return Audio(sid, seq, t_ms, codec, hello.audio_rate, payload)


def parse_event(msg: list[Value]) -> Event | Ignored:
    """Decode an EVENT; an unknown kind is Ignored (newer servers may add kinds), a known kind with
    a bad value is a ProtocolError."""
    _need(msg, 5, "event")
    sid = field_uint(msg, 1, "sid", 0xFFFFFFFF)
    t_ms = field_uint(msg, 2, "t")
    kind = field_uint(msg, 3, "event kind", 255)
    value = msg[4]
    if kind == EventKind.STATE:
        code = field_uint(msg, 4, "state", 255)
        if code >= len(SESSION_STATES):
            raise ProtocolError(VALUE, f"state {code} is not defined")
        return Event(sid, t_ms, kind, SESSION_STATES[code])
    if kind == EventKind.SPEAKING:
        if not isinstance(value, bool):
            raise ProtocolError(TYPE, "speaking must be a bool")
        return Event(sid, t_ms, kind, value)
    if kind == EventKind.EMOTION:
        pair = _list(value, "emotion", 2)
        if len(pair) != 2:
            raise ProtocolError(TYPE, "emotion is [name, intensity]")
        return Event(sid, t_ms, kind, (_str(pair[0], "emotion name"), _num(pair[1], "intensity")))
    if kind == EventKind.VOICE_CUT:
        return Event(sid, t_ms, kind, field_uint(msg, 4, "voice cut next_seq", 0xFFFF))
    return Ignored(MsgType.EVENT)


def parse_control(msg: list[Value]) -> Control | Ignored:
    """Decode a CONTROL by its op; an unknown op is Ignored so newer clients do not break older
    servers."""
    _need(msg, 3, "control")
    op = field_uint(msg, 1, "control op", 255)
    if op == ControlOp.SUBSCRIBE:
        _need(msg, 6, "subscribe")
        session = _str(msg[2], "session")
        lod = field_uint(msg, 3, "lod", LOD_LEVELS - 1)
        mode = field_uint(msg, 4, "mode", 1)
        bits = field_uint(msg, 5, "bits", 255)
        if bits not in (8, 16):
            raise ProtocolError(VALUE, f"bits {bits} is not 8 or 16")
        audio = _audio_code(msg, 6) if len(msg) > 6 else None
        return Control(
            ControlOp.SUBSCRIBE,
            session=session,
            lod=lod,
            mode=DeltaMode(mode),
            bits=bits,
            audio=audio,
        )
    if op > ControlOp.SET_AUDIO:
        return Ignored(MsgType.CONTROL)
    sid = field_uint(msg, 2, "sid", 0xFFFFFFFF)
    if op == ControlOp.UNSUBSCRIBE:
        return Control(ControlOp.UNSUBSCRIBE, sid=sid)
    _need(msg, 4, "control")
    if op == ControlOp.SET_AUDIO:
        return Control(ControlOp.SET_AUDIO, sid=sid, audio=_audio_code(msg, 3))
    lod = field_uint(msg, 3, "lod", LOD_LEVELS - 1)
    if op == ControlOp.ACK:
        _need(msg, 5, "ack")
        return Control(ControlOp.ACK, sid=sid, lod=lod, seq=field_uint(msg, 4, "seq", 0xFFFF))
    return Control(ControlOp(op), sid=sid, lod=lod)


def _audio_code(msg: list[Value], i: int) -> AudioCodec:
    """SUBSCRIBE's and SET_AUDIO's voice: 0 off, 1 opus, 2 pcm16 (others: ``value``)."""
    return AudioCodec(field_uint(msg, i, "audio", len(AudioCodec) - 1))


def parse_ping(msg: list[Value], pong: bool) -> Ping | Pong:
    """Decode a PING, or a PONG when ``pong`` (the two share one layout)."""
    _need(msg, 3, "ping")
    nonce = field_uint(msg, 1, "nonce")
    t_ms = field_uint(msg, 2, "t")
    return Pong(nonce, t_ms) if pong else Ping(nonce, t_ms)


def parse_error(msg: list[Value]) -> ErrorMessage:
    """Decode an ERROR (its message bounded in length)."""
    _need(msg, 3, "error")
    return ErrorMessage(
        field_uint(msg, 1, "error code", 0xFFFF), _str(msg[2], "message", MAX_EVENT_TEXT)
    )


def parse_publish_hello(msg: list[Value]) -> PublishHello:
    """Decode a PUBLISH_HELLO: version, pid and the name lists, bounded like a HELLO's."""
    _need(msg, 4, "publish hello")
    version = field_uint(msg, 1, "version", 255)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(VERSION, f"protocol version {version}; this decoder speaks 1")
    pid = field_uint(msg, 2, "pid", 0xFFFFFFFF)
    info = msg[3]
    if not isinstance(info, dict):
        raise ProtocolError(TYPE, "publish hello info must be a map")
    morphs = _names(info.get("morphs", []), "morphs", MAX_MORPHS)
    channels = _names(info.get("channels", []), "channels", MAX_CHANNELS)
    fps = field_uint([info.get("fps", 60)], 0, "fps", 240)
    source = _str(info.get("source", "arkit52"), "source")
    return PublishHello(pid, morphs, channels, fps, source)


def parse_capture(msg: list[Value], hello: PublishHello | None) -> Capture:
    """Decode a CAPTURE: positional values need the publisher's hello (their count must match it),
    named values need none."""
    _need(msg, 5, "capture")
    pid = field_uint(msg, 1, "pid", 0xFFFFFFFF)
    seq = field_uint(msg, 2, "seq", 0xFFFF)
    t_ms = field_uint(msg, 3, "t")
    payload = msg[4]
    if isinstance(payload, dict):
        if len(payload) > MAX_MORPHS + MAX_CHANNELS:
            raise ProtocolError(LIMIT, "too many named values")
        named = {_str(k, "name"): _num(v, "value") for k, v in payload.items()}
        return Capture(pid, seq, t_ms, named=named)
    if isinstance(payload, bytes):
        if hello is None:
            raise ProtocolError(VALUE, f"positional capture for pid {pid} without a publish hello")
        n = len(hello.morphs) + len(hello.channels)
        if len(payload) != 4 * n:
            raise ProtocolError(BODY, f"capture carries {len(payload)} bytes, expected {4 * n}")
        return Capture(
            pid, seq, t_ms, values=np.frombuffer(payload, dtype="<f4").astype(np.float32)
        )
    if isinstance(payload, Ext):
        raise ProtocolError(TYPE, "capture values must be bin or map, not ext")
    raise ProtocolError(TYPE, "capture values must be bin (positional) or map (by name)")
