"""The voices of a runtime's sessions, and who hears them: audio's share of the tick's fan-out.

Each session that has spoken owns a :class:`~avatar_engine.engine.voice_track.VoiceTrack`.
Viewers listen in one codec (``audio=opus|pcm|off``, SET_AUDIO); they are grouped by (session,
stream id, codec). Per tick, for every session with audio queued and every codec somebody
wants, the track cuts the due packets once; each packet is encoded as an AUDIO message once
per (stream id, codec) and the same bytes are put in every listener's outbox, on the reliable
ordered path (WebSocket, or WebRTC's ``control`` channel), ahead of the tick's frame. A
barge-in (:meth:`VoiceOut.cut`) drops the queue and sends each listener a VOICE_CUT naming
its codec's next sequence number.

The face that goes with a voice waits here too (:meth:`VoiceOut.feed_face`): its frames enter
the session's speech curves at most :data:`SPLICE_AHEAD_MS` ahead of the clock. The curves
hold a bounded number of keys per session (1,024: about 17 s at 60 frames/s), while a voice
may queue a minute of speech; fed as it plays, any length that fits the voice queue fits.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_engine.codec.messages import encode_audio, encode_voice_cut
from avatar_engine.codec.wire import AudioCodec
from avatar_engine.engine.engine import SessionNotFoundError
from avatar_engine.engine.live_voice import FaceFrames
from avatar_engine.engine.voice_track import LEAD_MS, Packet, VoiceTrack
from avatar_engine.server.streams import Subscriber
from avatar_engine.transport.outbox import OutboxOverflowError
from avatar_engine.voice.packets import AudioPacketizer

GroupKey = tuple[int, AudioCodec]
"""(stream id, codec): the listeners that receive the same AUDIO bytes."""

MAX_TRACKS: Final = 100_000
"""Sessions with a voice at once (a track costs nothing until audio is queued)."""
SPLICE_AHEAD_MS: Final = 2000
"""Face frames enter the speech curves at most this far ahead of the clock (120 keys at
60 frames/s, 200 at the streaming lip-sync's 100)."""

Splice = Callable[[str, npt.NDArray[np.float64], npt.NDArray[np.float32]], None]
"""Put face frames (stream ms, speech channels) into a session's speech curves."""


@dataclass
class VoiceCounters:
    """What the voices cost, for ``/stats``."""

    packets: int = 0
    """Packets cut (once per session and codec)."""
    messages_bytes: int = 0
    """AUDIO bytes put in outboxes (every listener counted)."""
    cuts: int = 0


class VoiceOut:
    """Voice tracks per session and their listeners per (stream id, codec)."""

    def __init__(self, splice: Splice) -> None:
        self._splice = splice
        self._faces: dict[str, deque[FaceFrames]] = {}
        """Face frames waiting to enter the speech curves, per session, in time order."""
        self.tracks: dict[str, VoiceTrack] = {}
        self._groups: dict[str, dict[GroupKey, set[Subscriber]]] = {}
        self._codec: dict[Subscriber, AudioCodec] = {}
        self._busy: set[str] = set()
        """Sessions whose track holds audio: the only ones the tick visits."""
        self.counters = VoiceCounters()
        self.degraded: dict[str, str] = {}
        """Sessions whose voice could not run (why): silent until a voice speaks again."""

    def track(self, session_id: str) -> VoiceTrack:
        """The session's track (created on first use); queue audio on it, then :meth:`wake`."""
        track = self.tracks.get(session_id)
        if track is None:
            if len(self.tracks) >= MAX_TRACKS:
                raise ValueError(f"at most {MAX_TRACKS} sessions may have a voice at once")
            track = self.tracks[session_id] = VoiceTrack(AudioPacketizer)
        return track

    def wake(self, session_id: str) -> None:
        """Audio was queued on the session's track: the tick sends it from now on."""
        if session_id in self.tracks:
            self._busy.add(session_id)

    # -- listeners -----------------------------------------------------------------------

    def codec_of(self, sub: Subscriber) -> AudioCodec:
        """The codec ``sub`` hears the voice in (OFF: none)."""
        return self._codec.get(sub, AudioCodec.OFF)

    def listen(self, sub: Subscriber, codec: AudioCodec, now_ms: int) -> None:
        """``sub`` hears the session's voice in ``codec`` (OFF: not at all) from now on.

        The caller has sent the hello announcing the codec. Packets already sent to others
        and not yet played are sent to ``sub`` too, so a joiner hears the sentence it joins.
        """
        self.forget(sub)
        if codec is AudioCodec.OFF:
            return
        groups = self._groups.setdefault(sub.session, defaultdict(set))
        groups[(sub.sid, codec)].add(sub)
        self._codec[sub] = codec
        track = self.tracks.get(sub.session)
        if track is not None:
            for packet in track.recent(codec, now_ms):
                sub.outbox.put_audio(encode_audio(sub.sid, packet.seq, packet.t_ms, packet.payload))

    def forget(self, sub: Subscriber) -> None:
        """``sub`` stops listening; a codec nobody hears any more drops its encoder."""
        codec = self._codec.pop(sub, None)
        if codec is None:
            return
        groups = self._groups.get(sub.session, {})
        members = groups.get((sub.sid, codec))
        if members is not None:
            members.discard(sub)
            if not members:
                del groups[(sub.sid, codec)]
        if not any(c is codec for _, c in groups):
            track = self.tracks.get(sub.session)
            if track is not None:
                track.release(codec)
        if not groups:
            self._groups.pop(sub.session, None)

    # -- barge-in, sessions --------------------------------------------------------------

    def cut(self, session_id: str, now_ms: int) -> bool:
        """Drop the session's queued voice; listeners get VOICE_CUT at ``now_ms``.

        Returns whether anything was queued or listening (a cut of silence is harmless)."""
        self._faces.pop(session_id, None)
        track = self.tracks.get(session_id)
        if track is None:
            return False
        had_audio = not track.empty
        next_seq = track.cut()
        self._busy.discard(session_id)
        self.counters.cuts += 1
        for (sid, codec), members in self._groups.get(session_id, {}).items():
            message = encode_voice_cut(sid, now_ms, next_seq.get(codec, 0))
            for sub in list(members):
                with contextlib.suppress(OutboxOverflowError):  # a dead reader: it is closing
                    sub.outbox.put_control(message)
        return had_audio

    def drop_session(self, session_id: str) -> None:
        """The session is gone: its track, waiting face and listeners are forgotten."""
        self._faces.pop(session_id, None)
        self.tracks.pop(session_id, None)
        self.degraded.pop(session_id, None)
        self._busy.discard(session_id)
        for members in self._groups.pop(session_id, {}).values():
            for sub in members:
                self._codec.pop(sub, None)

    # -- the tick ------------------------------------------------------------------------

    # -- the face that goes with it -------------------------------------------------------

    def feed_face(self, session_id: str, frames: FaceFrames, now_ms: int) -> None:
        """Face frames for the session (ascending stream times), spliced as they come due
        (those due already at once, not at the next tick).

        Frames that start before what is already waiting take over from their first time
        (a next utterance's anticipation overlapping the last one's tail)."""
        if not len(frames):
            return
        waiting = self._faces.setdefault(session_id, deque())
        start = float(frames.t_ms[0])
        while waiting and float(waiting[-1].t_ms[-1]) >= start:
            last = waiting.pop()
            keep = int(np.searchsorted(last.t_ms, start, side="left"))
            if keep:
                waiting.append(FaceFrames(last.t_ms[:keep], last.channels[:keep]))
                break
        waiting.append(frames)
        self._splice_session(session_id, now_ms)

    def _splice_due(self, now_ms: int) -> None:
        for session_id in list(self._faces):
            self._splice_session(session_id, now_ms)

    def _splice_session(self, session_id: str, now_ms: int) -> None:
        horizon = now_ms + SPLICE_AHEAD_MS
        waiting = self._faces[session_id]
        while waiting:
            frames = waiting[0]
            n = int(np.searchsorted(frames.t_ms, horizon, side="right"))
            if n == 0:
                break
            try:
                self._splice(session_id, frames.t_ms[:n], frames.channels[:n])
            except SessionNotFoundError:
                waiting.clear()
                break
            if n == len(frames):
                waiting.popleft()
            else:
                waiting[0] = FaceFrames(frames.t_ms[n:], frames.channels[n:])
        if not waiting:
            del self._faces[session_id]

    def tick(self, now_ms: int) -> int:
        """Send every due packet of every speaking session, and splice the face frames that
        come due; returns the bytes put out."""
        if self._faces:
            self._splice_due(now_ms)
        if not self._busy:
            return 0
        sent = 0
        for session_id in list(self._busy):
            track = self.tracks[session_id]
            groups = self._groups.get(session_id)
            if groups:
                for codec in {c for _, c in groups}:
                    packets = track.due(codec, now_ms + LEAD_MS, now_ms)
                    if packets:
                        sent += self._fan_out(groups, codec, packets)
            track.trim(now_ms)
            if track.empty:
                self._busy.discard(session_id)
        self.counters.messages_bytes += sent
        return sent

    def _fan_out(
        self, groups: dict[GroupKey, set[Subscriber]], codec: AudioCodec, packets: list[Packet]
    ) -> int:
        self.counters.packets += len(packets)
        sent = 0
        for (sid, c), members in groups.items():
            if c is not codec or not members:
                continue
            for packet in packets:
                message = encode_audio(sid, packet.seq, packet.t_ms, packet.payload)
                for sub in members:
                    sub.outbox.put_audio(message)
                sent += len(message) * len(members)
        return sent

    def stats(self) -> dict[str, int]:
        """Counters and sizes for ``/stats``."""
        return {
            "speaking_sessions": len(self._busy),
            "faces_waiting": len(self._faces),
            "listeners": len(self._codec),
            "packets": self.counters.packets,
            "bytes_out": self.counters.messages_bytes,
            "cuts": self.counters.cuts,
        }
