"""The Live Link receive path of this tree against an earlier revision's, side by side.

    .venv/bin/python benchmarks/receive_ab.py --baseline 17dcad3 [--bursts 200]

The baseline's ``src/avatar_engine/ingest/receivers.py`` is loaded from git beside this
tree's (it imports the rest of the package from this tree, so it works for revisions whose
receivers module still finds what it imports and hands the sink what this tree's runtime
takes: before 1e2d6db a receiver gave ``on_frames`` a ``SourceInfo`` per frame, not a
``SourceBatch``, and the runtime case stops on its ``sink_error`` drops; compare such
revisions with two installs and ``capture_burst.py`` instead). Three cases, both receivers
interleaved in the
same run so the machine's drift hits both:

- **warm**: us of CPU per datagram of ``receive_batch`` over 100 rows already read (100
  senders, a clock stepped a 60th of a second a burst), into a sink that keeps nothing; the
  least of 7 rounds;
- **single**: us per lone datagram (``datagram_received``: one phone, one packet a drain);
- **cold**: us of wall time per datagram of ``drain`` when 100 real sockets' packets arrive
  and the process then sleeps a 60th of a second (what the server does between ticks), into a
  sink that keeps nothing and into the server's runtime; the median.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from avatar_engine.client.lean import livelink_packets
from avatar_engine.ingest import CollectingSink, LiveLinkReceiver
from avatar_engine.ingest.receivers import with_port
from avatar_engine.server.config import ServerOptions
from avatar_engine.server.runtime import Runtime
from capture_burst import N, _phones

LOOPBACK = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent


def baseline_module(revision: str) -> ModuleType:
    """The revision's receivers module, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{revision}:src/avatar_engine/ingest/receivers.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "baseline_receivers.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_receivers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_receivers"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class SteppedClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def warm(classes: dict[str, Any], rounds: int = 7, bursts: int = 200) -> dict[str, float]:
    packets = [livelink_packets(f"sim-{i}")[0] for i in range(N)]
    senders: list[Any] = [(LOOPBACK, 40000 + i) for i in range(N)]
    clock = SteppedClock()
    receivers = {}
    for name, cls in classes.items():
        config = with_port(cls.default_config, LOOPBACK, 0)
        rx = receivers[name] = cls(CollectingSink(limit=0), None, config=config, clock=clock)
        for i, packet in enumerate(packets):
            rx._rows[i, : len(packet)] = np.frombuffer(packet, np.uint8)
            rx._sizes[i] = len(packet)
    best = dict.fromkeys(receivers, float("inf"))
    for _ in range(rounds):
        for name, rx in receivers.items():
            start = time.process_time()
            for _ in range(bursts):
                clock.t += 1 / 60
                rx.receive_batch(senders)
            best[name] = min(best[name], (time.process_time() - start) / bursts)
    for rx in receivers.values():
        if rx.totals.drops:  # a baseline whose sink contract differs (see the docstring)
            raise SystemExit(f"frames were dropped, the comparison is void: {rx.totals.drops}")
    return {name: round(1e6 * t / N, 2) for name, t in best.items()}


def single(classes: dict[str, Any]) -> dict[str, float]:
    packet = livelink_packets("one")[0]
    clock = SteppedClock()
    out = {}
    for name, cls in classes.items():
        config = with_port(cls.default_config, LOOPBACK, 0)
        rx = cls(CollectingSink(limit=0), None, config=config, clock=clock)

        def step(rx: Any = rx) -> None:
            clock.t += 1 / 60
            rx.datagram_received(packet, (LOOPBACK, 4000))

        out[name] = round(min(timeit.repeat(step, number=2000, repeat=5)) / 2000 * 1e6, 2)
    return out


async def cold(classes: dict[str, Any], bursts: int) -> dict[str, float]:
    packets = [livelink_packets(f"sim-{i}")[0] for i in range(N)]
    cases: dict[str, tuple[Any, Any, list[socket.socket]]] = {}
    for name, cls in classes.items():
        for sink_name in ("null", "runtime"):
            runtime = Runtime(ServerOptions(livelink_port=0, vmc_port=0))
            sink: Any = runtime if sink_name == "runtime" else CollectingSink(limit=0)
            router = runtime.ingest.router if sink_name == "runtime" else None
            config = with_port(cls.default_config, LOOPBACK, 0)
            rx = cls(sink, router, config=config)
            address = await rx.start()
            asyncio.get_running_loop().remove_reader(rx.sock.fileno())  # the benchmark drains
            cases[f"{name}_{sink_name}"] = (rx, address, _phones())
    for rx, address, phones in cases.values():  # sessions made, senders known
        for phone, packet in zip(phones, packets, strict=True):
            phone.sendto(packet, address)
        rx.drain()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(bursts):
        for name, (rx, address, phones) in cases.items():
            for phone, packet in zip(phones, packets, strict=True):
                phone.sendto(packet, address)
            time.sleep(1 / 60)
            start = time.perf_counter()
            read = rx.drain()
            times[name].append((time.perf_counter() - start) / max(1, read))
    for rx, _, phones in cases.values():
        if rx.totals.drops:  # a baseline whose sink contract differs (see the docstring)
            raise SystemExit(f"frames were dropped, the comparison is void: {rx.totals.drops}")
        rx.close()
        for phone in phones:
            phone.close()
    return {name: round(1e6 * float(np.median(t)), 2) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="a git revision to compare with")
    parser.add_argument("--bursts", type=int, default=60, help="cold bursts per receiver")
    args = parser.parse_args()
    classes = {"baseline": baseline_module(args.baseline).LiveLinkReceiver,
               "tree": LiveLinkReceiver}  # fmt: skip
    print("load average", [round(x, 2) for x in os.getloadavg()])
    print("warm_cpu_us_per_datagram_burst_of_100:", warm(classes))
    print("single_datagram_us:", single(classes))
    print("cold_wall_us_per_datagram_at_60fps:", asyncio.run(cold(classes, args.bursts)))
    print("load average", [round(x, 2) for x in os.getloadavg()])


if __name__ == "__main__":
    main()
