"""Speech, emotion and state through the REST API of a real server, observed on the stream."""

from __future__ import annotations

import asyncio
import base64
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from avatar_engine.client.subscriber import DecodedEvent, DecodedFrame, subscribe_ws
from server_process import ServerProcess


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess().wait_ready()
    yield proc
    proc.stop()


Action = tuple[float, str, dict[str, object]]
Seen = tuple[list[DecodedFrame], list[DecodedEvent], list[httpx.Response]]


def watch(server: ServerProcess, session: str, seconds: float, actions: list[Action]) -> Seen:
    """Subscribe, fire ``(delay, path, body)`` requests, collect frames for ``seconds``."""

    async def scenario() -> Seen:
        frames: list[DecodedFrame] = []
        events: list[DecodedEvent] = []
        responses: list[httpx.Response] = []
        async with httpx.AsyncClient(base_url=server.url) as client:

            async def fire() -> None:
                for delay, path, body in actions:
                    await asyncio.sleep(delay)
                    responses.append(await client.post(path, json=body))

            task = asyncio.create_task(fire())
            end = time.monotonic() + seconds
            async for item in subscribe_ws(f"{server.ws_url}/sessions/{session}/stream"):
                (frames if isinstance(item, DecodedFrame) else events).append(item)  # type: ignore[arg-type]
                if time.monotonic() > end:
                    break
            await task
        return frames, events, responses

    return asyncio.run(scenario())


def peak(frames: list[DecodedFrame], morph: str) -> float:
    return max(f.morphs.get(morph, 0.0) for f in frames)


def test_speaking_text_moves_the_mouth_and_closes_the_lips(server: ServerProcess) -> None:
    httpx.post(server.url + "/sessions", json={"id": "talk"})
    frames, events, responses = watch(server, "talk", 3.5, [
        (0.3, "/sessions/talk/speak", {"text": "Bob bought a map."}),
    ])  # fmt: skip
    assert responses[0].status_code == 202
    assert peak(frames, "V_Open") > 0.3
    assert peak(frames, "V_Explosive") >= 0.9  # bilabial closure for b, p, m
    speaking = [e.value for e in events if e.kind == "speaking"]
    assert speaking[:2] == [True, False]


def test_tts_timings_play_and_bad_entries_are_named(server: ServerProcess) -> None:
    httpx.post(server.url + "/sessions", json={"id": "tts", "rig": "oculus15"})
    phonemes = [{"p": "M", "start": 0.0, "end": 0.12}, {"p": "AA1", "start": 0.12, "end": 0.4}]
    frames, _, responses = watch(server, "tts", 1.5, [
        (0.2, "/sessions/tts/speak", {"phonemes": phonemes}),
    ])  # fmt: skip
    assert responses[0].status_code == 202
    assert peak(frames, "viseme_aa") > 0.3 and peak(frames, "viseme_PP") > 0.5
    with httpx.Client(base_url=server.url) as c:
        bad = c.post(
            "/sessions/tts/speak", json={"phonemes": [{"p": "AA1", "start": 1, "end": 0.5}]}
        )
        assert bad.status_code == 400 and "phonemes[0]" in bad.json()["detail"]
        both = c.post("/sessions/tts/speak", json={"text": "hi", "polly": "x"})
        assert both.status_code == 422 and "exactly one" in both.json()["detail"]
        events = [{"VisemeId": 21, "AudioOffset": 0}, {"VisemeId": 2, "AudioOffset": 1500000}]
        azure = c.post("/sessions/tts/speak", json={"azure": events})
        assert azure.status_code == 202


def test_emotion_and_thinking_change_the_face_and_are_announced(server: ServerProcess) -> None:
    httpx.post(server.url + "/sessions", json={"id": "feel"})
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
    with httpx.Client(base_url=server.url) as c:
        assert c.post("/sessions/feel/emotion", json={"emotion": "ecstatic"}).status_code == 422
        assert c.post("/sessions/feel/emotion", json={"mix": {"happy": 2}}).status_code == 422
        assert c.post("/sessions/feel/state", json={"state": "asleep"}).status_code == 422


def test_streamed_text_speaks_word_by_word_and_interrupt_stops_it(server: ServerProcess) -> None:
    httpx.post(server.url + "/sessions", json={"id": "llm"})
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


def test_other_languages_through_espeak(server: ServerProcess) -> None:
    httpx.post(server.url + "/sessions", json={"id": "fr"})
    response = httpx.post(
        server.url + "/sessions/fr/speak", json={"text": "Bonjour à tous", "lang": "fr"}
    )
    assert response.status_code == 202
    bad = httpx.post(server.url + "/sessions/fr/speak", json={"text": "x", "lang": "Klingon!"})
    assert bad.status_code == 422


FOX = Path(__file__).parent / "data" / "audio" / "fox-espeak.wav"


def test_wav_audio_moves_the_mouth_and_bad_audio_is_400(server: ServerProcess) -> None:
    httpx.post(server.url + "/sessions", json={"id": "wav"})
    wav = FOX.read_bytes()

    async def send(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/sessions/wav/audio", content=wav,
                                 headers={"content-type": "audio/wav"})  # fmt: skip

    async def scenario() -> tuple[float, int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            peak_open, status = 0.0, 0
            end = time.monotonic() + 4.0
            async for item in subscribe_ws(f"{server.ws_url}/sessions/wav/stream"):
                if not status:
                    status = (await send(client)).status_code
                if isinstance(item, DecodedFrame):
                    peak_open = max(peak_open, item.morphs.get("V_Open", 0.0))
                if time.monotonic() > end:
                    break
            return peak_open, status

    peak_open, status = asyncio.run(scenario())
    assert status == 202 and peak_open > 0.2
    bad = httpx.post(server.url + "/sessions/wav/audio", content=b"RIFF\x00\x00",
                     headers={"content-type": "audio/wav"})  # fmt: skip
    assert bad.status_code == 400 and "RIFF" in bad.json()["detail"]


def test_streamed_pcm16_chunks_drive_visemes(server: ServerProcess) -> None:
    httpx.post(server.url + "/sessions", json={"id": "pcm"})
    with wave.open(str(FOX)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    step = rate * 2 // 50  # 20 ms chunks, as a realtime speech API sends them
    emitted = 0
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for i in range(0, len(pcm), step):
            chunk = base64.b64encode(pcm[i : i + step]).decode()
            response = c.post("/sessions/pcm/audio", json={"pcm16": chunk, "rate": rate})
            assert response.status_code == 202
            emitted += response.json()["frames"]
        emitted += c.post("/sessions/pcm/audio", json={"final": True, "rate": rate}).json()[
            "frames"
        ]
        assert emitted == pytest.approx(len(pcm) / 2 / rate * 100, abs=3)  # one per 10 ms
        assert c.get("/sessions/pcm").json()["speaking"] in (True, False)
        bad = c.post("/sessions/pcm/audio", json={"pcm16": "not base64!", "rate": rate})
        assert bad.status_code == 400
