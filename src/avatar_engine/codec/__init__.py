"""The wire protocol v1 (docs/protocol.md): LOD, quantization, delta coding, msgpack framing.

Encoding is batched (:class:`BatchEncoder`: every stream of a tick in one call, state in
arrays); decoding is one message at a time (:class:`Decoder`). Both are sans-I/O.
"""

from avatar_engine.codec.decoder import Decoder, StreamState
from avatar_engine.codec.encoder import BatchEncoder, EncodedTick
from avatar_engine.codec.messages import (
    Capture,
    Control,
    ErrorMessage,
    Event,
    Frame,
    Hello,
    Ignored,
    Message,
    NeedKeyframe,
    Ping,
    Pong,
    PublishHello,
    Stale,
    StreamParams,
    UnknownStream,
    encode_capture,
    encode_control,
    encode_error,
    encode_event,
    encode_hello,
    encode_ping,
    encode_pong,
    encode_publish_hello,
    encode_subscribe,
)
from avatar_engine.codec.schema import LodTable, StreamSchema
from avatar_engine.codec.wire import (
    PROTOCOL_VERSION,
    ControlOp,
    DeltaMode,
    EventKind,
    MsgType,
    ProtocolError,
)

__all__ = [
    "PROTOCOL_VERSION",
    "BatchEncoder",
    "Capture",
    "Control",
    "ControlOp",
    "Decoder",
    "DeltaMode",
    "EncodedTick",
    "ErrorMessage",
    "Event",
    "EventKind",
    "Frame",
    "Hello",
    "Ignored",
    "LodTable",
    "Message",
    "MsgType",
    "NeedKeyframe",
    "Ping",
    "Pong",
    "ProtocolError",
    "PublishHello",
    "Stale",
    "StreamParams",
    "StreamSchema",
    "StreamState",
    "UnknownStream",
    "encode_capture",
    "encode_control",
    "encode_error",
    "encode_event",
    "encode_hello",
    "encode_ping",
    "encode_pong",
    "encode_publish_hello",
    "encode_subscribe",
]
