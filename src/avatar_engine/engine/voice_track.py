"""A session's voice on its stream clock: queued PCM, cut into packets once per codec when due.

Sans-I/O: time is an argument (stream milliseconds, the ``t`` of the session's frames), and
the packetizer is injected. The shell queues audio *runs* (contiguous PCM at one rate whose
first sample plays at a stream time) and, each tick, asks for the packets of every codec some
subscriber wants that are due: those whose ``t`` is at most ``now + LEAD_MS`` (one packet
more may come, since resampling holds a few samples back). The tick sends them before the
frame of the same tick, so a packet always reaches a viewer before the frame of its ``t`` and
at most ``LEAD_MS + 20`` ms (far under the protocol's 1,000 ms) ahead of it.

Why packets are cut lazily, per codec, at the moment they fall due: a codec nobody listens to
costs nothing, a codec costs one encoder per session however many viewers share it, and a cut
(barge-in) throws away only what was never encoded. Each codec keeps its own sequence number
space (one per (session, codec)), so the shell encodes an AUDIO message once per (stream id,
codec) and sends the same bytes to every viewer of it, as frames are sent once per group.

Packet ``k`` of a run starts at ``run.t0 + 20 k`` ms (20 ms packets, whatever the input rate),
so contiguous packets are exactly contiguous on the stream clock. A run's last packet is
flushed (Opus pads it, PCM16 sends it short) when the run is closed and fully consumed.
Bounded: at most :data:`MAX_QUEUED_MS` of audio ahead of the clock per session.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

import numpy as np

from avatar_engine.codec.wire import AudioCodec
from avatar_engine.types import I16

PACKET_MS: Final = 20
"""Every packet (Opus or PCM16) covers 20 ms (docs/protocol.md 3.8)."""
LEAD_MS: Final = 250
"""How far ahead of the frame of the same ``t`` a packet is sent: enough for a browser to
decode it and for network jitter, small enough that a barge-in wastes little."""
MAX_QUEUED_MS: Final = 60_000
"""Audio queued ahead of the clock per session (60 s: a long answer synthesised sentence by
sentence, or a realtime agent's burst); more is refused with :class:`VoiceQueueFullError`."""
MAX_RECENT: Final = LEAD_MS // PACKET_MS + 2
"""Packets kept per codec for viewers who join: those sent ahead but not yet played."""


class VoiceQueueFullError(ValueError):
    """Queuing this audio would put more than :data:`MAX_QUEUED_MS` ahead of the clock."""


class Packetizer(Protocol):
    """Cuts PCM into 20 ms packets of one codec (``avatar_engine.voice.AudioPacketizer``)."""

    def push(self, samples: I16, rate: int) -> list[bytes]:
        """Take samples at ``rate``; return the packets now complete (some are held back)."""
        ...

    def flush(self) -> list[bytes]:
        """The run ended: return what is held back, the last packet padded or short."""
        ...

    def reset(self) -> None:
        """Forget held samples and codec state: the next push starts a new run."""
        ...


@dataclass(frozen=True, slots=True)
class Packet:
    """One 20 ms packet of one codec: its sequence number, stream time and payload."""

    seq: int
    t_ms: int
    payload: bytes


@dataclass(eq=False)
class _Run:
    """Contiguous PCM at one rate; sample ``i`` plays at ``t0 + 1000 i / rate`` ms."""

    id: int
    t0: int
    rate: int
    chunks: deque[I16] = field(default_factory=deque)
    base: int = 0
    """Index (in the run) of the first sample of ``chunks[0]`` (earlier ones were trimmed)."""
    n: int = 0
    closed: bool = False

    @property
    def end_ms(self) -> float:
        return self.t0 + 1000.0 * self.n / self.rate

    def index_at(self, t_ms: float) -> int:
        return max(0, math.ceil((t_ms - self.t0) * self.rate / 1000.0))

    def read(self, a: int, b: int) -> I16:
        """Samples ``[a, b)`` (``a`` at least ``base``)."""
        out: list[I16] = []
        pos = self.base
        for chunk in self.chunks:
            end = pos + chunk.shape[0]
            if end > a and pos < b:
                out.append(chunk[max(0, a - pos) : min(chunk.shape[0], b - pos)])
            if end >= b:
                break
            pos = end
        return out[0] if len(out) == 1 else np.concatenate(out)

    def trim_before(self, index: int) -> None:
        while self.chunks and self.base + self.chunks[0].shape[0] <= index:
            self.base += self.chunks.popleft().shape[0]


@dataclass(eq=False)
class _Cursor:
    """Where one codec's packetizer is in the queue."""

    packetizer: Packetizer
    seq: int = 0
    done_id: int = -1
    """The last run this codec finished (or skipped)."""
    run: _Run | None = None
    pos: int = 0
    """Samples of ``run`` pushed into the packetizer."""
    k: int = 0
    """Index in ``run`` of the next packet the packetizer will return."""
    recent: deque[Packet] = field(default_factory=lambda: deque(maxlen=MAX_RECENT))


class VoiceTrack:
    """One session's queued voice, packetized per codec on demand."""

    def __init__(
        self,
        packetizer_for: Callable[[AudioCodec], Packetizer],
        *,
        max_queued_ms: int = MAX_QUEUED_MS,
    ) -> None:
        self._packetizer_for = packetizer_for
        self.max_queued_ms = max_queued_ms
        self._runs: deque[_Run] = deque()
        self._next_id = 0
        self._cursors: dict[AudioCodec, _Cursor] = {}

    # -- queueing ------------------------------------------------------------------------

    @property
    def end_ms(self) -> float:
        """Stream time where the queued audio ends (-inf when nothing is queued)."""
        return self._runs[-1].end_ms if self._runs else -math.inf

    @property
    def empty(self) -> bool:
        """Nothing queued: the tick need not visit this session."""
        return not self._runs

    def start_run(self, t_ms: int, rate: int) -> int:
        """Open a run at ``t_ms`` or, if audio is queued until later, where it ends; returns
        the stream time its first sample will play at. Closes the previous run."""
        if not 8000 <= rate <= 192_000:
            raise ValueError(f"absurd sample rate {rate} Hz")
        if self._runs:
            self._runs[-1].closed = True
        t0 = max(int(t_ms), math.ceil(self.end_ms)) if self._runs else int(t_ms)
        self._runs.append(_Run(self._next_id, t0, int(rate)))
        self._next_id += 1
        return t0

    def append(self, samples: I16, now_ms: int) -> None:
        """Add samples to the open run; refuses (queue unchanged) beyond the bound."""
        if not self._runs or self._runs[-1].closed:
            raise ValueError("no open run: call start_run first")
        run = self._runs[-1]
        pcm = np.ascontiguousarray(samples, dtype=np.int16).reshape(-1)
        if not pcm.shape[0]:
            return
        end = run.t0 + 1000.0 * (run.n + pcm.shape[0]) / run.rate
        if end - now_ms > self.max_queued_ms:
            raise VoiceQueueFullError(
                f"voice queue full: at most {self.max_queued_ms / 1000:g} s of audio may wait "
                f"ahead of playback (this would make {(end - now_ms) / 1000:.1f} s)"
            )
        run.chunks.append(pcm)
        run.n += pcm.shape[0]

    def end_run(self) -> None:
        """The open run is complete: its last partial packet may be flushed."""
        if self._runs:
            self._runs[-1].closed = True

    def queue(self, samples: I16, rate: int, t_ms: int, now_ms: int) -> int:
        """One complete run (a synthesised utterance, a WAV); returns its start time."""
        t0 = self.start_run(t_ms, rate)
        try:
            self.append(samples, now_ms)
        except VoiceQueueFullError:
            self._runs.pop()
            raise
        self.end_run()
        return t0

    # -- packets -------------------------------------------------------------------------

    def due(self, codec: AudioCodec, upto_ms: int, now_ms: int) -> list[Packet]:
        """Packets of ``codec`` up to ``upto_ms`` (and at most one more), each cut once.

        A codec asked for the first time starts with the packet playing at ``now_ms``
        (never one that has finished playing)."""
        cur = self._cursors.get(codec)
        if cur is None:
            cur = self._cursors[codec] = _Cursor(self._packetizer_for(codec))
        out: list[Packet] = []
        while True:
            run = cur.run if cur.run is not None else self._enter_next(cur, now_ms)
            if run is None:
                return out
            last_k = math.floor((upto_ms - run.t0) / PACKET_MS)
            # One packet more of input than due: resampling holds a few samples back.
            need = min(run.n, round((last_k + 2) * run.rate * PACKET_MS / 1000))
            start = max(cur.pos, run.base)
            if need > start:
                self._emit(cur, run, cur.packetizer.push(run.read(start, need), run.rate), out)
            cur.pos = max(cur.pos, need)
            if not (run.closed and cur.pos >= run.n):
                return out
            self._emit(cur, run, cur.packetizer.flush(), out)
            cur.packetizer.reset()
            cur.done_id, cur.run = run.id, None

    def _enter_next(self, cur: _Cursor, now_ms: int) -> _Run | None:
        for run in self._runs:
            if run.id <= cur.done_id:
                continue
            if run.closed and run.end_ms <= now_ms:
                cur.done_id = run.id  # played already: nothing of it is still due
                continue
            k = max(0, math.floor((now_ms - run.t0) / PACKET_MS))  # the packet playing now
            cur.run, cur.k = run, k
            cur.pos = round(k * run.rate * PACKET_MS / 1000)
            return run
        return None

    @staticmethod
    def _emit(cur: _Cursor, run: _Run, payloads: list[bytes], out: list[Packet]) -> None:
        for payload in payloads:
            packet = Packet(cur.seq, run.t0 + PACKET_MS * cur.k, payload)
            cur.seq = (cur.seq + 1) & 0xFFFF
            cur.k += 1
            cur.recent.append(packet)
            out.append(packet)

    def recent(self, codec: AudioCodec, now_ms: int) -> list[Packet]:
        """Packets of ``codec`` already sent that have not finished playing (for a joiner)."""
        cur = self._cursors.get(codec)
        if cur is None:
            return []
        return [p for p in cur.recent if p.t_ms + PACKET_MS > now_ms]

    def release(self, codec: AudioCodec) -> None:
        """Nobody listens to ``codec`` any more: drop its encoder (it restarts at "now")."""
        self._cursors.pop(codec, None)

    def next_seq(self, codec: AudioCodec) -> int:
        """The sequence number ``codec``'s next packet will carry (0 before any)."""
        cur = self._cursors.get(codec)
        return 0 if cur is None else cur.seq

    # -- barge-in and housekeeping -------------------------------------------------------

    def cut(self) -> dict[AudioCodec, int]:
        """Drop everything queued; returns each codec's next ``seq`` (VOICE_CUT's value)."""
        self._runs.clear()
        for cur in self._cursors.values():
            cur.packetizer.reset()
            cur.recent.clear()
            cur.run, cur.pos, cur.k = None, 0, 0
            cur.done_id = self._next_id - 1
        return {codec: cur.seq for codec, cur in self._cursors.items()}

    def trim(self, now_ms: int) -> None:
        """Forget audio that has played: whole runs, and chunks of the run playing now.

        Safe because every live codec is asked each tick for packets up to ``now + LEAD_MS``,
        so none still needs a sample from before ``now``."""
        while self._runs:
            run = self._runs[0]
            if run.closed and run.end_ms <= now_ms and self._consumed(run):
                self._runs.popleft()
                continue
            run.trim_before(min(run.index_at(now_ms), self._lowest_pos(run)))
            return

    def _consumed(self, run: _Run) -> bool:
        return all(c.done_id >= run.id for c in self._cursors.values())

    def _lowest_pos(self, run: _Run) -> int:
        positions = [c.pos for c in self._cursors.values() if c.run is run]
        return min(positions, default=run.n)
