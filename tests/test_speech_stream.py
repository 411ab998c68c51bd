"""Streaming text: incremental words, pauses, quiet-gap completion, barge-in, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatar_engine.speech.coarticulation import CHANNELS, CoarticulationParams
from avatar_engine.speech.stream import INTERRUPT_EASE_S, SpeechSessions, StreamOptions

FPS = 60.0


def sample(sp: SpeechSessions, t: float) -> np.ndarray:
    out = np.empty((sp.bank.sessions, CHANNELS), np.float32)
    sp.sample(t, out)
    return out


def test_words_are_scheduled_as_soon_as_complete() -> None:
    sp = SpeechSessions(2, backend="numpy")
    sp.push(0, "Hel", now=0.0)
    assert sp.bank.counts[0] == 0  # an unfinished word waits
    sp.push(0, "lo ", now=0.05)
    assert sp.bank.counts[0] > 0
    assert np.abs(sample(sp, 0.35)[0]).max() > 0.2  # speaking well before any sentence end
    assert np.all(sample(sp, 0.35)[1] == 0.0)  # the other session stays neutral


def test_clause_and_sentence_marks_become_pauses() -> None:
    ends = []
    for text in ("one two three ", "one, two. three "):
        sp = SpeechSessions(1, backend="numpy")
        sp.push(0, text, now=0.0)
        ends.append(sp.stream(0).speech_end)
    assert ends[1] - ends[0] > 0.4  # a clause pause and a sentence pause were inserted


def test_completion_after_quiet_gap() -> None:
    sp = SpeechSessions(1, options=StreamOptions(quiet_s=0.5), backend="numpy")
    sp.push(0, "Hello wor", now=0.0)
    end_before = sp.stream(0).speech_end
    assert sp.update(0.3) == []
    assert sp.stream(0).speech_end == end_before  # "wor" may still grow
    assert sp.update(0.55) == []  # quiet gap: the tail is spoken now
    end_after = sp.stream(0).speech_end
    assert end_after > end_before
    assert sp.update(end_after - 0.01) == []
    assert sp.update(end_after + 0.01) == [0]
    assert 0 not in sp.speaking
    assert np.all(sample(sp, end_after + 0.01) == 0.0)


def test_interrupt_eases_to_neutral_within_100ms() -> None:
    sp = SpeechSessions(1, backend="numpy")
    sp.push(0, "Maybe the baby wants a bottle of warm milk, and then some more milk. ", now=0.0)
    now = 0.6
    assert np.abs(sample(sp, now)).max() > 0.1
    before = sample(sp, now)[0]
    sp.interrupt(0, now)
    np.testing.assert_allclose(sample(sp, now)[0], before, atol=1e-6)  # no jump
    assert np.abs(sample(sp, now + INTERRUPT_EASE_S / 2)).max() > 0.0
    assert np.all(sample(sp, now + 0.1) == 0.0)
    sp.push(0, "again ", now=1.0)  # speaks again after a barge-in
    assert np.abs(sample(sp, 1.4)).max() > 0.1


def test_streamed_curves_stay_continuous_across_splices() -> None:
    text = "The lamp flickered, then the film began with a bang. Maybe the baby wants milk. "
    sp = SpeechSessions(1, backend="numpy")
    vmax = CoarticulationParams().max_velocity
    chunks = [text[i : i + 7] for i in range(0, len(text), 7)]
    prev = None
    worst = 0.0
    for frame in range(int(8 * FPS)):
        now = frame / FPS
        if frame % 4 == 0 and chunks:
            sp.push(0, chunks.pop(0), now)
        sp.update(now)
        cur = sample(sp, now)[0]
        if prev is not None:
            worst = max(worst, float(np.abs(cur - prev).max()))
        prev = cur
    assert worst <= vmax / FPS + 1e-3


def test_memory_stays_bounded_on_an_endless_stream() -> None:
    opts = StreamOptions(horizon_s=3.0, max_queued_words=200)
    sp = SpeechSessions(1, options=opts, capacity=512, backend="numpy")
    word = "banana "
    now = 0.0
    for _ in range(3000):  # text arrives far faster than it can be spoken
        sp.push(0, word * 3, now)
        sp.update(now)
        now += 0.05
        s = sp.stream(0)
        assert sp.bank.counts[0] <= 512
        assert len(s._queue) <= 200
        assert len(s._rows) < 400
    assert sp.stream(0).dropped_words > 0
    assert sp.stream(0).speech_end - now <= opts.horizon_s + 1.0


@pytest.mark.parametrize("backend", ["numpy", "numba", "native"])
def test_sessions_sample_in_one_call_on_every_backend(backend: str) -> None:
    from avatar_engine.kernels.backends import available_backends

    if backend not in available_backends():
        pytest.skip(f"{backend} unavailable")
    sp = SpeechSessions(3, backend=backend)
    sp.push(0, "Peter picked peppers. ", 0.0)
    sp.push(2, "Five fish. ", 0.1)
    out = sample(sp, 0.4)
    assert np.abs(out[0]).max() > 0 and np.all(out[1] == 0) and np.abs(out[2]).max() > 0


@settings(max_examples=25)
@given(
    chunks=st.lists(st.text(max_size=30), max_size=12),
    gaps=st.lists(st.floats(0.0, 0.8), min_size=12, max_size=12),
    interrupt_at=st.integers(-1, 11),
)
def test_fuzzed_stream_never_crashes(
    chunks: list[str], gaps: list[float], interrupt_at: int
) -> None:
    sp = SpeechSessions(2, capacity=512, backend="numpy")
    now = 0.0
    for i, chunk in enumerate(chunks):
        sp.push(i % 2, chunk, now)
        if i == interrupt_at:
            sp.interrupt(0, now)
        sp.update(now)
        out = sample(sp, now)
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 2.0
        now += gaps[i]
    end = now + 30.0
    sp.update(end)  # quiet gap: any unfinished word is spoken now
    sp.update(end + 10.0)
    assert not sp.speaking
    assert np.all(sample(sp, end + 10.0) == 0.0)


def test_per_session_style() -> None:
    sp = SpeechSessions(2, backend="numpy")
    sp.set_style(0, ja=0.1, li=0.1)
    sp.set_style(1, ja=0.9, li=0.9)
    for row in (0, 1):
        sp.push(row, "Are you hungry? Have a large hot pasta. ", 0.0)
    peaks = np.zeros((2, CHANNELS), np.float32)
    for frame in range(int(3 * FPS)):
        peaks = np.maximum(peaks, sample(sp, frame / FPS))
    jaw = slice(15, 30)  # the jaw layer
    assert peaks[1, jaw].max() > 1.5 * peaks[0, jaw].max()
    with pytest.raises(ValueError):
        sp.set_style(0, ja=1.5)
