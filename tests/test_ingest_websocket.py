"""The WebSocket publish path's validation (serve_publish on a scripted connection), and the
publish decoder's name binding."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosedOK

from avatar_engine.codec import encode_capture, encode_ping, encode_publish_hello
from avatar_engine.ingest import CollectingSink
from avatar_engine.ingest.publish import PublishDecoder, PublishDropError, PublishFrame
from avatar_engine.ingest.websocket import PublishLimits, serve_publish
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES


class Scripted:
    """A server-side connection that yields scripted messages, then closes."""

    def __init__(self, messages: list[str | bytes]) -> None:
        self.messages = list(messages)
        self.sent: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    async def recv(self) -> str | bytes:
        if not self.messages:
            raise ConnectionClosedOK(None, None)
        return self.messages.pop(0)

    async def send(self, message: bytes) -> None:
        self.sent.append(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1 / 600  # each message arrives 1/600 s after the previous: a 10x flood
        return self.t


def hello() -> bytes:
    return encode_publish_hello(1, ARKIT_NAMES, ROTATION_NAMES, 60)


def test_serve_publish_counts_bad_messages_and_keeps_going() -> None:
    v = np.linspace(0, 1, 61, dtype=np.float32)
    nan = v.copy()
    nan[4] = np.nan
    conn = Scripted(
        [
            b"\xc1",  # never-used msgpack byte
            encode_capture(1, 0, 0, v),  # positional before the hello
            hello(),
            encode_capture(1, 1, 16, nan),
            encode_capture(1, 2, 33, v),
            encode_capture(1, 3, 50, v[:10]),  # wrong length for the hello
            encode_ping(9, 1),
            b"\x00" * 70000,
        ]
    )
    sink = CollectingSink()
    out = asyncio.run(serve_publish(conn, "s1", sink))
    assert len(sink) == 1 and sink.sessions == ["s1"]
    assert out.stats.frames == 1
    assert out.stats.drops == {
        "protocol_malformed": 1,
        "no_hello": 1,
        "non_finite": 1,
        "protocol_body": 1,
        "too_large": 1,
    }
    assert len(conn.sent) == 1 and conn.sent[0][:2] == b"\x93\x06"  # the pong
    assert conn.closed is None  # the client closed; nothing left to close


def test_serve_publish_rate_limits_a_flood() -> None:
    v = np.zeros(61, dtype=np.float32)
    conn = Scripted([hello()] + [encode_capture(1, i, i, v) for i in range(3000)])
    sink = CollectingSink()
    out = asyncio.run(serve_publish(conn, "s", sink, clock=Clock()))
    # 5 s at 600 messages/s against 120 frames/s + a 30-frame burst
    assert len(sink) <= 120 * 5 + 31
    assert out.stats.drops["rate_limited"] == 3000 - len(sink)


def test_serve_publish_closes_on_text_and_on_too_many_protocol_errors() -> None:
    conn = Scripted(["hello"])
    out = asyncio.run(serve_publish(conn, "s", CollectingSink()))
    assert conn.closed == (1003, "binary msgpack messages only") and out.close_code == 1003
    conn = Scripted([b"\xc1"] * 10)
    asyncio.run(
        serve_publish(conn, "s", CollectingSink(), limits=PublishLimits(max_bad_messages=3))
    )
    assert conn.closed == (1008, "too many malformed messages")


def test_publish_decoder_binds_any_spelling_and_skips_unknowns() -> None:
    dec = PublishDecoder()
    names = ["jawOpen", "EyeBlinkLeft", "mouthSmile_R", "custom", "HeadYaw"]
    dec.feed(encode_publish_hello(2, names[:4], names[4:], 30))
    frame = dec.feed(encode_capture(2, 0, 1000, [0.5, 0.25, 2.0, 0.9, -20.0]))
    assert isinstance(frame, PublishFrame)
    a = {n: i for i, n in enumerate(ARKIT_NAMES)}
    assert frame.arkit[a["jawOpen"]] == 0.5 and frame.arkit[a["eyeBlinkLeft"]] == 0.25
    assert frame.arkit[a["mouthSmileRight"]] == 1.0  # clamped
    assert frame.rotations[0] == -8.0 and frame.clamped == 2 and frame.unknown == 1
    assert frame.t == 1.0
    with pytest.raises(PublishDropError) as info:
        dec.feed(encode_capture(2, 1, 0, {"jawOpen": float("inf")}))
    assert info.value.reason == "non_finite"


def test_publish_decoder_remembers_a_bounded_number_of_hellos() -> None:
    dec = PublishDecoder()
    for pid in range(16):
        dec.feed(encode_publish_hello(pid, ARKIT_NAMES, (), 60))
    with pytest.raises(PublishDropError) as info:  # the codec refuses a 17th publisher
        dec.feed(encode_publish_hello(16, ARKIT_NAMES, (), 60))
    assert info.value.reason == "protocol_limit"
    out: Any = dec.feed(encode_capture(15, 0, 0, np.zeros(52, np.float32)))
    assert isinstance(out, PublishFrame)


def test_by_name_captures_keep_previous_values_and_stale_seqs_drop() -> None:
    dec = PublishDecoder()
    a = {n: i for i, n in enumerate(ARKIT_NAMES)}
    first: Any = dec.feed(encode_capture(4, 10, 0, {"jawOpen": 0.5, "eyeBlink_L": 0.2}))
    assert first.arkit[a["jawOpen"]] == 0.5
    second: Any = dec.feed(encode_capture(4, 11, 16, {"jawOpen": 0.1}))
    assert second.arkit[a["jawOpen"]] == pytest.approx(0.1)
    assert second.arkit[a["eyeBlinkLeft"]] == pytest.approx(0.2)  # kept (spec 3.7)
    for seq in (11, 9):  # duplicate and reordered
        with pytest.raises(PublishDropError) as info:
            dec.feed(encode_capture(4, seq, 0, {"jawOpen": 0.9}))
        assert info.value.reason == "stale"
    wrapped: Any = dec.feed(encode_capture(4, 11 + 30000, 0, {"jawOpen": 0.3}))
    assert wrapped.seq == 30011
    # a publisher that restarted at 0 without a hello resyncs after a run of stale frames
    outcomes = []
    for i in range(PublishDecoder.RESYNC_AFTER):
        try:
            dec.feed(encode_capture(4, i, 0, {"jawOpen": 0.4}))
            outcomes.append("ok")
        except PublishDropError:
            outcomes.append("stale")
    assert outcomes[-1] == "ok" and outcomes.count("stale") == PublishDecoder.RESYNC_AFTER - 1
    # a new hello resets the sequence at once
    dec.feed(encode_publish_hello(4, ARKIT_NAMES, (), 60))
    assert isinstance(dec.feed(encode_capture(4, 0, 0, np.zeros(52, np.float32))), PublishFrame)


def test_asgi_adapter_runs_serve_publish_on_a_starlette_style_socket() -> None:
    from avatar_engine.ingest.websocket import AsgiConnection

    class StarletteLike:
        def __init__(self, incoming: list[dict[str, Any]]) -> None:
            self.incoming = incoming
            self.sent: list[bytes] = []
            self.closed: tuple[int, str] | None = None

        async def receive(self) -> dict[str, Any]:
            return self.incoming.pop(0)

        async def send_bytes(self, data: bytes) -> None:
            self.sent.append(data)

        async def close(self, code: int = 1000, reason: str | None = None) -> None:
            self.closed = (code, reason or "")

    v = np.zeros(61, dtype=np.float32)
    ws = StarletteLike(
        [
            {"type": "websocket.receive", "bytes": hello()},
            {"type": "websocket.receive", "bytes": encode_capture(1, 0, 0, v)},
            {"type": "websocket.receive", "bytes": encode_ping(1, 2)},
            {"type": "websocket.disconnect", "code": 1000},
        ]
    )
    sink = CollectingSink()
    out = asyncio.run(serve_publish(AsgiConnection(ws), "asgi", sink))
    assert len(sink) == 1 and out.stats.frames == 1 and len(ws.sent) == 1
    text = StarletteLike([{"type": "websocket.receive", "text": "hi"}])
    asyncio.run(serve_publish(AsgiConnection(text), "asgi", sink))
    assert text.closed == (1003, "binary msgpack messages only")
