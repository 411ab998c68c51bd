"""Fuzz every UDP and WebSocket parser the server exposes, through the code paths the server
runs, and account for every input (docs/reliability.md).

Parsers, each driven in process without sockets (the receive paths are sans-I/O below the
socket callback, so millions of inputs take minutes, not hours):

* ``livelink``, ``vmc``, ``ifacialmocap``, ``publish-udp``: the receivers'
  ``datagram_received`` (what asyncio calls per datagram), senders spread over 64 addresses;
* ``publish-ws``: :func:`serve_publish` (the ``/sessions/{id}/publish`` loop) over an
  in-memory connection, reopened whenever it closes;
* ``stream-control``: what ``/sessions/{id}/stream`` does with a client message (size limit,
  :class:`Decoder`, :meth:`Runtime.on_client_message`) on a real runtime and subscriber;
* ``voice-bridge``: the message parsing of ``/sessions/{id}/voice`` (size limit, binary PCM16,
  JSON events, base64 audio deltas), up to the audio handed to lip-sync (not run here).

Inputs are mutations of valid messages (bit flips, truncation, splices, inserted and
duplicated slices, length fields set to extremes), random bytes, and some valid messages.
For each parser the script prints: inputs, crashes (an exception escaping the path, an
``internal_error`` drop, or a delivered frame out of range: not finite, weights outside
0..1, rotations beyond the clamp), frames delivered and drops per reason. The UDP paths
also classify every input exactly once (``outcome``): it delivered a frame, or was dropped
and counted, or was a valid message that carries no frame (a hello, a ping, VMC messages
waiting for their ``Apply``).

    python benchmarks/fuzz_parsers.py --inputs 1000000            # every parser
    python benchmarks/fuzz_parsers.py --inputs 20000 --parsers livelink,vmc
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import random
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from avatar_engine.codec import ProtocolError, encode_capture, encode_ping, encode_publish_hello
from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import encode_control, encode_subscribe
from avatar_engine.codec.wire import AudioCodec, ControlOp, DeltaMode
from avatar_engine.formats import ifacialmocap as ifm
from avatar_engine.formats.livelink import build_packet
from avatar_engine.formats.rotation import MAX_ROTATION_UNITS
from avatar_engine.formats.vmc import build_vmc_frame
from avatar_engine.ingest.receivers import (
    DatagramReceiver,
    IFacialMocapReceiver,
    LiveLinkReceiver,
    PublishUdpReceiver,
    ReceiverConfig,
    VmcReceiver,
)
from avatar_engine.ingest.routing import Router, RoutingConfig
from avatar_engine.ingest.sink import SourceInfo
from avatar_engine.ingest.websocket import PublishLimits, serve_publish
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES
from avatar_engine.server.auth import ANONYMOUS
from avatar_engine.server.config import ServerOptions
from avatar_engine.server.limits import MAX_CONTROL_BYTES
from avatar_engine.server.runtime import Runtime
from avatar_engine.server.voice_bridge import (
    AUDIO_DELTAS,
    MAX_BRIDGE_MESSAGE,
    BridgeError,
    _delta_samples,
    _parse_json,
    pcm16,
)
from avatar_engine.transport.outbox import OutboxOverflowError

F32 = np.ndarray
_ROUNDING = 1e-6


class CheckingSink:
    """Counts delivered frames and checks each one is within the documented ranges."""

    def __init__(self) -> None:
        self.frames = 0
        self.invalid = 0

    def on_frame(
        self, session_id: str, arkit: F32, rotations: F32, t: float, source: SourceInfo
    ) -> None:
        self.frames += 1
        ok = (
            np.isfinite(arkit).all()
            and np.isfinite(rotations).all()
            and arkit.min(initial=0) >= -_ROUNDING  # float32 denormals of -0 pass
            and arkit.max(initial=0) <= 1 + _ROUNDING
            and np.abs(rotations).max(initial=0) <= MAX_ROTATION_UNITS + _ROUNDING
        )
        self.invalid += not ok


# -- mutations ----------------------------------------------------------------------------

_EXTREMES = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def mutations(seeds: list[bytes], rng: random.Random, max_len: int) -> Iterator[bytes]:
    """An endless stream of inputs derived from ``seeds``."""
    while True:
        seed = rng.choice(seeds)
        kind = rng.randrange(10)
        if kind == 0:  # random bytes
            yield rng.randbytes(rng.randrange(max_len + 64))
        elif kind == 1:  # unchanged: the path must still accept valid input
            yield seed
        elif kind == 2:  # truncated
            yield seed[: rng.randrange(len(seed) + 1)]
        elif kind in (3, 4):  # bit flips
            data = bytearray(seed)
            for _ in range(rng.randrange(1, 9)):
                if data:
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            yield bytes(data)
        elif kind == 5:  # a length or count field set to an extreme
            data = bytearray(seed)
            if len(data) >= 4:
                at = rng.randrange(len(data) - 3)
                value = rng.choice(_EXTREMES)
                data[at : at + 4] = struct.pack(rng.choice((">I", "<I")), value)
            yield bytes(data)
        elif kind == 6:  # a slice duplicated or inserted
            a = rng.randrange(len(seed) + 1)
            b = rng.randrange(a, min(len(seed), a + 64) + 1)
            yield seed[:b] + seed[a:b] * rng.randrange(1, 4) + seed[b:]
        elif kind == 7:  # two seeds spliced
            other = rng.choice(seeds)
            yield seed[: rng.randrange(len(seed) + 1)] + other[rng.randrange(len(other) + 1) :]
        elif kind == 8:  # a slice deleted
            a = rng.randrange(len(seed) + 1)
            yield seed[:a] + seed[min(len(seed), a + rng.randrange(1, 16)) :]
        else:  # random bytes appended
            yield seed + rng.randbytes(rng.randrange(1, 64))


def _values(rng: np.random.Generator) -> F32:
    v = rng.random(len(ARKIT_NAMES) + len(ROTATION_NAMES)).astype(np.float32)
    v[len(ARKIT_NAMES) :] = (v[len(ARKIT_NAMES) :] - 0.5) * 2
    return v


def _seeds(kind: str) -> list[bytes]:
    rng = np.random.default_rng(7)
    frames = [_values(rng) for _ in range(8)]
    if kind == "livelink":
        return [build_packet("dev-uuid", f"subject{i}", v, frame_number=i)
                for i, v in enumerate(frames)]  # fmt: skip
    if kind == "vmc":
        out: list[bytes] = []
        for i, v in enumerate(frames):
            out += build_vmc_frame(v[:52], v[52:], bundle=i % 2 == 0, time=float(i))
        return out
    if kind == "ifacialmocap":
        return [ifm.build_frame(v[:52], v[52:], version=1 + i % 2) for i, v in enumerate(frames)]
    hello = encode_publish_hello(1, ARKIT_NAMES, ROTATION_NAMES, 60)
    by_name = {name: 0.5 for name in ARKIT_NAMES[:10]}
    return [hello, encode_ping(3, 5), encode_capture(1, 0, 0, by_name),
            *(encode_capture(1, i, i * 16, v) for i, v in enumerate(frames))]  # fmt: skip


# -- runners ------------------------------------------------------------------------------

_RECEIVERS: dict[str, type[DatagramReceiver]] = {
    "livelink": LiveLinkReceiver,
    "vmc": VmcReceiver,
    "ifacialmocap": IFacialMocapReceiver,
    "publish-udp": PublishUdpReceiver,
}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1e-3
        return self.t


def fuzz_udp(kind: str, n: int, seed: int) -> dict[str, Any]:
    sink = CheckingSink()
    config = ReceiverConfig(max_datagram=_RECEIVERS[kind].default_config.max_datagram,
                            max_packet_rate_hz=1e9, packet_burst=1e9,
                            max_frame_rate_hz=1e9, frame_burst=1e9)  # fmt: skip
    router = Router(RoutingConfig(max_auto_sessions=1 << 30))
    rx = _RECEIVERS[kind](sink, router, config=config, clock=Clock())
    rng = random.Random(seed)
    crashes = 0
    outcome: Counter[str] = Counter()  # each input exactly once: frame, dropped or accepted
    inputs = mutations(_seeds(kind), rng, config.max_datagram)
    for i in range(n):
        data = next(inputs)
        frames, drops = sink.frames, sum(rx.totals.drops.values())
        try:
            rx.datagram_received(data, (f"10.0.0.{i % 64}", 40000 + i % 7))
        except Exception:  # datagram_received promises never to raise
            crashes += 1
        if sink.frames > frames:
            outcome["frame"] += 1
        elif sum(rx.totals.drops.values()) > drops:
            outcome["dropped"] += 1
        else:  # a hello, a ping, VMC messages waiting for their Apply
            outcome["accepted_no_frame"] += 1
    drops = dict(rx.totals.drops)
    crashes += drops.get("internal_error", 0) + sink.invalid
    return {"inputs": n, "packets_counted": rx.totals.packets, "outcome": dict(outcome),
            "frames": sink.frames, "drops": drops, "crashes": crashes}  # fmt: skip


class MemoryConnection:
    """A publish connection that replays inputs and closes when told to."""

    def __init__(self, source: Iterator[bytes], budget: list[int]) -> None:
        self.source = source
        self.budget = budget
        self.closed_with: int | None = None
        self.sent = 0

    async def recv(self) -> bytes:
        from websockets.exceptions import ConnectionClosedOK

        if self.budget[0] <= 0:
            raise ConnectionClosedOK(None, None)
        self.budget[0] -= 1
        return next(self.source)

    async def send(self, message: bytes) -> None:
        self.sent += 1

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = code


async def _fuzz_publish_ws(n: int, seed: int) -> dict[str, Any]:
    sink = CheckingSink()
    rng = random.Random(seed)
    source = mutations(_seeds("publish-ws"), rng, 2048)
    budget = [n]
    drops: Counter[str] = Counter()
    closes: Counter[int] = Counter()
    crashes = 0
    clock = Clock()
    limits = PublishLimits(max_frame_rate_hz=1e9, frame_burst=1e9)
    while budget[0] > 0:
        connection = MemoryConnection(source, budget)
        try:
            outcome = await serve_publish(connection, "fuzz", sink, limits=limits, clock=clock)
        except Exception:
            crashes += 1
            continue
        drops.update(outcome.stats.drops)
        if connection.closed_with is not None:
            closes[connection.closed_with] += 1
    return {"inputs": n, "frames": sink.frames, "drops": dict(drops),
            "connections_closed": dict(closes), "crashes": crashes + sink.invalid}  # fmt: skip


async def _fuzz_stream_control(n: int, seed: int) -> dict[str, Any]:
    runtime = Runtime(ServerOptions(livelink_port=0, vmc_port=0))
    runtime.create_session(ANONYMOUS, session_id="fuzz")

    def subscribe() -> Any:
        return runtime.subscribe(ANONYMOUS, "fuzz", lod=0, mode=DeltaMode.CHAINED, bits=8,
                                 transport="websocket")  # fmt: skip

    seeds = [
        encode_ping(1, 2),
        encode_control(ControlOp.SET_LOD, 1, 2),
        encode_control(ControlOp.REQUEST_KEYFRAME, 1, 0),
        encode_control(ControlOp.ACK, 1, 0, 5),
        encode_control(ControlOp.SET_AUDIO, 1, audio=AudioCodec.PCM16),
        encode_control(ControlOp.UNSUBSCRIBE, 1),
        encode_subscribe("fuzz", 1, DeltaMode.KEYFRAME, 16, AudioCodec.OPUS),
    ]
    rng = random.Random(seed)
    source = mutations(seeds, rng, MAX_CONTROL_BYTES)
    outcomes: Counter[str] = Counter()
    crashes = 0
    sub, decoder = subscribe(), Decoder()
    for _ in range(n):
        data = next(source)
        outcome = "applied"
        try:
            if len(data) > MAX_CONTROL_BYTES:
                outcome = "close_1009_too_big"
            else:
                try:
                    message = decoder.feed(data)
                except ProtocolError:
                    outcome = "close_1007_protocol_error"
                else:
                    try:
                        if not runtime.on_client_message(sub, message):
                            outcome = "close_1000_unsubscribed"
                    except OutboxOverflowError:
                        outcome = "close_1008_not_reading"
                    except ValueError:
                        outcome = "close_4400_bad_request"
        except Exception:
            crashes += 1
            outcome = "crash"
        outcomes[outcome] += 1
        if outcome != "applied":  # the connection closes: a new client subscribes
            runtime.unsubscribe(sub)
            sub, decoder = subscribe(), Decoder()
        elif sub.outbox._control or sub.outbox._frame is not None:  # a client that reads
            await sub.outbox.next_messages()
    runtime.unsubscribe(sub)
    return {"inputs": n, "outcomes": dict(outcomes), "crashes": crashes}


def fuzz_voice_bridge(n: int, seed: int) -> dict[str, Any]:
    pcm = np.arange(480, dtype="<i2").tobytes()
    delta = base64.b64encode(pcm).decode()
    seeds = [pcm, *(json.dumps(m).encode() for m in (
        {"type": "response.output_audio.delta", "delta": delta},
        {"type": "response.audio.delta", "delta": delta, "rate": 24000},
        {"type": "response.audio.done"}, {"type": "response.cancel"},
        {"type": "session.updated", "session": {"id": "x"}},
    ))]  # fmt: skip
    rng = random.Random(seed)
    source = mutations(seeds, rng, 4096)
    outcomes: Counter[str] = Counter()
    for i in range(n):
        data = next(source)
        try:
            if len(data) > MAX_BRIDGE_MESSAGE:
                outcomes["close_too_big"] += 1
                continue
            if i % 2:  # binary frame: PCM16
                pcm16(data)
                outcomes["audio"] += 1
                continue
            kind, parsed = _parse_json(data.decode("utf-8", "replace"))  # a text frame
            if kind in AUDIO_DELTAS:
                _delta_samples(parsed, 24000)
                outcomes["audio"] += 1
            else:
                outcomes["event"] += 1
        except BridgeError as exc:
            outcomes[f"close_{exc.code}"] += 1
        except Exception:
            outcomes["crash"] += 1
    return {"inputs": n, "outcomes": dict(outcomes), "crashes": outcomes["crash"]}


RUNNERS: dict[str, Callable[[int, int], dict[str, Any]]] = {
    **{kind: (lambda n, s, k=kind: fuzz_udp(k, n, s)) for kind in _RECEIVERS},  # type: ignore[misc]
    "publish-ws": lambda n, s: asyncio.run(_fuzz_publish_ws(n, s)),
    "stream-control": lambda n, s: asyncio.run(_fuzz_stream_control(n, s)),
    "voice-bridge": fuzz_voice_bridge,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per parser")
    parser.add_argument("--parsers", default=",".join(RUNNERS), help="comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # drops are counted; a million log lines help nobody
    failed = False
    for name in args.parsers.split(","):
        started = time.process_time()
        result = RUNNERS[name](args.inputs, args.seed)
        cpu = time.process_time() - started
        failed |= result["crashes"] > 0
        print(f"{name}: {result}  ({cpu:.0f} s CPU, {cpu / args.inputs * 1e6:.1f} us/input)",
              flush=True)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
