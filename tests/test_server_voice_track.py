"""The voice track and its fan-out in process, on a fake clock: packets cut once per codec,
contiguous on the stream clock, sent ahead of their frame (never late), the same bytes to
every viewer of a (stream, codec), cut on barge-in; live voice anchors face and audio alike."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Audio, Event, Frame, Hello, encode_control
from avatar_engine.codec.wire import AudioCodec, ControlOp, DeltaMode, EventKind
from avatar_engine.engine.live_voice import (
    MARGIN_MS,
    LiveClock,
    LiveFace,
    look_ahead_ms,
    play_delay_ms,
)
from avatar_engine.engine.voice_track import (
    LEAD_MS,
    PACKET_MS,
    VoiceQueueFullError,
    VoiceTrack,
)
from avatar_engine.server.auth import DEFAULT_TENANT, Principal
from avatar_engine.server.config import ServerOptions
from avatar_engine.server.runtime import Runtime
from avatar_engine.server.streams import Subscriber
from avatar_engine.server.voice_speak import fit_anticipation
from avatar_engine.voice import AudioPacketizer
from inprocess import FakeClock

FOX = Path(__file__).parent / "data" / "audio" / "fox-espeak.wav"
ADMIN = Principal("t", DEFAULT_TENANT, frozenset({"admin"}), None)


def tone(seconds: float, rate: int) -> np.ndarray:
    n = int(seconds * rate)
    return (np.sin(np.arange(n) * 2 * np.pi * 220 / rate) * 8000).astype(np.int16)


def drive(track: VoiceTrack, codec: AudioCodec, start: int, end: int, step: int = 17) -> list:
    """Call the track as the tick does; returns (now, packet) pairs."""
    seen = []
    for now in range(start, end, step):
        seen += [(now, p) for p in track.due(codec, now + LEAD_MS, now)]
        track.trim(now)
    return seen


def test_pcm16_packets_are_contiguous_exact_and_never_late() -> None:
    track = VoiceTrack(AudioPacketizer)
    pcm = tone(1.0, 16000)
    assert track.queue(pcm, 16000, 5000, 5000) == 5000
    seen = drive(track, AudioCodec.PCM16, 5000, 6400)
    packets = [p for _, p in seen]
    assert [p.t_ms for p in packets] == [5000 + PACKET_MS * k for k in range(50)]
    assert [p.seq for p in packets] == list(range(50))
    assert b"".join(p.payload for p in packets) == pcm.astype("<i2").tobytes()
    for now, p in seen:  # sent no later than its frame, at most LEAD (+1 packet) ahead
        assert now <= p.t_ms <= now + LEAD_MS + PACKET_MS
    assert track.empty  # played and trimmed


def test_opus_packets_follow_the_same_clock_and_a_joiner_starts_now() -> None:
    track = VoiceTrack(AudioPacketizer)
    track.queue(tone(1.0, 24000), 24000, 0, 0)
    opus = [p for _, p in drive(track, AudioCodec.OPUS, 0, 1400)]
    assert [p.t_ms for p in opus] == [PACKET_MS * k for k in range(50)]
    assert all(0 < len(p.payload) < 200 for p in opus)
    late = VoiceTrack(AudioPacketizer)
    late.queue(tone(1.0, 24000), 24000, 0, 0)
    first = late.due(AudioCodec.PCM16, 510 + LEAD_MS, 510)[0]
    assert first.t_ms == 500 and first.seq == 0  # the packet playing, none played before


def test_sentences_queue_back_to_back_and_the_bound_is_enforced() -> None:
    track = VoiceTrack(AudioPacketizer, max_queued_ms=3000)
    assert track.queue(tone(1.0, 16000), 16000, 0, 0) == 0
    assert track.queue(tone(0.5, 16000), 16000, 0, 0) == 1000  # after the first
    with pytest.raises(VoiceQueueFullError, match="at most 3 s"):
        track.queue(tone(2.0, 16000), 16000, 0, 0)
    assert track.end_ms == 1500  # the refused one left nothing behind
    packets = [p for _, p in drive(track, AudioCodec.PCM16, 0, 2000)]
    assert [p.t_ms for p in packets] == [20 * k for k in range(75)]


def test_cut_drops_the_queue_and_names_the_next_seq() -> None:
    track = VoiceTrack(AudioPacketizer)
    track.queue(tone(2.0, 16000), 16000, 0, 0)
    sent = track.due(AudioCodec.PCM16, LEAD_MS, 0)
    assert track.recent(AudioCodec.PCM16, 0) == sent
    assert track.cut() == {AudioCodec.PCM16: len(sent)}
    assert track.empty and track.due(AudioCodec.PCM16, 1000, 100) == []
    track.queue(tone(0.1, 16000), 16000, 100, 100)
    assert track.due(AudioCodec.PCM16, 100 + LEAD_MS, 100)[0].seq == len(sent)


# -- the runtime, in process --------------------------------------------------------------


def take(sub: Subscriber) -> list[bytes]:
    async def drain() -> list[bytes]:
        out: list[bytes] = []
        while sub.outbox._control or sub.outbox._frame is not None:
            controls, frame = await sub.outbox.next_messages()
            out += controls + ([frame] if frame is not None else [])
        return out

    return asyncio.run(drain())


def runtime() -> tuple[Runtime, FakeClock]:
    clock = FakeClock(50.0)
    rt = Runtime(ServerOptions(livelink_port=0, vmc_port=0), clock=clock)
    rt.create_session(ADMIN, session_id="s")
    return rt, clock


def subscribe(rt: Runtime, audio: AudioCodec, bits: int = 8) -> Subscriber:
    return rt.subscribe(ADMIN, "s", lod=0, mode=DeltaMode.CHAINED, bits=bits,
                        transport="test", audio=audio)  # fmt: skip


def test_runtime_sends_each_codec_once_per_stream_before_its_frames() -> None:
    rt, clock = runtime()
    opus_a, opus_b = subscribe(rt, AudioCodec.OPUS), subscribe(rt, AudioCodec.OPUS)
    pcm, off = subscribe(rt, AudioCodec.PCM16), subscribe(rt, AudioCodec.OFF)
    start = rt.t_ms() + 100
    rt.voice.track("s").queue(tone(0.5, 16000), 16000, start, rt.t_ms())
    rt.voice.wake("s")
    logs: dict[Subscriber, list[bytes]] = {s: [] for s in (opus_a, opus_b, pcm, off)}
    for _ in range(60):
        clock.t += 1 / 60
        rt.tick(clock.t)
        for sub in logs:
            logs[sub] += take(sub)
    assert logs[opus_a] == logs[opus_b]  # the same bytes for every viewer of (sid, codec)
    for sub, codec in ((opus_a, AudioCodec.OPUS), (pcm, AudioCodec.PCM16), (off, None)):
        decoder, audio, frame_t = Decoder(), [], -1
        for message in logs[sub]:
            result = decoder.feed(message)
            if isinstance(result, Hello):
                assert result.audio is (codec or AudioCodec.OFF)
            elif isinstance(result, Audio):
                assert result.t_ms >= frame_t  # never after the frame of its t
                audio.append(result)
            elif isinstance(result, Frame):
                frame_t = result.t_ms
        if codec is None:
            assert audio == []
            continue
        assert [a.t_ms for a in audio] == [start + 20 * k for k in range(25)]
        assert [a.seq for a in audio] == list(range(25))
    assert rt.stats()["voice"]["packets"] == 50  # type: ignore[index]


def test_set_audio_answers_with_a_hello_then_a_keyframe_and_cut_sends_voice_cut() -> None:
    rt, clock = runtime()
    sub = subscribe(rt, AudioCodec.OFF)
    clock.t += 0.02
    rt.tick(clock.t)
    take(sub)
    rt.voice.track("s").queue(tone(2.0, 16000), 16000, rt.t_ms(), rt.t_ms())
    rt.voice.wake("s")
    assert rt.on_client_message(sub, Decoder().feed(
        encode_control(ControlOp.SET_AUDIO, sub.sid, audio=AudioCodec.PCM16)))  # fmt: skip
    clock.t += 0.02
    rt.tick(clock.t)
    decoder = Decoder()
    results = [decoder.feed(m) for m in take(sub)]
    assert isinstance(results[0], Hello) and results[0].audio is AudioCodec.PCM16
    kinds = [type(r).__name__ for r in results]
    assert "Frame" in kinds and "Audio" in kinds
    first_frame = kinds.index("Frame")
    assert results[first_frame].keyframe  # type: ignore[union-attr]
    sent = [r for r in results if isinstance(r, Audio)]
    rt.voice.cut("s", rt.t_ms())
    cut = [decoder.feed(m) for m in take(sub)]
    assert isinstance(cut[0], Event) and cut[0].kind == EventKind.VOICE_CUT
    assert cut[0].value == sent[-1].seq + 1


# -- live voice: one anchor for audio and face --------------------------------------------


def fox() -> tuple[np.ndarray, int]:
    with wave.open(str(FOX)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16), w.getframerate()


def test_live_clock_anchors_at_arrival_plus_delay_and_reanchors_after_an_underrun() -> None:
    clock, a = LiveClock(24000, 200), 200  # arrival -> anchor: exactly the lip-sync delay
    first = clock.place(2400, now_ms=1000)
    assert (first.anchor_ms, first.t_ms, first.new_segment) == (1000 + a, 1000.0 + a, True)
    second = clock.place(2400, now_ms=1100)  # on time: continues the segment
    assert (second.segment, second.t_ms) == (0, 1100.0 + a)
    late = clock.place(2400, now_ms=1200 + a + 1)  # its place has passed: a new segment
    assert late.new_segment and late.anchor_ms == 1201 + 2 * a
    assert clock.played_ms(1251 + 2 * a) == 200 + 50  # the answer: both earlier chunks, 50 ms
    clock.end()
    after = clock.place(2400, now_ms=1300 + a, not_before_ms=1400.0 + 3 * a)  # behind queued
    assert after.anchor_ms == 1400 + 3 * a
    assert clock.played_ms(1450 + 3 * a) == 50  # a new answer
    with pytest.raises(VoiceQueueFullError):
        LiveClock(24000, 200, max_queued_ms=1000).place(24000, now_ms=0)


def test_the_delay_is_the_play_delay_and_the_look_ahead_keeps_a_work_margin() -> None:
    assert (play_delay_ms(200), look_ahead_ms(200)) == (200, 200 - MARGIN_MS)
    assert (play_delay_ms(0), look_ahead_ms(0)) == (MARGIN_MS, 0)  # never before the work
    assert LiveFace(24000, 200).params.delay_s == pytest.approx((200 - MARGIN_MS) / 1000)


def test_live_face_frames_share_the_audio_anchor() -> None:
    samples, rate = fox()
    clock, face = LiveClock(rate, 200), LiveFace(rate, 200)
    step = rate // 10
    times = []
    for i in range(0, samples.shape[0], step):
        piece = clock.place(samples[i : i + step].shape[0], now_ms=1000 + i * 1000 // rate)
        times.append(face.run(piece, samples[i : i + step]).t_ms)
    times.append(face.finish().t_ms)
    t = np.concatenate(times)
    assert t[0] == 1200.0  # frame 0 at the anchor, where sample 0 plays
    assert np.allclose(np.diff(t), 10.0)  # 10 ms frames, gapless
    assert t.shape[0] == pytest.approx(samples.shape[0] / rate * 100, abs=2)


def test_a_long_voiced_utterance_feeds_the_face_as_it_plays() -> None:
    """40 s of speech is far more than the speech curves hold at once (1,024 keys, 17 s at
    60 fps): its face enters them as it plays, and the voice covers it all."""
    from avatar_engine.server.voice_speak import schedule_voiced
    from avatar_engine.voice import VoiceOptions, load_voice

    rt, clock = runtime()
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 14)
    voiced = load_voice("espeak").synthesize(text, VoiceOptions(fps=60))
    assert voiced.duration > 30 and len(voiced.utterance.keys) > 1024
    sub = subscribe(rt, AudioCodec.PCM16)
    placed = schedule_voiced(rt, rt.engine.get("s"), voiced.samples, voiced.rate,
                             voiced.utterance)  # fmt: skip
    group = rt.engine.group(rt.engine.get("s").rig)
    bank = group.speech.sessions.bank
    most, packets = 0, 0
    for _ in range(int(voiced.duration * 20) + 40):
        clock.t += 0.05
        rt.tick(clock.t)
        most = max(most, int(bank.counts.max()))
        packets += sum(1 for m in take(sub) if m[1] == 10)  # AUDIO: msgpack fixarray, type 10
    assert most <= 400  # two seconds ahead, never the whole utterance
    assert packets * 20 == pytest.approx(placed["duration_ms"], abs=40)
    assert not rt.engine.get("s").speaking  # it finished


def test_without_the_default_voice_the_face_speaks_and_the_session_says_degraded() -> None:
    """No libespeak-ng here is simulated by the voice cache holding the error a missing
    library raises; everything after it is the real /speak path."""
    from avatar_engine.server.inputs import SpeakRequest
    from avatar_engine.server.voice_speak import Voices, speak_request
    from avatar_engine.voice import VoiceUnavailableError

    rt, clock = runtime()
    voices = Voices()
    missing = VoiceUnavailableError("espeak", "apt-get install espeak-ng", "libespeak-ng not found")
    voices._voices["espeak"] = missing  # the state a failed load leaves
    session, viewer = rt.engine.get("s"), subscribe(rt, AudioCodec.OPUS)
    body = asyncio.run(speak_request(rt, voices, session, SpeakRequest(text="Hello there")))
    assert body["voice"] is None and "espeak-ng" in str(body["degraded"])
    assert session.state.value == "degraded"
    speaking = False
    for _ in range(40):
        clock.t += 0.05
        rt.tick(clock.t)
        speaking = speaking or session.speaking
    decoder = Decoder()
    seen = [decoder.feed(m) for m in take(viewer)]
    states = [e.value for e in seen if isinstance(e, Event) and e.kind == EventKind.STATE]
    assert states[-1] == "degraded"  # every viewer is told
    assert speaking  # the face still speaks the text
    assert not any(isinstance(m, Audio) for m in seen)  # silent
    named = SpeakRequest(text="Hello", voice="espeak")
    with pytest.raises(VoiceUnavailableError, match="espeak-ng"):
        asyncio.run(speak_request(rt, voices, session, named))  # named: the caller's 400


def test_a_lead_shorter_than_the_faces_anticipation_fits_it_in_instead_of_losing_it() -> None:
    start, keys = 1000.0, np.array([850.0, 900.0, 950.0, 1000.0, 1050.0])
    fitted = fit_anticipation(keys, start, now_ms=960.0)  # a 40 ms lead, 150 ms anticipation
    assert fitted[0] == 960.0 and (np.diff(fitted) > 0).all()  # from now, in order
    assert np.allclose(fitted[:3], [960.0, 960.0 + 40 / 3, 960.0 + 80 / 3])  # same shape
    assert np.array_equal(fitted[3:], keys[3:])  # the sound's own keys stay where they are
    assert np.array_equal(fit_anticipation(keys, start, now_ms=800.0), keys)  # lead long enough
    assert np.array_equal(fit_anticipation(keys, start, now_ms=1000.0), keys)  # no lead
