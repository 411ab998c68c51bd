"""Live voice into a session: the realtime voice-agent bridge (WebSocket) and streamed chunks.

A :class:`LiveInput` takes a session's live audio as it arrives. Each chunk is placed on the
stream clock (:class:`~avatar_engine.engine.live_voice.LiveClock`) and queued on the session's
voice track at once, so viewers get it without waiting for the face; a worker task runs the
streaming lip-sync on the same chunks in the server's lip-sync process
(:class:`~avatar_engine.server.face_worker.FaceWorker`, off the event loop's GIL) and splices
the face frames it decides at the same stream times. Audio and face
therefore play together, ``delay_ms`` (the lip-sync delay) after the audio arrived.

A realtime agent sends faster than real time: each chunk's face is decided
:data:`DECIDE_AHEAD_MS` before it is needed, not on arrival, and enters the speech curves
through :meth:`~avatar_engine.server.voice_out.VoiceOut.feed_face`. A cancel cuts both at
once: VOICE_CUT to viewers, the queued audio and face dropped, the face eased to idle
(``Engine.interrupt``), and the worker's pending and in-flight results discarded.

The WebSocket bridge (:func:`run_bridge`) speaks a realtime speech API's shapes (binary PCM16,
or JSON audio deltas, done and cancel); docs/server.md and docs/voice.md describe it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np

from avatar_engine.audio.wav import STREAM_RATES
from avatar_engine.engine.engine import SessionNotFoundError
from avatar_engine.engine.live_voice import LiveClock, Piece
from avatar_engine.engine.sessions import Session
from avatar_engine.engine.voice_track import VoiceQueueFullError
from avatar_engine.server.close_codes import (
    CLOSE_BAD_REQUEST,
    CLOSE_INVALID,
    CLOSE_QUOTA,
    CLOSE_SESSION_GONE,
    CLOSE_TOO_BIG,
)
from avatar_engine.server.face_worker import FaceWorker
from avatar_engine.server.quotas import MemoryQuotas, QuotaExceededError
from avatar_engine.server.voice_out import VoiceOut
from avatar_engine.types import I16

log = logging.getLogger("avatar_engine.voice")


class LiveRuntime(Protocol):
    """What a live voice needs of the server's runtime (which imports this module)."""

    def session(self, session_id: str) -> Session:
        """The session; SessionNotFoundError once it is deleted."""
        ...

    def interrupt(self, session_id: str) -> None:
        """Barge-in now: the face stops speaking and eases to neutral."""
        ...

    @property
    def voice(self) -> VoiceOut:
        """The sessions' voices and their listeners."""
        ...

    @property
    def quotas(self) -> MemoryQuotas:
        """Tenant quotas (the bridge's deltas count as publish messages)."""
        ...

    def now(self) -> float:
        """The runtime's clock."""
        ...

    def t_ms(self, t: float | None = None) -> int:
        """Stream time in ms."""
        ...

    def kick(self) -> None:
        """Run a tick soon (new input)."""
        ...


DECIDE_AHEAD_MS: Final = 500
"""A chunk's face is decided this long before it is needed, not when the chunk arrives."""
MAX_LIVE_INPUTS: Final = 256
"""Live voices (bridges and streamed ``/audio`` utterances) open at once, per process."""
DEFAULT_BRIDGE_RATE: Final = 24_000
"""A realtime speech API's output rate (OpenAI Realtime: PCM16 24 kHz mono)."""
MAX_BRIDGE_MESSAGE: Final = 1 << 20
"""Largest bridge message (1 MiB: 21 s of 24 kHz PCM16 raw, 16 s as base64 JSON)."""

AUDIO_DELTAS: Final = frozenset({"response.output_audio.delta", "response.audio.delta"})
AUDIO_DONE: Final = frozenset({"response.output_audio.done", "response.audio.done", "done"})
CANCELS: Final = frozenset({"response.cancel", "cancel", "input_audio_buffer.speech_started"})
"""Barge-in: the client's cancel, a plain ``cancel``, or the realtime API's own report that the
user started speaking (a relay that forwards every server event gets barge-in for free)."""


class LiveInputBusyError(ValueError):
    """The session already has a live voice from another source (one at a time)."""


class LiveInput:
    """One live voice into one session (see the module docstring)."""

    def __init__(self, runtime: LiveRuntime, faces: FaceWorker, session_id: str, rate: int,
                 delay_ms: int, owner: str, *, yields: bool = False) -> None:  # fmt: skip
        self.runtime = runtime
        self.session_id = session_id
        self.rate = rate
        self.delay_ms = delay_ms
        self.owner = owner
        self.yields = yields
        """An idle input of this kind (REST chunks between utterances) gives way to a new one."""
        self.clock = LiveClock(rate, delay_ms)
        self._faces = faces
        self._face = faces.new_key(session_id)
        """This voice's face in the lip-sync process (a new one after a cut)."""
        self._work: deque[tuple[int, str, Piece | None, I16 | None]] = deque()
        """(generation, "audio" | "finish" | "prepare", piece, samples)"""
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._generation = 0
        self._closing = False
        self._hurry = False
        self._task: asyncio.Task[None] | None = None
        self.frames = 0
        """Face frames decided so far (10 ms each)."""
        self.face_errors = 0
        """Chunks whose lip-sync failed (logged; their audio still plays)."""
        self.reported = 0
        """Frames already reported to a REST sender (``POST /audio`` answers with the new)."""

    # -- input (event loop; cheap) -------------------------------------------------------

    def audio(self, samples: I16) -> Piece | None:
        """Queue a chunk: its audio to viewers now, its face to the worker. Raises
        :class:`VoiceQueueFullError` (nothing queued) beyond the bound."""
        if not samples.shape[0]:
            return None
        runtime = self.runtime
        runtime.session(self.session_id)  # SessionNotFoundError once it is deleted
        now_ms = runtime.t_ms()
        track = runtime.voice.track(self.session_id)
        piece = self.clock.place(samples.shape[0], now_ms, track.end_ms)
        if piece.new_segment:
            track.start_run(piece.anchor_ms, self.rate)
        track.append(samples, now_ms)
        runtime.voice.wake(self.session_id)
        runtime.kick()
        self._submit("audio", piece, samples)
        return piece

    def prepare(self) -> None:
        """Build the lip-sync for the first chunk ahead of it (the bridge says "ready" once
        it is built: :func:`run_bridge`)."""
        self._submit("prepare")

    def done(self) -> None:
        """The sender finished this response: flush the face's tail, close the audio run."""
        self.clock.end()
        track = self.runtime.voice.tracks.get(self.session_id)
        if track is not None:
            track.end_run()
        self._submit("finish")

    def cancel(self) -> int:
        """Barge-in: cut the voice and the face now; returns the ms of the current response
        that had played (for the agent's truncate)."""
        runtime = self.runtime
        now_ms = runtime.t_ms()
        played = self.clock.played_ms(now_ms)
        self._generation += 1
        self._work.clear()
        self._faces.drop(self._face)  # after what it is busy with, if anything
        self._face = self._faces.new_key(self.session_id)
        self._submit("prepare")
        self.clock.end()
        runtime.voice.cut(self.session_id, now_ms)
        with contextlib.suppress(SessionNotFoundError):
            runtime.interrupt(self.session_id)
        runtime.kick()
        return played

    def _submit(self, kind: str, piece: Piece | None = None, samples: I16 | None = None) -> None:
        self._work.append((self._generation, kind, piece, samples))
        self._idle.clear()
        self._ready.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"voice-face-{self.session_id}"
            )

    # -- the face worker -----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                early = self._early_s()
                if not self._work or early > 0:
                    if not self._work:
                        self._idle.set()
                        if self._closing:
                            self._faces.drop(self._face)
                            return
                    self._ready.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._ready.wait(), early or None)
                    continue
                await self._step(*self._work.popleft())
        except SessionNotFoundError:
            return
        finally:
            self._task = None  # a later chunk starts a new worker
            self._idle.set()

    def _early_s(self) -> float:
        """Seconds until the next chunk's lip-sync is due: :data:`DECIDE_AHEAD_MS` before its
        face is needed. A realtime agent sends faster than real time; deciding its face as it
        plays spreads the work (a burst of recognition would hold the GIL and delay every
        session's tick) and leaves nothing to throw away on a cut."""
        if self._hurry or not self._work:
            return 0.0
        piece = self._work[0][2]
        if piece is None:
            return 0.0
        due_ms = piece.t_ms - self.delay_ms - DECIDE_AHEAD_MS
        return max(0.0, (due_ms - self.runtime.t_ms()) / 1000.0)

    async def _step(self, generation: int, kind: str, piece: Piece | None,
                    samples: I16 | None) -> None:  # fmt: skip
        face, call = self._face, self._faces.call
        try:
            if kind == "prepare":
                await call(face, self.rate, self.delay_ms, "prepare")
                return
            if piece is not None and samples is not None:
                frames = await call(face, self.rate, self.delay_ms, "run", piece, samples)
            else:
                frames = await call(face, self.rate, self.delay_ms, "finish")
                if not self._closing:
                    self._submit("prepare")  # the next response starts without the wait
        except (ValueError, RuntimeError, TypeError) as exc:  # the voice goes on, faceless
            self.face_errors += 1
            log.warning("live voice: the face failed", extra={"session": self.session_id,
                                                               "reason": repr(exc)})  # fmt: skip
            return
        if generation != self._generation or frames is None:
            return  # cut while it ran
        self.frames += len(frames)
        self.runtime.voice.feed_face(self.session_id, frames, self.runtime.t_ms())

    @property
    def idle(self) -> bool:
        """No response is being received (before the first chunk, after done or a cut)."""
        return not self.clock.open

    async def drain(self) -> None:
        """Decide the face of everything submitted so far, now (not as it plays)."""
        self._hurry = True
        self._ready.set()
        try:
            await self._idle.wait()
        finally:
            self._hurry = False

    def close(self) -> None:
        """No more input: the worker finishes what it holds (nothing accepted is lost)."""
        if not self._closing:
            self._closing = True
            self.done()

    def stop(self) -> None:
        """The session is gone: drop everything."""
        self._generation += 1
        self._work.clear()
        self._faces.drop(self._face)
        if self._task is not None:
            self._task.cancel()


class LiveInputs:
    """The live voices of a runtime: at most one per session, :data:`MAX_LIVE_INPUTS` in all."""

    def __init__(self, runtime: LiveRuntime) -> None:
        self.runtime = runtime
        self.inputs: dict[str, LiveInput] = {}
        self.faces = FaceWorker()
        """Where their lip-sync runs (one process for all, started with the first)."""

    def open(self, session_id: str, rate: int, delay_ms: int, owner: str, *,
             yields: bool = False) -> LiveInput:  # fmt: skip
        """A new live voice; raises :class:`LiveInputBusyError` if the session has one that
        does not give way, QuotaExceededError beyond :data:`MAX_LIVE_INPUTS` (idle inputs
        that give way are closed first, oldest first)."""
        if rate not in STREAM_RATES:
            shown = ", ".join(str(r) for r in STREAM_RATES)
            raise ValueError(f"rate {rate} Hz is not supported; use one of {shown}")
        current = self.inputs.get(session_id)
        if current is not None:
            if not (current.yields and current.idle):
                raise LiveInputBusyError(
                    f"session {session_id!r} already has a live voice ({current.owner}); "
                    "one at a time"
                )
            self.close(current)
        if len(self.inputs) >= MAX_LIVE_INPUTS:
            idle = next((v for v in self.inputs.values() if v.yields and v.idle), None)
            if idle is None:
                raise QuotaExceededError(f"at most {MAX_LIVE_INPUTS} live voices at once")
            self.close(idle)
        live = LiveInput(self.runtime, self.faces, session_id, rate, delay_ms, owner,
                         yields=yields)  # fmt: skip
        self.inputs[session_id] = live
        return live

    def get(self, session_id: str) -> LiveInput | None:
        """The session's open live voice, if any (REST chunks continue it)."""
        return self.inputs.get(session_id)

    def close(self, live: LiveInput) -> None:
        """The input ended: it finishes its face in the background, and the slot is free."""
        live.close()
        if self.inputs.get(live.session_id) is live:
            del self.inputs[live.session_id]

    def drop_session(self, session_id: str) -> None:
        """The session is gone: its live voice stops, nothing more is decided for it."""
        live = self.inputs.pop(session_id, None)
        if live is not None:
            live.stop()


# -- the WebSocket bridge ------------------------------------------------------------------


class BridgeSocket(Protocol):
    """What the bridge needs of a WebSocket (Starlette's, in the server)."""

    async def receive(self) -> Any:
        """The next ASGI message (``websocket.receive`` with bytes or text, or disconnect)."""
        ...

    async def send_text(self, data: str) -> None:
        """Send a JSON answer (``voice.ready``, ``voice.cut``)."""
        ...


@dataclass
class BridgeOutcome:
    """How a bridge connection ended (the close code to send) and what it carried."""

    close_code: int = 1000
    close_reason: str = ""
    deltas: int = 0
    ignored: int = 0
    """JSON messages of other types (a relay may forward every server event)."""
    cancels: int = 0


class BridgeError(ValueError):
    """Bad input on the bridge: the connection closes with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:120]


def pcm16(data: bytes) -> I16:
    """Little-endian PCM16 bytes as samples; an odd byte count is a :class:`BridgeError`."""
    if len(data) % 2:
        raise BridgeError(
            CLOSE_INVALID, f"odd byte count {len(data)}: PCM16 samples are 2 bytes each"
        )
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def _delta_samples(message: dict[str, Any], rate: int) -> I16:
    given = message.get("rate")
    if given is not None and given != rate:
        raise BridgeError(
            CLOSE_BAD_REQUEST,
            f"delta rate {given!r} Hz differs from this bridge's {rate} Hz (?rate= when "
            "connecting)",
        )
    delta = message.get("delta")
    if not isinstance(delta, str):
        raise BridgeError(CLOSE_INVALID, "an audio delta needs 'delta': base64 PCM16")
    try:
        raw = base64.b64decode(delta, validate=True)
    except (binascii.Error, ValueError):
        raise BridgeError(CLOSE_INVALID, "'delta' is not valid base64") from None
    return pcm16(raw)


async def run_bridge(ws: BridgeSocket, live: LiveInput) -> BridgeOutcome:
    """Read one bridge connection until it closes or misbehaves; never raises for input.

    Whatever ends the connection, audio already accepted keeps playing with its face
    (:meth:`LiveInput.close`); the outcome says which close code to send.
    """
    runtime = live.runtime
    out = BridgeOutcome()
    live.prepare()
    await live.drain()  # "ready" means the first delta's face will not wait for a build
    await ws.send_text(json.dumps({"type": "voice.ready", "rate": live.rate,
                                   "delay_ms": live.delay_ms}))  # fmt: skip
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return out
            data: bytes | None = message.get("bytes")
            text: str | None = message.get("text")
            size = len(data) if data is not None else len(text or "")
            if size > MAX_BRIDGE_MESSAGE:
                raise BridgeError(CLOSE_TOO_BIG, f"messages are limited to {MAX_BRIDGE_MESSAGE} B")
            runtime.quotas.allow_publish(runtime.session(live.session_id).tenant)
            if data is not None:
                live.audio(pcm16(data))
                out.deltas += 1
                continue
            kind, parsed = _parse_json(text or "")
            if kind in AUDIO_DELTAS:
                live.audio(_delta_samples(parsed, live.rate))
                out.deltas += 1
            elif kind in AUDIO_DONE:
                live.done()
            elif kind in CANCELS:
                played = live.cancel()
                out.cancels += 1
                await ws.send_text(json.dumps({"type": "voice.cut", "audio_end_ms": played}))
            else:
                out.ignored += 1
    except BridgeError as exc:
        out.close_code, out.close_reason = exc.code, exc.reason
    except VoiceQueueFullError as exc:
        out.close_code, out.close_reason = CLOSE_QUOTA, str(exc)[:120]
    except QuotaExceededError as exc:
        out.close_code, out.close_reason = CLOSE_QUOTA, exc.reason[:120]
    except SessionNotFoundError:
        out.close_code, out.close_reason = CLOSE_SESSION_GONE, "session closed"
    return out


def _parse_json(text: str) -> tuple[str, dict[str, Any]]:
    try:
        parsed = json.loads(text)
    except ValueError:
        raise BridgeError(CLOSE_INVALID, "text messages must be JSON objects") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
        raise BridgeError(CLOSE_INVALID, "a JSON message needs a string 'type'")
    return parsed["type"], parsed
