"""Our own publish direction (docs/protocol.md: PUBLISH_HELLO and CAPTURE), for capture apps.

A publisher either sends CAPTURE messages *by name* (a msgpack map ``name -> value``, no setup)
or sends one PUBLISH_HELLO listing its names and then *positional* CAPTUREs (a float32 array in
that order). The codec's :class:`~avatar_engine.codec.Decoder` parses and checks the messages;
this module binds the names to the engine's ARKit row once per hello, validates values and
hands out engine-ready arrays. The same :class:`PublishDecoder` serves msgpack-over-UDP (one
message per datagram) and the WebSocket publish endpoint (one message per binary frame).

Names: any ARKit spelling and the nine Live Link rotation names (``HeadYaw`` ...); other names
are skipped and counted (``unknown_name``). Weights are clamped to 0..1 and rotations to
+-:data:`~avatar_engine.formats.rotation.MAX_ROTATION_UNITS`; a NaN or infinity drops the frame.
Names missing from a by-name CAPTURE keep the publisher's previous values (spec 3.7).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import numpy as np

from avatar_engine.codec import Capture, Decoder, ProtocolError, PublishHello
from avatar_engine.codec.messages import Ping, Pong
from avatar_engine.codec.wire import seq_newer
from avatar_engine.formats.rotation import MAX_ROTATION_UNITS
from avatar_engine.rigs.arkit import (
    ARKIT_COUNT,
    ARKIT_NAMES,
    ROTATION_COUNT,
    ROTATION_NAMES,
    NameBinding,
    UnknownNameError,
    normalize_arkit_name,
)
from avatar_engine.types import F32

MAX_PUBLISHERS: Final = 16
"""Publisher ids remembered per connection or UDP sender (the codec bounds hellos alike)."""
_A = {n: i for i, n in enumerate(ARKIT_NAMES)}
_R = {n: i for i, n in enumerate(ROTATION_NAMES)}

_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)
"""Named values beyond this would become infinity in the float32 frame (a fuzzer found it)."""


@dataclass(slots=True)
class PublishFrame:
    """One validated capture from a publisher (WebSocket or UDP), in engine channels, ready for the
    capture sink."""

    pid: int
    seq: int
    t: float
    """The publisher's timestamp in seconds (``t_ms / 1000``)."""
    arkit: F32
    """The publisher's current values (decoder state: valid until the next ``feed``)."""
    rotations: F32
    unknown: int
    clamped: int


class PublishDropError(ValueError):
    """A message the publish path refuses; ``reason`` is the drop counter's name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _slot(name: str) -> tuple[bool, int] | None:
    """(is_rotation, index) for a name in any spelling, None when unknown."""
    try:
        canonical = normalize_arkit_name(name)
    except UnknownNameError:
        return None
    if canonical in _R:
        return True, _R[canonical]
    return False, _A[canonical]


class _PidState:
    """What one publisher id holds: its last values (by-name captures update them) and seq."""

    __slots__ = ("arkit", "last_seq", "rotations", "stale_run")

    def __init__(self) -> None:
        self.arkit = np.zeros(ARKIT_COUNT, dtype=np.float32)
        self.rotations = np.zeros(ROTATION_COUNT, dtype=np.float32)
        self.last_seq: int | None = None
        self.stale_run = 0


class PublishDecoder:
    """One publisher connection's (or one UDP sender's) decoding state.

    Per publisher id (docs/protocol.md 3.7): a by-name CAPTURE updates only the names it
    carries (the others keep their previous values); a CAPTURE whose ``seq`` is not newer
    than the last applied one is dropped as ``stale`` (UDP reorders and duplicates). A new
    PUBLISH_HELLO resets the sequence, and so does a run of ``RESYNC_AFTER`` stale frames in a
    row (a by-name publisher that restarted at seq 0 without a hello).
    """

    __slots__ = ("_bindings", "_decoder", "_names", "_pids")

    _NAME_CACHE: Final = 1024
    RESYNC_AFTER: Final = 30

    def __init__(self) -> None:
        self._decoder = Decoder(max_streams=MAX_PUBLISHERS)
        self._bindings: dict[int, tuple[NameBinding, int]] = {}
        self._names: dict[str, tuple[bool, int] | None] = {}
        self._pids: OrderedDict[int, _PidState] = OrderedDict()

    def _pid(self, pid: int) -> _PidState:
        state = self._pids.get(pid)
        if state is None:
            state = self._pids[pid] = _PidState()
            while len(self._pids) > MAX_PUBLISHERS:  # by-name publishers need no hello: bound
                self._pids.popitem(last=False)
        else:
            self._pids.move_to_end(pid)
        return state

    def feed(self, data: bytes) -> PublishFrame | PublishHello | Ping | None:
        """Decode one message; a frame, the hello that was registered, a ping (the caller may
        answer it), or None for messages a publisher may send that carry nothing to ingest.

        Raises :class:`PublishDropError` with reasons ``protocol_<code>`` (the codec's error
        category), ``no_hello``, ``stale``, ``unexpected_message``, ``non_finite``.
        """
        try:
            msg = self._decoder.feed(data)
        except ProtocolError as exc:
            if "without a publish hello" in exc.detail:
                raise PublishDropError("no_hello", exc.detail) from None
            raise PublishDropError(f"protocol_{exc.code}", exc.detail) from None
        if isinstance(msg, Capture):
            return self._capture(msg)
        if isinstance(msg, PublishHello):
            binding = NameBinding([*msg.morphs, *msg.channels], on_unknown="skip")
            self._bindings[msg.pid] = (binding, len(binding.skipped))
            self._pid(msg.pid).last_seq = None
            return msg
        if isinstance(msg, Ping):
            return msg
        if isinstance(msg, Pong):
            return None
        raise PublishDropError("unexpected_message", type(msg).__name__)

    def _lookup(self, name: str) -> tuple[bool, int] | None:
        try:
            return self._names[name]
        except KeyError:
            pass
        if len(self._names) >= self._NAME_CACHE:
            self._names.clear()
        found = self._names[name] = _slot(name)
        return found

    def _capture(self, msg: Capture) -> PublishFrame:
        state = self._pid(msg.pid)
        if state.last_seq is not None and not seq_newer(msg.seq, state.last_seq):
            state.stale_run += 1
            if state.stale_run < self.RESYNC_AFTER:
                raise PublishDropError("stale", f"seq {msg.seq} after {state.last_seq}")
        arkit, rotations = state.arkit, state.rotations
        unknown = 0
        if msg.values is not None:
            entry = self._bindings.get(msg.pid)
            if entry is None:  # the codec kept a hello we do not have: treat as no hello
                raise PublishDropError("no_hello", f"pid {msg.pid}")
            binding, unknown = entry
            values = msg.values
            if not np.isfinite(values).all():
                raise PublishDropError("non_finite", "NaN or infinity among the values")
            arkit[binding.arkit_targets] = values[binding.arkit_columns]
            rotations[binding.rotation_targets] = values[binding.rotation_columns]
        else:
            updates: list[tuple[tuple[bool, int], float]] = []
            for name, value in msg.named.items():
                slot = self._lookup(name)
                if slot is None:
                    unknown += 1
                    continue
                if not (np.isfinite(value) and abs(value) <= _FLOAT32_MAX):
                    raise PublishDropError("non_finite", f"{name} is not a finite float32")
                updates.append((slot, value))
            for (is_rotation, index), value in updates:  # all-or-nothing: validated first
                if is_rotation:
                    rotations[index] = value
                else:
                    arkit[index] = value
        state.last_seq = msg.seq
        state.stale_run = 0
        clamped = int(np.count_nonzero((arkit < 0) | (arkit > 1)))
        clamped += int(np.count_nonzero(np.abs(rotations) > MAX_ROTATION_UNITS))
        if clamped:
            np.clip(arkit, 0.0, 1.0, out=arkit)
            np.clip(rotations, -MAX_ROTATION_UNITS, MAX_ROTATION_UNITS, out=rotations)
        return PublishFrame(msg.pid, msg.seq, msg.t_ms / 1000.0, arkit, rotations, unknown, clamped)
