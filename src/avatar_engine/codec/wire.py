"""Wire protocol v1.1: message type codes, limits and the error type every decoder raises.

The normative description is ``docs/protocol.md``; the names here follow its sections. Every
limit is a named constant so a reader of a decoder can see what input it refuses and why.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

PROTOCOL_VERSION: Final = 1
"""Major version carried by hello and publish-hello. A decoder refuses any other major."""
PROTOCOL_MINOR: Final = 1
"""Minor version a hello with a voice announces (key ``minor``): v1.1 added AUDIO (§3.8)."""


class MsgType(IntEnum):
    """Element 0 of every message (a msgpack positive fixint)."""

    HELLO = 0
    KEYFRAME = 1
    DELTA = 2
    EVENT = 3
    CONTROL = 4
    PING = 5
    PONG = 6
    ERROR = 7
    PUBLISH_HELLO = 8
    CAPTURE = 9
    AUDIO = 10
    """v1.1: one packet of the stream's voice (§3.8); a v1.0 decoder ignores it."""


class ControlOp(IntEnum):
    """Element 1 of a CONTROL message (client -> server)."""

    SUBSCRIBE = 0
    UNSUBSCRIBE = 1
    SET_LOD = 2
    REQUEST_KEYFRAME = 3
    ACK = 4
    SET_AUDIO = 5
    """v1.1: choose the voice of a subscription (§3.8)."""


class DeltaMode(IntEnum):
    """What a delta is computed against (chosen per subscription, announced in hello)."""

    CHAINED = 0
    """Against the previous frame: smallest, for reliable ordered transports (WebSocket)."""
    KEYFRAME = 1
    """Against the last keyframe: one lost message costs one frame (WebRTC unordered)."""


class EventKind(IntEnum):
    """Element 3 of an EVENT message."""

    STATE = 0
    SPEAKING = 1
    EMOTION = 2
    VOICE_CUT = 3
    """v1.1 barge-in: the voice stops at the event's ``t``; value = next audio ``seq``."""


class AudioCodec(IntEnum):
    """The voice of a subscription: the code SUBSCRIBE and SET_AUDIO send (0 is no voice).

    A hello names the codec by :attr:`wire_name` (key ``audio``) with its ``audio_rate``.
    """

    OFF = 0
    OPUS = 1
    PCM16 = 2

    @property
    def wire_name(self) -> str:
        """The hello's ``audio`` value (``"off"`` is never sent: no key means no voice)."""
        return _AUDIO_NAMES[self]

    @property
    def rate(self) -> int:
        """The sample rate this engine sends the codec at (the hello's ``audio_rate``)."""
        return _AUDIO_RATES[self]

    @classmethod
    def from_name(cls, name: str) -> AudioCodec:
        """``opus``, ``pcm16`` (or the query parameter's ``pcm``), ``off``; else ValueError."""
        for codec, names in _AUDIO_ALIASES.items():
            if name in names:
                return codec
        raise ValueError(f"audio must be one of opus, pcm, pcm16, off; got {name!r}")


_AUDIO_NAMES: Final = {AudioCodec.OFF: "off", AudioCodec.OPUS: "opus", AudioCodec.PCM16: "pcm16"}
_AUDIO_ALIASES: Final = {
    AudioCodec.OFF: ("off",),
    AudioCodec.OPUS: ("opus",),
    AudioCodec.PCM16: ("pcm16", "pcm"),
}
OPUS_RATE: Final = 48000
"""Opus is always sent at 48 kHz (the rate WebCodecs and libopus decode it at)."""
PCM16_RATE: Final = 16000
"""PCM16 is sent at 16 kHz: the lip-sync's own rate, 256 kbps, for clients without Opus."""
_AUDIO_RATES: Final = {AudioCodec.OFF: 0, AudioCodec.OPUS: OPUS_RATE, AudioCodec.PCM16: PCM16_RATE}
AUDIO_PACKET_MS: Final = 20
"""Every AUDIO message carries 20 ms (the last of an utterance may be shorter for PCM16)."""
MIN_PCM16_RATE: Final = 8000
MAX_PCM16_RATE: Final = 48000
"""A hello's ``audio_rate`` for PCM16 must lie in this range (Opus: exactly 48000)."""
MAX_AUDIO_AHEAD_MS: Final = 1000
"""A server sends a packet at most this far ahead of the frame with the same ``t``."""


def pcm16_max_bytes(rate: int) -> int:
    """The largest PCM16 payload at ``rate`` Hz: 20 ms of samples, 2 bytes each."""
    return 2 * (rate * AUDIO_PACKET_MS // 1000)


SESSION_STATES: Final[tuple[str, ...]] = (
    "idle",
    "connecting",
    "ready",
    "active",
    "thinking",
    "degraded",
    "error",
    "disconnected",
)
"""EVENT STATE values are indices into this tuple."""

LOD_LEVELS: Final = 4
"""Levels 0..3; level 0 is every morph and channel of the rig."""
DEFAULT_LOD_FPS: Final[tuple[int, ...]] = (60, 30, 20, 10)
DEFAULT_KEYFRAME_MS: Final = 500
DEFAULT_DEAD_BAND: Final = 1.0
"""Dead band in quantization steps: a change smaller than this is not sent (until the hold)."""
DEFAULT_HOLD_FRAMES: Final = 6
"""Frames a suppressed change waits before its exact code is sent anyway (settling)."""

SEQ_MODULUS: Final = 1 << 16
SEQ_HALF: Final = 1 << 15
"""Sequence numbers are u16 and wrap; ``a`` is newer than ``b`` when 0 < (a - b) mod 2^16 < 2^15."""

# Limits a decoder enforces (docs/protocol.md, "Limits"). Anything beyond is an error, not a
# resize: a hostile peer must not make a decoder allocate or loop in proportion to a claim.
MAX_MESSAGE_BYTES: Final = 65536
MAX_MORPHS: Final = 1024
MAX_CHANNELS: Final = 64
MAX_NAME_BYTES: Final = 256
MAX_STREAMS: Final = 256
MAX_SID: Final = (1 << 32) - 1
MAX_EVENT_TEXT: Final = 256


# Error categories shared by the Python, Cython, C++ and JS decoders (the vectors check them).
MALFORMED: Final = "malformed"
"""Not well-formed msgpack, or truncated, or trailing bytes after the message."""
TYPE: Final = "type"
"""A field has the wrong msgpack type, or a message has the wrong number of elements."""
LIMIT: Final = "limit"
"""A length or count beyond the documented limits (absurd lengths)."""
VERSION: Final = "version"
"""A hello for a protocol major version this decoder does not speak."""
BODY: Final = "body"
"""A frame body whose masks and values do not match the stream's LOD layout."""
VALUE: Final = "value"
"""A field is in range for its type but not allowed (an unknown LOD level, a bad bit depth)."""

ERROR_CODES: Final[tuple[str, ...]] = (MALFORMED, TYPE, LIMIT, VERSION, BODY, VALUE)


class ProtocolError(ValueError):
    """A message a v1 decoder refuses. ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def seq_newer(a: int, b: int) -> bool:
    """True when u16 sequence number ``a`` comes after ``b`` (RFC 1982 serial arithmetic)."""
    d = (a - b) % SEQ_MODULUS
    return 0 < d < SEQ_HALF
