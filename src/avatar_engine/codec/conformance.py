"""Decoder results as plain JSON values: the ``expect`` entries of ``tests/vectors``.

Every decoder (Python, Cython, C++, JS) reports each message in this shape, so the vectors
can be compared across languages. Floats are the decoder's float32 values. Keys added by
v1.1 (a hello's voice, a control's ``audio``) appear only when the message carries them, so
the v1.0 vectors keep their exact form.
"""

from __future__ import annotations

from typing import Any

from avatar_engine.codec import messages as m
from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.wire import AudioCodec, ProtocolError


def describe(result: m.Message, decoder: Decoder) -> dict[str, Any]:
    """The canonical JSON form of one decode result."""
    if isinstance(result, m.Hello):
        hello: dict[str, Any] = {
            "kind": "hello",
            "sid": result.sid,
            "rig": result.schema.rig,
            "morphs": result.schema.n_morphs,
            "channels": result.schema.n_channels,
            "bits": result.params.bits,
            "mode": int(result.params.mode),
        }
        if result.minor:
            hello["minor"] = result.minor
        if result.audio is not AudioCodec.OFF:
            hello["audio"] = result.audio.wire_name
            hello["audio_rate"] = result.audio_rate
        return hello
    if isinstance(result, m.Frame):
        st = decoder.stream(result.sid)
        return {
            "kind": "frame",
            "sid": result.sid,
            "lod": result.lod,
            "seq": result.seq,
            "t": result.t_ms,
            "keyframe": result.keyframe,
            "count": result.count,
            "morphs": [float(x) for x in st.morphs],
            "channels": [float(x) for x in st.channels],
        }
    if isinstance(result, m.NeedKeyframe):
        return {"kind": "need_keyframe", "sid": result.sid, "lod": result.lod}
    if isinstance(result, m.Stale):
        return {"kind": "stale", "sid": result.sid, "lod": result.lod, "seq": result.seq}
    if isinstance(result, m.UnknownStream):
        return {"kind": "unknown_stream", "sid": result.sid}
    if isinstance(result, m.Event):
        value = list(result.value) if isinstance(result.value, tuple) else result.value
        return {"kind": "event", "sid": result.sid, "t": result.t_ms, "event": result.kind,
                "value": value}  # fmt: skip
    if isinstance(result, m.Audio):
        return {"kind": "audio", "sid": result.sid, "seq": result.seq, "t": result.t_ms,
                "codec": result.codec.wire_name, "rate": result.rate,
                "payload": result.payload.hex()}  # fmt: skip
    if isinstance(result, m.Control):
        control = {"kind": "control", "op": int(result.op), "sid": result.sid, "lod": result.lod,
                   "seq": result.seq, "session": result.session, "mode": int(result.mode),
                   "bits": result.bits}  # fmt: skip
        if result.audio is not None:
            control["audio"] = int(result.audio)
        return control
    if isinstance(result, m.Ping | m.Pong):
        kind = "ping" if isinstance(result, m.Ping) else "pong"
        return {"kind": kind, "nonce": result.nonce, "t": result.t_ms}
    if isinstance(result, m.ErrorMessage):
        return {"kind": "error_message", "code": result.code, "message": result.message}
    if isinstance(result, m.PublishHello):
        return {"kind": "publish_hello", "pid": result.pid, "morphs": list(result.morphs),
                "channels": list(result.channels), "fps": result.fps,
                "source": result.source}  # fmt: skip
    if isinstance(result, m.Capture):
        values = None if result.values is None else [float(x) for x in result.values]
        return {"kind": "capture", "pid": result.pid, "seq": result.seq, "t": result.t_ms,
                "values": values, "named": dict(sorted(result.named.items()))}  # fmt: skip
    return {"kind": "ignored", "type": result.type}


def decode_step(decoder: Decoder, data: bytes) -> dict[str, Any]:
    """Feed one message; an error becomes ``{"kind": "error", "code": ...}``."""
    try:
        return describe(decoder.feed(data), decoder)
    except ProtocolError as exc:
        return {"kind": "error", "code": exc.code}
