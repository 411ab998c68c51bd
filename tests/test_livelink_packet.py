"""Live Link Face v6 packets: the Cython parser must agree with the Python reference."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from avatar_engine.formats import livelink
from avatar_engine.formats.livelink import (
    DropReason,
    LiveLinkPacketError,
    build_packet,
    parse_packet,
    parse_packet_py,
)

UUID = "9A1B2C3D-0000-4E5F-8A9B-0123456789AB"


def sample_values(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.random(61, dtype=np.float32)
    values[52:] = rng.uniform(-1, 1, 9).astype(np.float32)  # rotations are signed
    return values


def outcome(parse, data: bytes):  # type: ignore[no-untyped-def]
    try:
        frame = parse(data)
    except LiveLinkPacketError as exc:
        return ("error", exc.reason)
    return (
        frame.device_id,
        frame.subject,
        frame.frame_number,
        frame.subframe,
        frame.fps_numerator,
        frame.fps_denominator,
        frame.values.tobytes(),
    )


def test_the_fast_parser_is_the_one_in_use() -> None:
    assert livelink._parse is not livelink.parse_packet_py


def test_layout_matches_the_spec_byte_for_byte() -> None:
    values = sample_values()
    packet = build_packet(UUID, "iPhone", values, frame_number=1234, subframe=0.5, fps=(60, 1))
    assert len(packet) == 306 + len("iPhone")  # 270 + 36-byte UUID + subject
    assert packet[0] == 6 and packet[4] == 0x24  # the "$" PyLiveLinkFace mistakes for a uuid
    expected = (
        b"\x06"
        + struct.pack(">i", 36) + UUID.encode()
        + struct.pack(">i", 6) + b"iPhone"
        + struct.pack(">ifii", 1234, 0.5, 60, 1)
        + b"\x3d"
        + struct.pack(">61f", *values.tolist())
    )  # fmt: skip
    assert packet == expected


@pytest.mark.parametrize("parse", [parse_packet, parse_packet_py])
def test_round_trip(parse) -> None:  # type: ignore[no-untyped-def]
    values = sample_values(3)
    frame = parse(build_packet(UUID, "subject ünïcode", values, frame_number=7, fps=(30, 1)))
    assert frame.device_id == UUID and frame.subject == "subject ünïcode"
    assert frame.frame_number == 7 and frame.fps_numerator == 30
    assert frame.frame_time == pytest.approx(7 / 30)
    np.testing.assert_array_equal(frame.values, values)


def test_long_subject_names_up_to_the_limit() -> None:
    name = "s" * livelink.MAX_NAME_BYTES
    assert parse_packet(build_packet(UUID, name, sample_values())).subject == name
    with pytest.raises(ValueError):
        build_packet(UUID, name + "s", sample_values())


def test_every_truncation_is_a_counted_drop_reason_in_both_parsers() -> None:
    packet = build_packet(UUID, "iPhone", sample_values())
    for cut in range(len(packet)):
        fast, slow = outcome(parse_packet, packet[:cut]), outcome(parse_packet_py, packet[:cut])
        assert fast == slow
        assert fast[0] == "error"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: b"\x05" + p[1:], DropReason.VERSION),
        (lambda p: p[:1] + struct.pack(">i", -1) + p[5:], DropReason.NAME_LENGTH),
        (lambda p: p[:1] + struct.pack(">i", 100000) + p[5:], DropReason.NAME_LENGTH),
        (lambda p: p + b"\x00", DropReason.TRAILING),
        (lambda p: p + b"\x00" * 600, DropReason.TOO_LARGE),
        (lambda p: p[:-245] + b"\x34" + p[-244:], DropReason.COUNT),
        (lambda p: p[:-4] + struct.pack(">f", float("nan")), DropReason.NON_FINITE),
        (lambda p: p[:-4] + struct.pack(">f", float("inf")), DropReason.NON_FINITE),
        (lambda p: p[:5] + b"\xff" + p[6:], DropReason.NAME_ENCODING),
    ],
)
def test_malformed_packets_name_their_reason(mutate, reason: DropReason) -> None:  # type: ignore[no-untyped-def]
    packet = mutate(build_packet(UUID, "iPhone", sample_values()))
    for parse in (parse_packet, parse_packet_py):
        with pytest.raises(LiveLinkPacketError) as info:
            parse(packet)
        assert info.value.reason is reason


@given(st.binary(max_size=900))
def test_random_bytes_never_crash_and_parsers_agree(data: bytes) -> None:
    assert outcome(parse_packet, data) == outcome(parse_packet_py, data)


@given(st.integers(min_value=0, max_value=311), st.integers(min_value=0, max_value=7))
def test_bit_flips_agree(position: int, bit: int) -> None:
    packet = bytearray(build_packet(UUID, "iPhone", sample_values()))
    packet[position] ^= 1 << bit
    assert outcome(parse_packet, bytes(packet)) == outcome(parse_packet_py, bytes(packet))


def batch_outcomes(parse, packets: list[bytes], width: int = 900):  # type: ignore[no-untyped-def]
    """A batch as a receiver reads it (rows cut at ``width``) through ``parse``: per packet its
    head and values, or its drop reason."""
    rows = np.zeros((len(packets) + 1, width), np.uint8)
    sizes = np.zeros(len(packets) + 1, np.int64)
    for i, p in enumerate(packets):
        cut = p[:width]
        rows[i, : len(cut)] = np.frombuffer(cut, np.uint8)
        sizes[i] = len(cut)
    values = np.full((len(packets) + 1, 61), -7.0, np.float32)
    heads = parse(rows, sizes, len(packets), values)
    return [("error", h.reason) if isinstance(h, LiveLinkPacketError)
            else (h, values[i].tobytes()) for i, h in enumerate(heads)]  # fmt: skip


def test_the_fast_batch_parser_is_the_one_in_use() -> None:
    assert livelink._parse_batch is not livelink.parse_batch_py


@given(st.lists(st.binary(max_size=900), max_size=6), st.integers(0, 5))
def test_batch_parsers_agree_with_each_other_and_with_one_packet_at_a_time(
    junk: list[bytes], seed: int
) -> None:
    """Valid packets (timecodes, rates of zero) mixed with random bytes: the Cython batch twin,
    the reference batch and the one-packet parser say the same for every row."""
    good = [build_packet(UUID, f"s{k}", sample_values(seed + k), frame_number=k * 31,
                         subframe=0.25 * k, fps=(60 * (k % 2), 1)) for k in range(3)]  # fmt: skip
    packets = [*good, *junk]
    fast = batch_outcomes(livelink.parse_batch, packets)
    assert fast == batch_outcomes(livelink.parse_batch_py, packets)
    for packet, row in zip(packets, fast, strict=True):
        one = outcome(parse_packet_py, packet)
        if one[0] == "error":
            assert row == one
        else:
            frame = parse_packet_py(packet)
            assert row == ((frame.device_id, frame.subject, frame.frame_time), one[-1])
