"""The voice through a real ``avatar-engine serve`` process and real WebSocket viewers:
``/speak`` out loud (Opus and PCM16, off, SET_AUDIO), ``/audio`` relayed, the voice-agent
bridge (deltas in, voice and a moving mouth out, cancel, bad input)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Audio, Event, Frame, Hello, encode_control
from avatar_engine.codec.wire import AudioCodec, ControlOp, EventKind
from avatar_engine.engine.voice_track import LEAD_MS
from avatar_engine.server.voice_speak import VOICE_LEAD_MS
from server_process import ServerProcess

FOX = Path(__file__).parent / "data" / "audio" / "fox-espeak.wav"
MOUTH = "V_Open"
"""cc4-extended's jaw-open viseme: the mouth moving."""
OPEN = 0.05


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess().wait_ready()
    yield proc
    proc.stop()


@dataclass
class Seen:
    hellos: list[Hello] = field(default_factory=list)
    audio: list[Audio] = field(default_factory=list)
    frames: list[tuple[int, float]] = field(default_factory=list)
    """(t, mouth opening) of every frame."""
    events: list[Event] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    log: list[object] = field(default_factory=list)
    """Every decoded message, in arrival order."""

    def pcm(self) -> np.ndarray:
        return np.frombuffer(b"".join(a.payload for a in self.audio), "<i2")

    def mouth_starts(self, threshold: float = OPEN) -> int:
        return next(t for t, v in self.frames if v > threshold)


Switch = tuple[asyncio.Event, Callable[[Seen], bytes]]


async def watch(url: str, seconds: float, seen: Seen, ready: asyncio.Event | None = None,
                switch: Switch | None = None) -> None:  # fmt: skip
    """Subscribe for ``seconds``, decoding everything (sending ``switch``'s control once its
    event is set)."""
    decoder = Decoder()
    mouth = -1
    async with websockets.connect(url, max_size=None) as ws:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            if switch is not None and switch[0].is_set():
                await ws.send(switch[1](seen))
                switch = None
            try:
                message = await asyncio.wait_for(ws.recv(), 0.05)
            except TimeoutError:
                continue
            result = decoder.feed(message)
            seen.order.append(type(result).__name__)
            seen.log.append(result)
            if isinstance(result, Hello):
                seen.hellos.append(result)
                mouth = result.schema.morph_names.index(MOUTH)
                if ready is not None:
                    ready.set()
            elif isinstance(result, Audio):
                seen.audio.append(result)
            elif isinstance(result, Frame):
                value = float(decoder.stream(result.sid).morphs[mouth])
                seen.frames.append((result.t_ms, value))
            elif isinstance(result, Event):
                seen.events.append(result)


Request = tuple[str, dict[str, object]]


def scenario(server: ServerProcess, session: str, query: str, seconds: float,
             request: Request | None) -> tuple[Seen, httpx.Response | None]:  # fmt: skip
    async def run() -> tuple[Seen, httpx.Response | None]:
        seen, ready = Seen(), asyncio.Event()
        url = f"{server.ws_url}/sessions/{session}/stream?{query}"
        task = asyncio.create_task(watch(url, seconds, seen, ready))
        await asyncio.wait_for(ready.wait(), 10)
        response = None
        if request is not None:
            await asyncio.sleep(0.3)
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                response = await client.post(request[0], json=request[1])
        await task
        return seen, response

    return asyncio.run(run())


def create(server: ServerProcess, session: str) -> None:
    assert httpx.post(server.url + "/sessions", json={"id": session}).status_code == 201


def runs(ts: list[int]) -> int:
    """Segments of contiguous 20 ms packets; packets never overlap (asserted)."""
    steps = np.diff(ts)
    assert (steps >= 20).all(), "voice packets overlap"
    return 1 + int((steps > 20).sum())


def onset_ms(seen: Seen, rate: int, threshold: int = 1500) -> float:
    """Stream time of the first loud sample (PCM16 packets are contiguous from the first)."""
    pcm = seen.pcm()
    first = int(np.argmax(np.abs(pcm.astype(np.int32)) > threshold))
    return seen.audio[0].t_ms + 1000.0 * first / rate


def test_speak_is_audible_in_opus_and_the_voice_covers_the_moving_mouth(
    server: ServerProcess,
) -> None:
    create(server, "say")
    text = "Hello there, how are you today?"
    seen, response = scenario(server, "say", "audio=opus", 4.5,
                              ("/sessions/say/speak", {"text": text}))  # fmt: skip
    assert response is not None and response.status_code == 202, response.text
    body = response.json()
    assert body["voice"] == "espeak" and body["duration_ms"] > 1000
    hello = seen.hellos[0]
    assert (hello.audio, hello.audio_rate, hello.minor) == (AudioCodec.OPUS, 48000, 1)
    ts = [a.t_ms for a in seen.audio]
    assert ts[0] == body["start_ms"]
    assert ts == [ts[0] + 20 * k for k in range(len(ts))]  # contiguous, one utterance
    assert abs(len(ts) * 20 - body["duration_ms"]) <= 40
    moving = [t for t, v in seen.frames if v > OPEN]
    # the mouth moves while the voice plays (opening into its first sound within the lead)
    assert ts[0] - VOICE_LEAD_MS - 1000 / 60 <= moving[0] < ts[-1]
    assert moving[-1] <= ts[-1] + 20 + 150  # and closes with the last sound (its ease-out)


def test_pcm16_voice_starts_with_the_mouth_and_off_gets_none(server: ServerProcess) -> None:
    create(server, "pcm")
    request = ("/sessions/pcm/speak", {"text": "Ah, I see all of it."})
    seen, response = scenario(server, "pcm", "audio=pcm", 3.5, request)
    assert response is not None and response.status_code == 202
    assert seen.hellos[0].audio is AudioCodec.PCM16
    assert all(len(a.payload) <= 640 for a in seen.audio)
    first, sound = seen.audio[0].t_ms, onset_ms(seen, 16000)
    moves, opens = seen.mouth_starts(0.01), seen.mouth_starts()
    print(f"pcm16: first audio t {first}, sound onset {sound:.0f}, mouth moves {moves}, "
          f"opens {opens} (stream ms)")  # fmt: skip
    frame = 1000 / 60
    still = max(t for t, v in seen.frames if t < moves)
    # the mouth is still until the lead before the voice's first t (its anticipation fitted
    # into the lead, VOICE_LEAD_MS) and moves from the next frame on (a frame of this busy
    # machine's tick may be late, but never one before the lead)
    assert moves >= first - VOICE_LEAD_MS - frame and still < first + frame
    assert abs(opens - sound) <= 2 * 1000 / 60
    quiet, _ = scenario(server, "pcm", "audio=off", 2.5,
                        ("/sessions/pcm/speak", {"text": "Nobody hears this."}))  # fmt: skip
    assert quiet.hellos[0].audio is AudioCodec.OFF and quiet.audio == []
    assert any(v > OPEN for _, v in quiet.frames)  # the face still speaks


def test_set_audio_switches_the_voice_with_a_new_hello_and_a_keyframe(
    server: ServerProcess,
) -> None:
    create(server, "switch")
    text = "A longer sentence, so that the switch happens while it is being said."

    async def run() -> tuple[Seen, dict[str, int]]:
        seen, ready = Seen(), asyncio.Event()
        switch = asyncio.Event()

        def set_pcm(seen: Seen) -> bytes:
            return encode_control(ControlOp.SET_AUDIO, seen.hellos[0].sid, audio=AudioCodec.PCM16)

        url = f"{server.ws_url}/sessions/switch/stream?audio=off"
        task = asyncio.create_task(watch(url, 5.0, seen, ready, switch=(switch, set_pcm)))
        await asyncio.wait_for(ready.wait(), 10)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            response = await client.post("/sessions/switch/speak", json={"text": text})
        await asyncio.sleep(0.8)  # mid-sentence
        switch.set()
        await task
        return seen, response.json()

    seen, body = asyncio.run(run())
    assert [h.audio for h in seen.hellos] == [AudioCodec.OFF, AudioCodec.PCM16]
    second = [i for i, k in enumerate(seen.order) if k == "Hello"][1]
    assert "Audio" not in seen.order[:second]
    after = seen.order[second + 1 :]
    assert "Audio" in after and "Frame" in after  # the voice, and a keyframe to go on from
    assert seen.audio[0].t_ms >= body["start_ms"] + 500  # joined mid-sentence
    assert seen.audio[-1].t_ms + 20 == pytest.approx(body["start_ms"] + body["duration_ms"], abs=40)


def test_speak_errors_name_the_limit_and_the_missing_voice(server: ServerProcess) -> None:
    create(server, "errs")
    with httpx.Client(base_url=server.url) as c:
        too_long = c.post("/sessions/errs/speak", json={"text": "word " * 1100})
        assert too_long.status_code == 400 and "at most 5000" in too_long.json()["detail"]
        piper = c.post("/sessions/errs/speak", json={"text": "hi", "voice": "piper"})
        assert piper.status_code == 400, piper.text
        assert piper.json()["error"] == "voice_unavailable"
        assert "piper" in piper.json()["detail"]
        bad_pitch = c.post("/sessions/errs/speak", json={"text": "hi", "pitch": 101})
        assert bad_pitch.status_code == 422


def wav_bytes(path: Path) -> tuple[bytes, int, bytes]:
    with wave.open(str(path)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    return path.read_bytes(), rate, pcm


def test_audio_chunks_are_relayed_with_the_face_they_drive(server: ServerProcess) -> None:
    create(server, "relay")
    _, rate, pcm = wav_bytes(FOX)
    step = rate // 10 * 2  # 100 ms chunks of whole samples
    with httpx.Client(base_url=server.url, timeout=30) as c:  # the session's first utterance
        c.post("/sessions/relay/audio", json={"pcm16": base64.b64encode(pcm[:step]).decode(),
                                              "rate": rate, "final": True})  # fmt: skip
    time.sleep(1.0)  # played out before the viewer comes

    async def run() -> tuple[Seen, int]:
        seen, ready = Seen(), asyncio.Event()
        url = f"{server.ws_url}/sessions/relay/stream?audio=pcm"
        task = asyncio.create_task(watch(url, len(pcm) / 2 / rate + 2.0, seen, ready))
        await asyncio.wait_for(ready.wait(), 10)
        frames, first = 0, time.monotonic()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            for k, i in enumerate(range(0, len(pcm), step)):  # at real time, as a TTS streams
                chunk = base64.b64encode(pcm[i : i + step]).decode()
                r = await client.post("/sessions/relay/audio", json={"pcm16": chunk, "rate": rate})
                assert r.status_code == 202, r.text
                frames += r.json()["frames"]
                await asyncio.sleep(max(0.0, first + (k + 1) * 0.1 - time.monotonic()))
            r = await client.post("/sessions/relay/audio", json={"final": True, "rate": rate})
            frames += r.json()["frames"]
        await task
        return seen, frames

    seen, frames = asyncio.run(run())
    assert frames == pytest.approx(len(pcm) / 2 / rate * 100, abs=3)
    ts = [a.t_ms for a in seen.audio]
    # A chunk that arrives after its place on the clock has passed (the sender or this busy
    # machine fell behind real time) starts a new segment: counted, never overlapping.
    print(f"/audio relay: {runs(ts)} segment(s)")
    assert len(ts) * 0.02 == pytest.approx(len(pcm) / 2 / rate, abs=0.05 * runs(ts))
    sound, mouth = onset_ms(seen, 16000), seen.mouth_starts()
    print(f"/audio relay: sound onset {sound:.0f} ms, mouth opens {mouth} ms")
    assert abs(mouth - sound) <= 60


def test_wav_audio_is_relayed_at_its_face_time(server: ServerProcess) -> None:
    create(server, "wavrelay")
    data, _, _ = wav_bytes(FOX)

    async def run() -> tuple[Seen, httpx.Response]:
        seen, ready = Seen(), asyncio.Event()
        url = f"{server.ws_url}/sessions/wavrelay/stream?audio=opus"
        task = asyncio.create_task(watch(url, 5.0, seen, ready))
        await asyncio.wait_for(ready.wait(), 10)
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            response = await client.post("/sessions/wavrelay/audio", content=data,
                                         headers={"content-type": "audio/wav"})  # fmt: skip
        await task
        return seen, response

    seen, response = asyncio.run(run())
    assert response.status_code == 202
    duration = response.json()["duration_s"]
    assert len(seen.audio) * 0.02 == pytest.approx(duration, abs=0.05)
    moving = [t for t, v in seen.frames if v > OPEN]
    assert seen.audio[0].t_ms - 1000 / 60 <= moving[0] < seen.audio[-1].t_ms  # within a frame
    assert moving[-1] <= seen.audio[-1].t_ms + 20 + 150


# -- the voice-agent bridge ---------------------------------------------------------------


async def send_deltas(ws: websockets.ClientConnection, pcm: bytes, rate: int,
                      chunk_ms: int) -> float:  # fmt: skip
    """Send ``pcm`` as realtime-API deltas at real time; returns when the first was sent."""
    step = rate * chunk_ms // 1000 * 2  # whole samples
    first = time.monotonic()
    for k, i in enumerate(range(0, len(pcm), step)):
        delta = base64.b64encode(pcm[i : i + step]).decode()
        await ws.send(json.dumps({"type": "response.output_audio.delta", "delta": delta}))
        await asyncio.sleep(max(0.0, first + (k + 1) * chunk_ms / 1000 - time.monotonic()))
    return first


def test_bridge_deltas_come_out_as_voice_and_a_moving_mouth_together(
    server: ServerProcess,
) -> None:
    create(server, "agent")
    _, rate, pcm = wav_bytes(FOX)
    assert rate == 24000 or rate in (16000, 22050, 44100, 48000)

    async def run() -> tuple[Seen, dict[str, object]]:
        seen, ready = Seen(), asyncio.Event()
        url = f"{server.ws_url}/sessions/agent/stream?audio=pcm"
        task = asyncio.create_task(watch(url, len(pcm) / 2 / rate + 4.0, seen, ready))
        await asyncio.wait_for(ready.wait(), 10)
        bridge = f"{server.ws_url}/sessions/agent/voice?rate={rate}"
        async with websockets.connect(bridge) as ws:
            hello = json.loads(await ws.recv())
            await send_deltas(ws, pcm, rate, 50)
            await ws.send(json.dumps({"type": "response.output_audio.done"}))
            await asyncio.sleep(0.3)
        await task
        return seen, hello

    seen, hello = asyncio.run(run())
    assert hello == {"type": "voice.ready", "rate": rate, "delay_ms": 200}
    ts = [a.t_ms for a in seen.audio]
    print(f"bridge: {runs(ts)} segment(s)")
    assert len(ts) * 0.02 == pytest.approx(len(pcm) / 2 / rate, abs=0.05 * runs(ts))
    sound, mouth = onset_ms(seen, 16000), seen.mouth_starts()
    print(f"bridge: sound onset {sound:.0f} ms, mouth opens {mouth} ms")
    assert abs(mouth - sound) <= 60


def test_bridge_cancel_cuts_voice_and_face_in_one_tick(server: ServerProcess) -> None:
    create(server, "barge")
    _, rate, pcm = wav_bytes(FOX)

    async def run() -> tuple[Seen, dict[str, object]]:
        seen, ready = Seen(), asyncio.Event()
        url = f"{server.ws_url}/sessions/barge/stream?audio=opus"
        task = asyncio.create_task(watch(url, 3.0, seen, ready))
        await asyncio.wait_for(ready.wait(), 10)
        async with websockets.connect(f"{server.ws_url}/sessions/barge/voice?rate={rate}") as ws:
            await ws.recv()
            # a realtime API sends faster than real time: here, everything at once
            step = rate // 10 * 2
            for i in range(0, len(pcm), step):
                delta = base64.b64encode(pcm[i : i + step]).decode()
                await ws.send(json.dumps({"type": "response.audio.delta", "delta": delta}))
            await asyncio.sleep(0.9)
            await ws.send(json.dumps({"type": "response.cancel"}))
            cut = json.loads(await ws.recv())
        await task
        return seen, cut

    seen, cut_reply = asyncio.run(run())
    assert cut_reply["type"] == "voice.cut"
    assert 400 <= int(cut_reply["audio_end_ms"]) <= 1200  # type: ignore[call-overload]
    cuts = [e for e in seen.log if isinstance(e, Event) and e.kind == EventKind.VOICE_CUT]
    assert len(cuts) == 1
    cut = cuts[0]
    at = seen.log.index(cut)
    before = [a for a in seen.log[:at] if isinstance(a, Audio)]
    after = [a for a in seen.log[at:] if isinstance(a, Audio)]
    assert cut.value == before[-1].seq + 1  # the next packet starts a new utterance
    assert after == []  # the rest of the queue (seconds of it) was dropped, not sent
    assert before[-1].t_ms < cut.t_ms + LEAD_MS + 20  # only what was sent ahead
    # the face heads back to idle from the first frame after the cut (the same tick: the cut
    # and the interrupt happen together, and the next frame is sampled after both; its t is
    # the tick's nominal slot, which on a busy machine may be a little before the cut's)
    frames_after = [(t, v) for t, v in seen.frames if t >= cut.t_ms]
    next_frame = next(r for r in seen.log[at:] if isinstance(r, Frame))
    print(f"cut at {cut.t_ms}: next frame t {next_frame.t_ms}, played {cut_reply}")
    assert next_frame.t_ms >= cut.t_ms - 1000 / 60  # the tick of the cut (nominal slot time)
    assert max(v for t, v in seen.frames if before[0].t_ms <= t < cut.t_ms) > OPEN
    assert max(v for t, v in frames_after if t >= cut.t_ms + 300) < OPEN


def test_bridge_refuses_bad_input_with_a_close_code_and_keeps_what_it_accepted(
    server: ServerProcess,
) -> None:
    create(server, "bad")

    async def closed(url: str, *sends: str | bytes) -> tuple[int, str]:
        async with websockets.connect(url) as ws:
            try:
                await ws.recv()
                for s in sends:
                    await ws.send(s)
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed:
                pass
            await ws.wait_closed()
            return ws.close_code or 0, ws.close_reason or ""

    async def run() -> None:
        base = f"{server.ws_url}/sessions/bad/voice"
        code, reason = await closed(f"{base}?rate=12345")
        assert code == 4400 and "12345" in reason
        code, reason = await closed(base, b"\x00\x01\x02")
        assert code == 1007 and "odd byte count 3" in reason
        code, reason = await closed(base, json.dumps({"type": "response.audio.delta",
                                                      "delta": "!!"}))  # fmt: skip
        assert code == 1007 and "base64" in reason
        code, reason = await closed(f"{server.ws_url}/sessions/nobody/voice")
        assert code == 4404
        # accepted audio plays on after a bad message closes the bridge
        seen, ready = Seen(), asyncio.Event()
        task = asyncio.create_task(
            watch(f"{server.ws_url}/sessions/bad/stream?audio=pcm", 4.0, seen, ready)
        )
        await asyncio.wait_for(ready.wait(), 10)
        tone = (np.sin(np.arange(24000) / 5) * 9000).astype("<i2").tobytes()  # 1 s
        code, reason = await closed(base, tone, b"\x01")
        assert code == 1007
        await task
        assert len(seen.audio) * 20 == pytest.approx(1000, abs=40)
        # one bridge per session
        async with websockets.connect(base) as first:
            await first.recv()
            code, reason = await closed(base)
            assert code == 4409 and "already" in reason

    asyncio.run(run())


def test_webrtc_offer_audio_puts_the_voice_on_the_reliable_channel(server: ServerProcess) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    create(server, "rtc")

    async def run() -> tuple[list[object], list[object]]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        frames = pc.createDataChannel("frames", ordered=False, maxRetransmits=0)
        control = pc.createDataChannel("control")
        decoder = Decoder()
        on_control: list[object] = []
        on_frames: list[object] = []
        control.on("message", lambda m: on_control.append(decoder.feed(m)))
        frames.on("message", lambda m: on_frames.append(decoder.feed(m)))
        try:
            await pc.setLocalDescription(await pc.createOffer())
            offer = {"sdp": pc.localDescription.sdp, "type": "offer", "session": "rtc",
                     "audio": "pcm"}  # fmt: skip
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                answer = await client.post("/rtc/offer", json=offer)
                assert answer.status_code == 200, answer.text
                await pc.setRemoteDescription(RTCSessionDescription(**answer.json()))
                for _ in range(100):
                    if any(isinstance(m, Hello) for m in on_control):
                        break
                    await asyncio.sleep(0.1)
                await client.post("/sessions/rtc/speak", json={"text": "Over the data channel."})
            await asyncio.sleep(3.0)
        finally:
            await pc.close()
        return on_control, on_frames

    on_control, on_frames = asyncio.run(run())
    hello = next(m for m in on_control if isinstance(m, Hello))
    assert hello.audio is AudioCodec.PCM16
    audio = [m for m in on_control if isinstance(m, Audio)]
    assert len(audio) > 20 and [a.seq for a in audio] == list(range(len(audio)))  # no loss
    assert not any(isinstance(m, Audio) for m in on_frames)  # never on the lossy channel
