"""Speech, emotion and state through the REST API, observed on the stream: the app in process
on a fake clock (tests/inprocess.py), so every delay below is exact and costs no wall time."""

from __future__ import annotations

import base64
import wave
from pathlib import Path

import httpx
import pytest

from avatar_engine.client.subscriber import DecodedEvent, DecodedFrame
from avatar_engine.codec.wire import AudioCodec
from inprocess import InProcessServer

Action = tuple[float, str, dict[str, object]]
Seen = tuple[list[DecodedFrame], list[DecodedEvent], list[httpx.Response]]


@pytest.fixture
def server(inprocess: InProcessServer) -> InProcessServer:
    """A fresh in-process server per test (the real-process version shared one)."""
    return inprocess


def watch(server: InProcessServer, session: str, seconds: float, actions: list[Action]) -> Seen:
    """Subscribe, fire ``(delay, path, body)`` requests, collect frames for ``seconds``."""
    viewer = server.watch(session, audio=AudioCodec.OPUS)  # the stream route's default
    end = server.clock.t + seconds
    responses = []
    for delay, path, body in actions:
        server.advance(delay)
        responses.append(server.post(path, json=body))
    server.advance(end - server.clock.t)
    return viewer.frames, viewer.events, responses


def peak(frames: list[DecodedFrame], morph: str) -> float:
    return max(f.morphs.get(morph, 0.0) for f in frames)


def test_speaking_text_moves_the_mouth_and_closes_the_lips(server: InProcessServer) -> None:
    server.post("/sessions", json={"id": "talk"})
    frames, events, responses = watch(server, "talk", 3.5, [
        (0.3, "/sessions/talk/speak", {"text": "Bob bought a map."}),
    ])  # fmt: skip
    assert responses[0].status_code == 202
    assert peak(frames, "V_Open") > 0.3
    assert peak(frames, "V_Explosive") >= 0.9  # bilabial closure for b, p, m
    speaking = [e.value for e in events if e.kind == "speaking"]
    assert speaking[:2] == [True, False]


def test_tts_timings_play_and_bad_entries_are_named(server: InProcessServer) -> None:
    server.post("/sessions", json={"id": "tts", "rig": "oculus15"})
    phonemes = [{"p": "M", "start": 0.0, "end": 0.12}, {"p": "AA1", "start": 0.12, "end": 0.4}]
    frames, _, responses = watch(server, "tts", 1.5, [
        (0.2, "/sessions/tts/speak", {"phonemes": phonemes}),
    ])  # fmt: skip
    assert responses[0].status_code == 202
    assert peak(frames, "viseme_aa") > 0.3 and peak(frames, "viseme_PP") > 0.5
    bad = server.post(
        "/sessions/tts/speak", json={"phonemes": [{"p": "AA1", "start": 1, "end": 0.5}]}
    )
    assert bad.status_code == 400 and "phonemes[0]" in bad.json()["detail"]
    both = server.post("/sessions/tts/speak", json={"text": "hi", "polly": "x"})
    assert both.status_code == 422 and "exactly one" in both.json()["detail"]
    events = [{"VisemeId": 21, "AudioOffset": 0}, {"VisemeId": 2, "AudioOffset": 1500000}]
    azure = server.post("/sessions/tts/speak", json={"azure": events})
    assert azure.status_code == 202


def test_emotion_and_thinking_change_the_face_and_are_announced(server: InProcessServer) -> None:
    server.post("/sessions", json={"id": "feel"})
    frames, events, responses = watch(server, "feel", 2.0, [
        (0.2, "/sessions/feel/emotion", {"emotion": "happy", "transition_ms": 200}),
        (0.8, "/sessions/feel/state", {"state": "thinking"}),
    ])  # fmt: skip
    assert all(r.status_code == 202 for r in responses)
    assert peak(frames, "Mouth_Smile_L") > 0.3
    assert ("emotion", ["happy", 1.0]) in [
        (e.kind, list(e.value)) for e in events if e.kind == "emotion"
    ]
    assert "thinking" in [e.value for e in events if e.kind == "state"]
    assert server.post("/sessions/feel/emotion", json={"emotion": "ecstatic"}).status_code == 422
    assert server.post("/sessions/feel/emotion", json={"mix": {"happy": 2}}).status_code == 422
    assert server.post("/sessions/feel/state", json={"state": "asleep"}).status_code == 422


def test_streamed_text_speaks_word_by_word_and_interrupt_stops_it(server: InProcessServer) -> None:
    server.post("/sessions", json={"id": "llm"})
    deltas = [
        "Well, ",
        "I think ",
        "the answer ",
        "is ",
        "forty two and a very long tail of words ",
    ]
    actions = [
        (0.2 if i == 0 else 0.05, "/sessions/llm/text", {"delta": d}) for i, d in enumerate(deltas)
    ]
    actions.append((0.6, "/sessions/llm/text", {"interrupt": True}))
    frames, events, responses = watch(server, "llm", 2.5, actions)
    assert all(r.status_code == 202 for r in responses)
    assert peak(frames, "V_Open") > 0.2
    stop = next(e for e in events if e.kind == "speaking" and e.value is False)
    interrupted_at = (
        min(e.received for e in events if e.kind == "speaking" and e.value is True) + 0.5
    )
    assert stop.received < interrupted_at + 1.0  # stopped long before the text would have ended


def test_other_languages_through_espeak(server: InProcessServer) -> None:
    server.post("/sessions", json={"id": "fr"})
    response = server.post("/sessions/fr/speak", json={"text": "Bonjour à tous", "lang": "fr"})
    assert response.status_code == 202
    bad = server.post("/sessions/fr/speak", json={"text": "x", "lang": "Klingon!"})
    assert bad.status_code == 422


FOX = Path(__file__).parent / "data" / "audio" / "fox-espeak.wav"


def test_wav_audio_moves_the_mouth_and_bad_audio_is_400(server: InProcessServer) -> None:
    server.post("/sessions", json={"id": "wav"})
    wav = FOX.read_bytes()

    viewer = server.watch("wav", audio=AudioCodec.OPUS)
    status = server.post("/sessions/wav/audio", content=wav,
                         headers={"content-type": "audio/wav"}).status_code  # fmt: skip
    server.advance(4.0)
    peak_open = viewer.peak("V_Open")
    assert status == 202 and peak_open > 0.2
    bad = server.post("/sessions/wav/audio", content=b"RIFF\x00\x00",
                      headers={"content-type": "audio/wav"})  # fmt: skip
    assert bad.status_code == 400 and "RIFF" in bad.json()["detail"]


def test_streamed_pcm16_chunks_drive_visemes(server: InProcessServer) -> None:
    server.post("/sessions", json={"id": "pcm"})
    with wave.open(str(FOX)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    step = rate * 2 // 50  # 20 ms chunks, as a realtime speech API sends them
    emitted = 0
    for i in range(0, len(pcm), step):
        chunk = base64.b64encode(pcm[i : i + step]).decode()
        response = server.post("/sessions/pcm/audio", json={"pcm16": chunk, "rate": rate})
        assert response.status_code == 202
        emitted += response.json()["frames"]
    emitted += server.post("/sessions/pcm/audio", json={"final": True, "rate": rate}).json()[
        "frames"
    ]
    assert emitted == pytest.approx(len(pcm) / 2 / rate * 100, abs=3)  # one per 10 ms
    assert server.get("/sessions/pcm").json()["speaking"] in (True, False)
    bad = server.post("/sessions/pcm/audio", json={"pcm16": "not base64!", "rate": rate})
    assert bad.status_code == 400
