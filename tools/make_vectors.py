"""Generate the protocol conformance vectors in ``tests/vectors/`` (committed output).

Run ``python tools/make_vectors.py`` after a deliberate protocol change and review the diff.
Messages are written by the pure-Python reference encoder and expectations by the
pure-Python reference decoder; every other implementation (Cython, C++, JS) must reproduce
them. Each vector is ``<name>.json`` (inputs, hex messages, expected results) plus
``<name>.msgs``, the same steps as binary records for decoders without a JSON parser::

    u8 tag (0 = message, 1 = expect_lod) | u32 LE length | payload
    expect_lod payload: u32 LE sid | u8 lod

The vectors are self-contained: the hello inside each one carries the whole schema, so they
do not change when a rig file does.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from avatar_engine.codec import (  # noqa: E402
    AudioCodec,
    BatchEncoder,
    ControlOp,
    Decoder,
    DeltaMode,
    EventKind,
    LodTable,
    StreamParams,
    StreamSchema,
    encode_audio,
    encode_capture,
    encode_control,
    encode_error,
    encode_event,
    encode_hello,
    encode_ping,
    encode_pong,
    encode_publish_hello,
    encode_subscribe,
    encode_voice_cut,
)
from avatar_engine.codec.conformance import decode_step  # noqa: E402
from avatar_engine.codec.synthetic import scripted_speech  # noqa: E402
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES  # noqa: E402

OUT = ROOT / "tests" / "vectors"
SID = 7
FPS = 60


def vector_schema() -> StreamSchema:
    """ARKit 52 + 9 rotations with hand-written LOD tables; mouthLeft spans [-1, 1] so a
    non-default range is exercised."""
    idx = {n: i for i, n in enumerate(ARKIT_NAMES)}
    lo = np.zeros(52)
    hi = np.ones(52)
    lo[idx["mouthLeft"]] = -1.0
    expressive = [i for n, i in idx.items() if not n.startswith(("cheek", "nose", "tongue"))]
    speech = [i for n, i in idx.items() if n.startswith(("mouth", "jaw", "brow")) or "Blink" in n]
    minimal = sorted([idx["jawOpen"], idx["eyeBlinkLeft"], idx["eyeBlinkRight"]])
    return StreamSchema(
        rig="vector-arkit",
        morph_names=ARKIT_NAMES,
        channel_names=ROTATION_NAMES,
        lo=lo,
        hi=hi,
        rot_scale=0.5,
        lods=(
            LodTable(0, 60, tuple(range(52)), tuple(range(9))),
            LodTable(1, 30, tuple(sorted(expressive)), tuple(range(9))),
            LodTable(2, 20, tuple(sorted(speech)), (0, 1, 2)),
            LodTable(3, 10, tuple(minimal), (0, 1, 2)),
        ),
    )


def inputs(frames: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    arkit, rot = scripted_speech(frames, FPS, seed)
    arkit[:, 21] = np.sin(np.arange(frames) / 9.0).astype(np.float32) * 0.8  # mouthLeft < 0
    return arkit, rot


def run_encoder(
    schema: StreamSchema, params: StreamParams, lods: list[int], frames: int, seed: int = 3
) -> tuple[bytes, list[dict[str, Any]]]:
    enc = BatchEncoder(schema, len(lods), use_fast=False)
    for lv in lods:
        enc.add_stream(0, SID, lv, params)
    arkit, rot = inputs(frames, seed)
    ticks = []
    for i in range(frames):
        t = round(i * 1000 / FPS)
        tick = enc.encode(t, arkit[i : i + 1], rot[i : i + 1])
        ticks.append(
            {
                "t": t,
                "morphs": [float(x) for x in arkit[i]],
                "channels": [float(x) for x in rot[i]],
                "out": [bytes(tick.message(k)).hex() for k in range(len(lods))],
            }
        )
    return encode_hello(SID, schema, params), ticks


class Vector:
    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.decoder = Decoder(use_fast=False)
        self.steps: list[dict[str, Any]] = []
        self.encode: dict[str, Any] | None = None

    def msg(self, data: bytes) -> None:
        self.steps.append({"hex": data.hex(), "expect": decode_step(self.decoder, data)})

    def expect_lod(self, sid: int, lod: int) -> None:
        self.decoder.expect_lod(sid, lod)
        self.steps.append({"expect_lod": {"sid": sid, "lod": lod}})

    def write(self) -> None:
        doc: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.encode is not None:
            doc["encode"] = self.encode
        doc["steps"] = self.steps
        (OUT / f"{self.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        records = bytearray()
        for step in self.steps:
            if "hex" in step:
                payload = bytes.fromhex(step["hex"])
                records += struct.pack("<BI", 0, len(payload)) + payload
            else:
                e = step["expect_lod"]
                records += struct.pack("<BIIB", 1, 5, e["sid"], e["lod"])
        (OUT / f"{self.name}.msgs").write_bytes(bytes(records))


def stream_vector(name: str, description: str, params: StreamParams, frames: int) -> Vector:
    schema = vector_schema()
    hello, ticks = run_encoder(schema, params, [0], frames)
    v = Vector(name, description)
    v.encode = {"hello": hello.hex(), "streams": [{"sid": SID, "lod": 0}], "ticks": ticks}
    v.msg(hello)
    for tick in ticks:
        if tick["out"][0]:
            v.msg(bytes.fromhex(tick["out"][0]))
    return v


def loss_vector(name: str, mode: DeltaMode, drops: set[int], swaps: set[int]) -> Vector:
    """Deliver a stream with the given messages dropped, and neighbours swapped."""
    schema = vector_schema()
    params = StreamParams(bits=8, mode=mode, keyframe_ms=200)
    hello, ticks = run_encoder(schema, params, [0], 40, seed=5)
    sent = [bytes.fromhex(t["out"][0]) for t in ticks if t["out"][0]]
    order = list(range(len(sent)))
    for i in sorted(swaps):
        order[i], order[i + 1] = order[i + 1], order[i]
    kind = "chained" if mode == DeltaMode.CHAINED else "keyframe-relative"
    v = Vector(
        name,
        f"{kind} stream, 200 ms keyframes, messages {sorted(drops)} lost and {sorted(swaps)} "
        "swapped with the next one: a gap must yield need_keyframe (chained) or cost one frame "
        "(keyframe-relative); late messages are stale",
    )
    v.encode = {"hello": hello.hex(), "streams": [{"sid": SID, "lod": 0}], "ticks": ticks}
    v.msg(hello)
    for i in order:
        if i in drops:
            continue
        v.msg(sent[i])
        if i == 12:
            v.msg(sent[i])  # a duplicate is stale
    return v


def lod_switch_vector() -> Vector:
    schema = vector_schema()
    params = StreamParams(bits=8, mode=DeltaMode.KEYFRAME)
    lods = [0, 2, 3]
    hello, ticks = run_encoder(schema, params, lods, 36, seed=9)
    v = Vector(
        "lod_switch",
        "one subscriber moves LOD 0 -> 2 -> 3 -> 0 on a keyframe-relative stream; each switch "
        "starts from a resync keyframe of the new level's group; a late frame of the old level "
        "is stale once expect_lod is set, and a new-level delta before its keyframe asks for one",
    )
    v.encode = {
        "hello": hello.hex(),
        "streams": [{"sid": SID, "lod": lv} for lv in lods],
        "ticks": ticks,
    }
    v.msg(hello)
    enc = BatchEncoder(schema, len(lods), use_fast=False)
    for lv in lods:
        enc.add_stream(0, SID, lv, params)
    arkit, rot = inputs(36, 9)
    level = 0
    plan = {10: 1, 20: 2, 30: 0}  # tick -> stream slot to switch to
    pending_old: bytes | None = None
    held_resync: bytes | None = None
    for i in range(36):
        tick = enc.encode(ticks[i]["t"], arkit[i : i + 1], rot[i : i + 1])
        if i in plan:
            new = plan[i]
            v.expect_lod(SID, lods[new])
            pending_old = bytes(tick.message(level)) or None
            resync = enc.keyframe_for_new_subscriber(new)
            assert resync is not None
            level = new
            if i == 20:
                held_resync = resync  # delayed: the level's next delta arrives first
                continue
            v.msg(resync)
        data = bytes(tick.message(level))
        if data and held_resync is not None:
            v.msg(data)  # need_keyframe: no keyframe of this level yet
            v.msg(held_resync)
            held_resync = None
        if data:
            v.msg(data)
        if pending_old is not None and i == 11:
            v.msg(pending_old)  # late frame of the level just left
            pending_old = None
    return v


def misc_vector() -> Vector:
    schema = vector_schema()
    params = StreamParams(bits=16, mode=DeltaMode.CHAINED, keyframe_ms=1000)
    v = Vector(
        "messages",
        "every non-frame message type, forward-compatible additions (extra hello keys, extra "
        "trailing elements, unknown types, kinds and ops) that a v1 decoder must accept or "
        "ignore, and the publish direction",
    )
    hello = msgpack.unpackb(encode_hello(SID, schema, params), raw=False)
    hello[3]["future_key"] = {"nested": [1, 2, 3]}
    v.msg(msgpack.packb(hello, use_bin_type=True))
    enc = BatchEncoder(schema, 1, use_fast=False)
    enc.add_stream(0, SID, 0, params)
    arkit, rot = inputs(3, 11)
    kf = msgpack.unpackb(bytes(enc.encode(0, arkit[:1], rot[:1]).message(0)), raw=False)
    v.msg(msgpack.packb([*kf, "a future field", 42], use_bin_type=True))
    v.msg(bytes(enc.encode(17, arkit[1:2], rot[1:2]).message(0)))
    v.msg(encode_event(SID, 20, EventKind.STATE, "active"))
    v.msg(encode_event(SID, 21, EventKind.SPEAKING, True))
    v.msg(encode_event(SID, 22, EventKind.EMOTION, ("happy", 0.75)))
    v.msg(msgpack.packb([3, SID, 23, 99, "unknown kind"], use_bin_type=True))
    v.msg(encode_event(99, 24, EventKind.SPEAKING, False))
    v.msg(encode_subscribe("alice", 1, DeltaMode.KEYFRAME, 16))
    v.msg(encode_control(ControlOp.UNSUBSCRIBE, SID))
    v.msg(encode_control(ControlOp.SET_LOD, SID, 2))
    v.msg(encode_control(ControlOp.REQUEST_KEYFRAME, SID, 2))
    v.msg(encode_control(ControlOp.ACK, SID, 2, 65535))
    v.msg(msgpack.packb([4, 77, SID], use_bin_type=True))
    v.msg(encode_ping(123456789, 1000))
    v.msg(encode_pong(123456789, 1003))
    v.msg(encode_error(1, "unknown session 'bob'"))
    v.msg(msgpack.packb([42, "a message type from the future"], use_bin_type=True))
    names = list(ARKIT_NAMES[:4])
    v.msg(encode_publish_hello(3, names, ["HeadYaw"], 60))
    v.msg(encode_capture(3, 1, 16, np.array([0.0, 0.25, 0.5, 1.0, -0.125], np.float32)))
    v.msg(encode_capture(4, 9, 33, {"jawOpen": 0.5, "eyeBlinkLeft": 1.0}))
    v.msg(bytes(enc.encode(33, arkit[2:3], rot[2:3]).message(0)))
    return v


def malformed_vector() -> Vector:
    """One fault per message; the stream stays intact (the last frame still applies)."""
    schema = vector_schema()
    params = StreamParams(bits=8)
    v = Vector(
        "malformed",
        "bad input a decoder must reject with the given error category without changing any "
        "stream: truncation, wrong types, absurd lengths, unknown versions, bad bodies, limits",
    )
    p = msgpack.packb
    v.msg(p([2, SID, 0, 1, 1, 16, b"\x00"], use_bin_type=True))  # before hello: unknown stream
    v.msg(encode_hello(SID, schema, params))
    enc = BatchEncoder(schema, 1, use_fast=False)
    enc.add_stream(0, SID, 0, params)
    arkit, rot = inputs(4, 13)
    frames = [
        bytes(enc.encode(i * 17, arkit[i : i + 1], rot[i : i + 1]).message(0)) for i in range(4)
    ]
    v.msg(frames[1])  # a delta before any keyframe
    v.msg(frames[0])
    kf = frames[0]
    v.msg(b"")
    v.msg(kf[:-3])  # truncated
    v.msg(kf + b"\x00")  # trailing byte
    v.msg(b"\xc1")  # never-used byte
    v.msg(p({"type": 1}))  # not an array
    v.msg(p(5))
    v.msg(p([]))
    v.msg(p(["keyframe", SID, 0, 0, 0, b""], use_bin_type=True))
    v.msg(p([1, SID, 0, "0", 0, b""], use_bin_type=True))  # seq as str
    v.msg(p([1, SID, 0, 1, 0, "body"], use_bin_type=True))  # body as str
    v.msg(p([1, SID, 0, 1, 0], use_bin_type=True))  # too few elements
    v.msg(p([1, SID, 0, 1.0, 0, b""], use_bin_type=True))  # float seq
    v.msg(p([1, SID, 0, -1, 0, b""], use_bin_type=True))  # negative seq
    v.msg(p([1, SID, 0, 70000, 0, b""], use_bin_type=True))  # seq beyond u16
    v.msg(p([1, SID, 7, 1, 0, b""], use_bin_type=True))  # lod 7
    v.msg(p([2, SID, 0, 1, 0, 16, b""], use_bin_type=True))  # back 0
    v.msg(bytes([0x96, 1, SID, 0, 1, 0, 0xC6, 0xFF, 0xFF, 0xFF, 0xF0]))  # bin32 of ~4 GB
    v.msg(bytes([0xDD, 0xFF, 0xFF, 0xFF, 0xFF, 1]))  # array32 of 4 G entries
    v.msg(bytes([0xDB, 0x7F, 0xFF, 0xFF, 0xFF]))  # str32 of 2 GB
    v.msg(bytes([0x91] * 12 + [0x01]))  # nested 12 deep
    v.msg(bytes([0x92, 0x05, 0xA2, 0xFF, 0xFE]))  # a str that is not UTF-8
    v.msg(bytes(70000))  # beyond the message size limit
    hello2 = msgpack.unpackb(encode_hello(SID, schema, params), raw=False)
    v.msg(p([0, 2, SID, hello2[3]], use_bin_type=True))  # protocol version 2
    bad_bits = dict(hello2[3], bits=12)
    v.msg(p([0, 1, SID, bad_bits], use_bin_type=True))
    lods = [list(x) for x in hello2[3]["lods"]]
    small0 = [[0, 60, [0], [0]], *lods[1:]]  # level 0 smaller than level 1: would overrun
    v.msg(p([0, 1, SID, dict(hello2[3], lods=small0)], use_bin_type=True))
    huge_range = dict(hello2[3], hi=[1e39] * 52)  # beyond float32
    v.msg(p([0, 1, SID, huge_range], use_bin_type=True))
    no_morphs = {k: val for k, val in hello2[3].items() if k != "morphs"}
    v.msg(p([0, 1, SID, no_morphs], use_bin_type=True))
    # Bodies: level 0 has 61 elements -> 8 groups -> 1 group-mask byte.
    v.msg(p([1, SID, 0, 5, 0, b""], use_bin_type=True))  # shorter than the group mask
    v.msg(p([1, SID, 0, 5, 0, b"\x01"], use_bin_type=True))  # ends inside element masks
    v.msg(p([1, SID, 0, 5, 0, b"\x01\x00"], use_bin_type=True))  # empty element mask
    v.msg(p([1, SID, 0, 5, 0, b"\x80\xff" + bytes(8)], use_bin_type=True))  # elements 61-63
    v.msg(p([1, SID, 0, 5, 0, b"\x01\x03\x10"], use_bin_type=True))  # 2 elements, 1 value
    v.msg(p([1, SID, 0, 5, 0, b"\x01\x01\x10\x11"], use_bin_type=True))  # 1 element, 2 values
    v.msg(p([3, SID, 5, 0, 99], use_bin_type=True))  # state 99
    v.msg(p([3, SID, 5, 1, "yes"], use_bin_type=True))  # speaking as str
    v.msg(p([4, 0, "alice", 0, 0, 12], use_bin_type=True))  # subscribe with 12 bits
    v.msg(p([9, 5, 1, 0, b"\x00\x00\x80\x3f"], use_bin_type=True))  # positional, no hello
    v.msg(frames[1])  # the stream is intact: the delta still applies
    return v


def pcm16(samples: int, phase: int) -> bytes:
    """A deterministic tone as PCM16 little-endian (decoders only check its length)."""
    t = np.arange(phase, phase + samples)
    return (np.sin(t / 7.0) * 12000).astype("<i2").tobytes()


OPUS_SILENCE = b"\xf8\xff\xfe"
"""A 20 ms CELT fullband mono Opus packet of silence (TOC 0xf8): decoders never decode it."""


def audio_vector() -> Vector:
    """Protocol v1.1 voice (docs/protocol.md 3.8): hellos with and without a voice, packets,
    VOICE_CUT, SUBSCRIBE/SET_AUDIO with audio, and every error of 3.8."""
    schema = vector_schema()
    params = StreamParams(bits=8)
    v = Vector(
        "audio",
        "v1.1 voice: hellos naming opus (48 kHz), pcm16 (16 and 24 kHz) and no voice; AUDIO "
        "packets contiguous, after a lost packet, across the u16 seq wrap, with a trailing "
        "element; VOICE_CUT then a new utterance; SUBSCRIBE with audio and SET_AUDIO; a hello "
        "without a voice replacing one with a voice; every audio error (type, value, body, "
        "unknown_stream), none of which changes the streams",
    )
    p = msgpack.packb
    opus_sid, pcm_sid, mute_sid, wide_sid = SID, SID + 1, SID + 2, SID + 3
    v.msg(encode_audio(opus_sid, 0, 0, OPUS_SILENCE))  # before any hello: unknown stream
    v.msg(encode_hello(opus_sid, schema, params, AudioCodec.OPUS))
    enc = BatchEncoder(schema, 1, use_fast=False)
    enc.add_stream(0, opus_sid, 0, params)
    arkit, rot = inputs(2, 17)
    v.msg(bytes(enc.encode(0, arkit[:1], rot[:1]).message(0)))  # the face, same clock
    opus = [OPUS_SILENCE, bytes([0xFC, 0x01, 0x02, 0x03, 0x04]), bytes([0x78]) + bytes(range(40))]
    for seq in range(3):  # contiguous: t advances 20 ms per packet
        v.msg(encode_audio(opus_sid, seq, 20 * seq, opus[seq]))
    v.msg(bytes(enc.encode(17, arkit[1:2], rot[1:2]).message(0)))
    v.msg(encode_audio(opus_sid, 4, 80, OPUS_SILENCE))  # seq 3 lost: a gap of 20 ms
    v.msg(encode_voice_cut(opus_sid, 90, 5))  # barge-in at 90 ms
    v.msg(encode_audio(opus_sid, 5, 400, opus[1]))  # the next utterance
    v.msg(p([10, opus_sid, 6, 420, OPUS_SILENCE, "a future field"], use_bin_type=True))
    v.msg(encode_audio(opus_sid + 100, 0, 0, OPUS_SILENCE))  # an unknown sid
    v.msg(encode_hello(pcm_sid, schema, params, AudioCodec.PCM16))
    v.msg(encode_audio(pcm_sid, 65534, 1000, pcm16(320, 0)))  # 20 ms at 16 kHz: 640 bytes
    v.msg(encode_audio(pcm_sid, 65535, 1020, pcm16(320, 320)))
    v.msg(encode_audio(pcm_sid, 0, 1040, pcm16(160, 640)))  # wrapped; a shorter last packet
    v.msg(encode_voice_cut(pcm_sid, 1050, 1))
    wide = msgpack.unpackb(encode_hello(wide_sid, schema, params, AudioCodec.PCM16, 24000))
    wide[3] = {k: val for k, val in wide[3].items() if k != "minor"}
    wide[3]["future_key"] = [1, 2]
    v.msg(p(wide, use_bin_type=True))  # no minor key, an unknown key: still a voice
    v.msg(encode_audio(wide_sid, 9, 0, pcm16(480, 0)))  # 20 ms at 24 kHz: 960 bytes
    v.msg(encode_hello(mute_sid, schema, params))  # a v1.0 hello: no voice
    v.msg(encode_audio(mute_sid, 0, 0, pcm16(4, 0)))  # value: its hello named no voice
    # Viewer -> server: choosing the voice.
    v.msg(encode_subscribe("alice", 0, DeltaMode.CHAINED, 8, AudioCodec.OPUS))
    v.msg(encode_subscribe("alice", 2, DeltaMode.KEYFRAME, 8, AudioCodec.PCM16))
    v.msg(encode_subscribe("alice", 0, DeltaMode.CHAINED, 8, AudioCodec.OFF))
    for codec in AudioCodec:
        v.msg(encode_control(ControlOp.SET_AUDIO, opus_sid, audio=codec))
    # Errors (docs/protocol.md 3.8); none changes a stream.
    v.msg(p([10, "7", 0, 0, OPUS_SILENCE], use_bin_type=True))  # type: sid as str
    v.msg(p([10, opus_sid, 0, 1.5, OPUS_SILENCE], use_bin_type=True))  # type: float t
    v.msg(p([10, opus_sid, 0, 0, "f8fffe"], use_bin_type=True))  # type: payload as str
    v.msg(p([10, opus_sid, 0, 0], use_bin_type=True))  # type: too few elements
    v.msg(p([10, opus_sid, 70000, 0, OPUS_SILENCE], use_bin_type=True))  # value: seq > u16
    v.msg(p([10, opus_sid, 0, 0, b""], use_bin_type=True))  # body: empty opus
    v.msg(p([10, pcm_sid, 0, 0, b""], use_bin_type=True))  # body: empty pcm16
    v.msg(p([10, pcm_sid, 0, 0, pcm16(2, 0)[:3]], use_bin_type=True))  # body: odd length
    v.msg(p([10, pcm_sid, 0, 0, pcm16(321, 0)], use_bin_type=True))  # body: over 20 ms
    v.msg(p([10, wide_sid, 0, 0, pcm16(481, 0)], use_bin_type=True))  # body: over 20 ms
    v.msg(p([3, opus_sid, 0, 3, 65536], use_bin_type=True))  # value: next_seq > u16
    v.msg(p([3, opus_sid, 0, 3, "5"], use_bin_type=True))  # type: next_seq as str
    v.msg(p([4, 5, opus_sid, 3], use_bin_type=True))  # value: audio code 3
    v.msg(p([4, 5, opus_sid], use_bin_type=True))  # type: SET_AUDIO without audio
    v.msg(p([4, 0, "alice", 0, 0, 8, 3], use_bin_type=True))  # value: subscribe audio 3
    v.msg(p([4, 0, "alice", 0, 0, 8, "opus"], use_bin_type=True))  # type: audio as str
    info = msgpack.unpackb(encode_hello(opus_sid, schema, params))[3]
    for bad in (
        {"audio": "mp3", "audio_rate": 48000},  # value: unknown codec
        {"audio": "opus", "audio_rate": 16000},  # value: opus is 48 kHz
        {"audio": "pcm16", "audio_rate": 4000},  # value: below 8 kHz
        {"audio": "pcm16", "audio_rate": 96000},  # value: above 48 kHz
        {"audio": 1, "audio_rate": 48000},  # type: audio as int
        {"audio": "opus", "audio_rate": 48000.0},  # type: a float rate
        {"minor": "1", "audio": "opus", "audio_rate": 48000},  # type: minor as str
    ):
        v.msg(p([0, 1, opus_sid, {**info, **bad}], use_bin_type=True))
    v.msg(encode_audio(opus_sid, 7, 440, OPUS_SILENCE))  # the opus stream is intact
    v.msg(encode_hello(opus_sid, schema, params))  # SET_AUDIO off: a hello without a voice
    v.msg(encode_audio(opus_sid, 8, 460, OPUS_SILENCE))  # value: the voice is gone
    v.msg(encode_audio(pcm_sid, 2, 1100, pcm16(320, 0)))  # the other streams are intact
    return v


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.msgs"):
        old.unlink()
    for old in OUT.glob("*.json"):
        old.unlink()
    vectors = [
        stream_vector(
            f"{mode_name}_{bits}bit",
            f"{mode_name.replace('_', '-')} deltas, {bits}-bit, level 0 at 60 fps, 500 ms "
            "keyframes, dead band 1 step with a 6-frame hold, on a scripted speech sequence",
            StreamParams(bits=bits, mode=mode),
            45,
        )
        for mode_name, mode in (
            ("chained", DeltaMode.CHAINED),
            ("keyframe_rel", DeltaMode.KEYFRAME),
        )
        for bits in (8, 16)
    ]
    vectors.append(loss_vector("loss_chained", DeltaMode.CHAINED, {5, 6, 15}, {20}))
    vectors.append(loss_vector("loss_keyframe_rel", DeltaMode.KEYFRAME, {5, 6, 13, 15}, {20}))
    vectors.append(lod_switch_vector())
    vectors.append(misc_vector())
    vectors.append(malformed_vector())
    vectors.append(audio_vector())
    for v in vectors:
        v.write()
        kinds: dict[str, int] = {}
        for s in v.steps:
            if "expect" in s:
                k = s["expect"]["kind"]
                if k == "error":
                    k = "error:" + s["expect"]["code"]
                kinds[k] = kinds.get(k, 0) + 1
        print(f"{v.name}: {len(v.steps)} steps {kinds}")


if __name__ == "__main__":
    main()
