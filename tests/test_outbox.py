"""The per-subscriber outbox: bounded, latest-wins, and never hands out an undecodable delta."""

from __future__ import annotations

import asyncio

import pytest

from avatar_engine.transport.outbox import MAX_CONTROL_MESSAGES, Outbox, OutboxOverflowError


def take(outbox: Outbox) -> tuple[list[bytes], bytes | None]:
    return asyncio.run(outbox.next_messages())


def test_a_reader_that_keeps_up_gets_every_frame_in_order() -> None:
    outbox = Outbox()
    outbox.put_control(b"hello")
    outbox.offer_frame(b"k0", keyframe=True)
    assert take(outbox) == ([b"hello"], b"k0")
    outbox.offer_frame(b"d1", keyframe=False)
    assert take(outbox) == ([], b"d1")
    assert outbox.frames_skipped == 0 and outbox.frames_sent == 2


def test_a_lost_delta_holds_deltas_back_until_a_keyframe_and_asks_for_one() -> None:
    asked: list[int] = []
    outbox = Outbox(on_resync=lambda: asked.append(1))
    outbox.offer_frame(b"k0", keyframe=True)
    outbox.offer_frame(b"d1", keyframe=False)  # the reader did not take k0 yet: d1 is lost
    outbox.offer_frame(b"d2", keyframe=False)
    assert outbox.frames_skipped == 2 and asked == [1] and outbox.awaiting_keyframe
    assert take(outbox) == ([], b"k0")  # what is pending still decodes
    outbox.offer_frame(b"d3", keyframe=False)  # would not decode without d1, d2: dropped
    outbox.offer_frame(b"k4", keyframe=True)
    assert not outbox.awaiting_keyframe
    assert take(outbox) == ([], b"k4")


def test_memory_is_bounded_for_a_reader_that_never_reads() -> None:
    outbox = Outbox()
    for i in range(10_000):
        outbox.offer_frame(bytes(40), keyframe=i % 30 == 0)
    assert outbox.frames_skipped == 9_999  # one frame slot, whatever the rate
    for _ in range(MAX_CONTROL_MESSAGES):
        outbox.put_control(b"event")
    with pytest.raises(OutboxOverflowError):
        outbox.put_control(b"one too many")
    assert outbox.closed and take(outbox)[0]  # closed: the writer drains and stops
