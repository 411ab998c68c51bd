"""Protocol v1.1 voice (docs/protocol.md 3.8): the encoders the server calls and the decoder's
checks of AUDIO against its stream's hello, in the Python and Cython decoders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import msgpack
import numpy as np
import pytest

from avatar_engine.codec import (
    Audio,
    AudioCodec,
    Control,
    ControlOp,
    Decoder,
    DeltaMode,
    Event,
    EventKind,
    Hello,
    LodTable,
    ProtocolError,
    StreamParams,
    StreamSchema,
    UnknownStream,
    encode_audio,
    encode_control,
    encode_event,
    encode_hello,
    encode_subscribe,
    encode_voice_cut,
)
from avatar_engine.codec.encoder import _fast
from avatar_engine.codec.wire import pcm16_max_bytes

SID = 3
ROOT = Path(__file__).resolve().parents[1]
FAST = [False] + ([True] if _fast is not None else [])


def schema() -> StreamSchema:
    lods = tuple(LodTable(i, 60, (0, 1), (0,)) for i in range(4))
    return StreamSchema(
        rig="tiny",
        morph_names=("jawOpen", "eyeBlinkLeft"),
        channel_names=("HeadYaw",),
        lo=np.zeros(2),
        hi=np.ones(2),
        rot_scale=1.0,
        lods=lods,
    )


def decoder_with(audio: AudioCodec, use_fast: bool = False, rate: int | None = None) -> Decoder:
    dec = Decoder(use_fast=use_fast)
    hello = dec.feed(encode_hello(SID, schema(), StreamParams(), audio, rate))
    assert isinstance(hello, Hello)
    return dec


def error_code(dec: Decoder, data: bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        dec.feed(data)
    return info.value.code


def test_audio_message_layout_is_the_spec_array() -> None:
    data = encode_audio(SID, 65535, 1234, b"\x01\x02")
    assert msgpack.unpackb(data) == [10, SID, 65535, 1234, b"\x01\x02"]
    assert data == bytes([0x95, 0x0A, 0x03, 0xCD, 0xFF, 0xFF, 0xCD, 0x04, 0xD2, 0xC4, 2, 1, 2])
    with pytest.raises(ValueError, match="empty"):
        encode_audio(SID, 0, 0, b"")
    with pytest.raises(ValueError, match="u16"):
        encode_audio(SID, 65536, 0, b"\x00")


def test_hello_announces_the_voice_and_stays_v10_without_one() -> None:
    plain = msgpack.unpackb(encode_hello(SID, schema(), StreamParams()))
    assert not {"minor", "audio", "audio_rate"} & set(plain[3])
    opus = msgpack.unpackb(encode_hello(SID, schema(), StreamParams(), AudioCodec.OPUS))
    assert (opus[3]["minor"], opus[3]["audio"], opus[3]["audio_rate"]) == (1, "opus", 48000)
    pcm = msgpack.unpackb(encode_hello(SID, schema(), StreamParams(), AudioCodec.PCM16))
    assert (pcm[3]["audio"], pcm[3]["audio_rate"]) == ("pcm16", 16000)
    with pytest.raises(ValueError, match="audio_rate 16000"):
        encode_hello(SID, schema(), StreamParams(), AudioCodec.OPUS, 16000)


def test_voice_cut_is_event_kind_3_with_the_next_seq() -> None:
    data = encode_voice_cut(SID, 500, 42)
    assert data == encode_event(SID, 500, EventKind.VOICE_CUT, 42)
    assert msgpack.unpackb(data) == [3, SID, 500, 3, 42]
    event = Decoder().feed(data)
    assert event == Event(SID, 500, EventKind.VOICE_CUT, 42)
    with pytest.raises(ValueError):
        encode_voice_cut(SID, 500, 70000)


def test_codec_names_cover_the_query_parameter() -> None:
    assert AudioCodec.from_name("pcm") is AudioCodec.PCM16
    assert AudioCodec.from_name("pcm16") is AudioCodec.PCM16
    assert AudioCodec.from_name("opus") is AudioCodec.OPUS
    assert AudioCodec.from_name("off") is AudioCodec.OFF
    with pytest.raises(ValueError, match="mp3"):
        AudioCodec.from_name("mp3")
    assert pcm16_max_bytes(16000) == 640
    assert pcm16_max_bytes(11025) == 440


@pytest.mark.parametrize("use_fast", FAST)
def test_audio_decodes_with_its_hellos_codec(use_fast: bool) -> None:
    dec = Decoder(use_fast=use_fast)
    hello = dec.feed(encode_hello(SID, schema(), StreamParams(), AudioCodec.OPUS))
    assert isinstance(hello, Hello)
    assert (hello.audio, hello.audio_rate, hello.minor) == (AudioCodec.OPUS, 48000, 1)
    got = dec.feed(encode_audio(SID, 7, 40, b"\xfc\xff\xfe"))
    assert got == Audio(SID, 7, 40, AudioCodec.OPUS, 48000, b"\xfc\xff\xfe")
    pcm = decoder_with(AudioCodec.PCM16, use_fast)
    full = bytes(640)
    assert pcm.feed(encode_audio(SID, 0, 0, full)) == Audio(
        SID, 0, 0, AudioCodec.PCM16, 16000, full
    )
    assert dec.feed(encode_audio(SID + 1, 0, 0, b"\x00")) == UnknownStream(SID + 1)


@pytest.mark.parametrize("use_fast", FAST)
def test_audio_errors_follow_section_3_8(use_fast: bool) -> None:
    pcm = decoder_with(AudioCodec.PCM16, use_fast)
    packed = msgpack.packb
    assert error_code(pcm, packed([10, SID, 0, 0, b"\x00\x00\x00"])) == "body"  # odd
    assert error_code(pcm, packed([10, SID, 0, 0, b""])) == "body"  # empty
    assert error_code(pcm, packed([10, SID, 0, 0, bytes(642)])) == "body"  # over 20 ms
    assert error_code(pcm, packed([10, SID, 70000, 0, b"\x00\x00"])) == "value"
    assert error_code(pcm, packed([10, SID, 0, 0, "text"])) == "type"
    assert error_code(pcm, packed([10, SID, 0, 1.5, b"\x00\x00"])) == "type"
    assert error_code(pcm, packed([10, SID, 0, 0])) == "type"
    opus = decoder_with(AudioCodec.OPUS, use_fast)
    assert error_code(opus, packed([10, SID, 0, 0, b""])) == "body"
    silent = decoder_with(AudioCodec.OFF, use_fast)
    assert error_code(silent, encode_audio(SID, 0, 0, b"\x00\x00")) == "value"
    assert error_code(silent, packed([3, SID, 0, 3, 65536])) == "value"
    assert error_code(silent, packed([3, SID, 0, 3, "next"])) == "type"


def test_hello_voice_keys_are_checked() -> None:
    info = msgpack.unpackb(encode_hello(SID, schema(), StreamParams()))[3]
    dec = Decoder()
    for extra, code in (
        ({"audio": "mp3", "audio_rate": 48000}, "value"),
        ({"audio": "opus", "audio_rate": 44100}, "value"),
        ({"audio": "pcm16", "audio_rate": 4000}, "value"),
        ({"audio": 1}, "type"),
        ({"audio": "opus", "audio_rate": "48000"}, "type"),
        ({"minor": -1}, "value"),
    ):
        assert error_code(dec, msgpack.packb([0, 1, SID, {**info, **extra}])) == code, extra
    hello = dec.feed(msgpack.packb([0, 1, SID, {**info, "audio": "pcm16"}]))
    assert isinstance(hello, Hello) and (hello.audio_rate, hello.minor) == (16000, 0)
    hello = dec.feed(msgpack.packb([0, 1, SID, {**info, "audio": "pcm16", "audio_rate": 24000}]))
    assert isinstance(hello, Hello) and hello.audio_rate == 24000
    assert dec.feed(encode_audio(SID, 0, 0, bytes(960))).rate == 24000  # type: ignore[union-attr]
    assert error_code(dec, encode_audio(SID, 0, 0, bytes(962))) == "body"


def test_subscribe_and_set_audio_choose_the_voice() -> None:
    dec = Decoder()
    old = dec.feed(encode_subscribe("alice", 0, DeltaMode.CHAINED, 8))
    assert isinstance(old, Control) and old.audio is None
    sub = dec.feed(encode_subscribe("alice", 0, DeltaMode.CHAINED, 8, AudioCodec.OPUS))
    assert msgpack.unpackb(encode_subscribe("a", 0, DeltaMode.CHAINED, 8, AudioCodec.OFF))[6] == 0
    assert isinstance(sub, Control) and sub.audio is AudioCodec.OPUS
    data = encode_control(ControlOp.SET_AUDIO, SID, audio=AudioCodec.PCM16)
    assert msgpack.unpackb(data) == [4, 5, SID, 2]
    assert dec.feed(data) == Control(ControlOp.SET_AUDIO, sid=SID, audio=AudioCodec.PCM16)
    assert error_code(dec, msgpack.packb([4, 5, SID, 3])) == "value"
    assert error_code(dec, msgpack.packb([4, 5, SID])) == "type"
    assert error_code(dec, msgpack.packb([4, 0, "alice", 0, 0, 8, 9])) == "value"


CPP_VOICE_ENCODERS = r"""
#include <cstdio>
#include "avatar_engine/protocol.hpp"
namespace ap = avatar_engine::protocol;
static void put(const std::vector<std::uint8_t>& b) {
  for (std::uint8_t x : b) std::printf("%02x", x);
  std::printf("\n");
}
int main() {
  put(ap::encode_subscribe("alice", 0, 0, 8, ap::AudioCodec::Opus));
  put(ap::encode_subscribe("alice", 2, 1, 8, ap::AudioCodec::Pcm16));
  put(ap::encode_set_audio(7, ap::AudioCodec::Off));
  put(ap::encode_control(ap::Op::SetAudio, 7, static_cast<std::uint32_t>(ap::AudioCodec::Opus)));
  return 0;
}
"""


def test_cpp_voice_encoders_match_python(tmp_path: Path) -> None:
    """The C++ header's SUBSCRIBE-with-audio and SET_AUDIO bytes equal the Python encoder's
    (compiled as a game engine builds it: no exceptions, no RTTI)."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    src = tmp_path / "voice_encoders.cpp"
    src.write_text(CPP_VOICE_ENCODERS)
    exe = tmp_path / "voice_encoders"
    subprocess.run(
        ["g++", "-std=c++17", "-Werror", "-Wall", "-Wextra", "-Wconversion", "-Wsign-conversion",
         "-fno-exceptions", "-fno-rtti", "-I", str(ROOT / "native" / "include"), str(src),
         "-o", str(exe)],
        check=True, timeout=240,
    )  # fmt: skip
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == [
        encode_subscribe("alice", 0, DeltaMode.CHAINED, 8, AudioCodec.OPUS).hex(),
        encode_subscribe("alice", 2, DeltaMode.KEYFRAME, 8, AudioCodec.PCM16).hex(),
        encode_control(ControlOp.SET_AUDIO, 7, audio=AudioCodec.OFF).hex(),
        encode_control(ControlOp.SET_AUDIO, 7, audio=AudioCodec.OPUS).hex(),
    ]
