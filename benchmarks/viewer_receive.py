"""The lean viewers' receive cost per frame, in process (client/ws_receive.py), beside its floor.

    .venv/bin/python benchmarks/viewer_receive.py [--viewers 500] [--rounds 200] [--json]

N loopback connections, each registered in one ``epoll`` set as a viewer process holds them.
Per round every server end is written one real-sized delta frame (~18 bytes: what a moving
face at LOD 0 sends), then the viewers' side reads until every frame of the round is counted;
only the reading is timed (``time.process_time``, so a loaded machine moves it little). Rows:

- **reference**: the Python receive pass (one ``epoll.poll``, then per ready viewer one
  ``recv`` and the header parse in Python), the lean viewers before the native pass;
- **native**: one ``_core.ViewerPass.poll`` per wake-up (the default now);
- **recv-floor**: ``epoll.poll`` and one bare ``sock.recv`` per ready socket in Python, no parse:
  what any Python receive loop pays before parsing anything.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import msgpack

from avatar_engine.client.lean import ReferenceReceivePass, ViewerTotals, _Viewer
from avatar_engine.client.ws_receive import NativeReceivePass, native_receive_available
from avatar_engine.server.fanout import frame_header

WINDOW = (0.0, 1e12, 0.0)


def _connections(n: int) -> tuple[list[socket.socket], list[socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    ours, peers = [], []
    for _ in range(n):
        s = socket.create_connection(listener.getsockname())
        s.setblocking(False)
        ours.append(s)
        peers.append(listener.accept()[0])
    listener.close()
    return ours, peers


def _frame(seq: int) -> bytes:
    message: bytes = msgpack.packb([2, 0, 0, seq & 0xFFFF, 1, 16, bytes(9)])
    return frame_header(len(message)) + message


def _measure(read_round: Callable[[], int], peers: list[socket.socket], rounds: range,
             ) -> tuple[float, int]:  # fmt: skip
    """Seconds of CPU spent reading and the frames read over ``rounds`` (their seq numbers)."""
    cpu = 0.0
    frames = 0
    for k in rounds:
        wire = _frame(k)
        for peer in peers:
            peer.send(wire)
        t = time.process_time()
        frames += read_round()
        cpu += time.process_time() - t
    return cpu, frames


def _pass_round(receive: ReferenceReceivePass | NativeReceivePass, n: int) -> Callable[[], int]:
    def read_round() -> int:
        target = receive.counters()["frames"] + n
        while receive.counters()["frames"] < target:
            receive.poll(1.0, WINDOW)
        return n

    return read_round


def _floor_round(ep: select.epoll, by_fd: dict[int, socket.socket], n: int) -> Callable[[], int]:
    def read_round() -> int:
        got = 0
        while got < n:
            for fd, _ in ep.poll(1.0):
                by_fd[fd].recv(1 << 16)
                got += 1  # one frame per socket per round
        return n

    return read_round


def run(kind: str, n: int, rounds: int) -> dict[str, Any]:
    """One row: the CPU per received frame of ``kind`` over ``n`` viewers."""
    ours, peers = _connections(n)
    ep = select.epoll()
    for s in ours:
        ep.register(s.fileno(), select.EPOLLIN)
    if kind == "recv-floor":
        read_round = _floor_round(ep, {s.fileno(): s for s in ours}, n)
    else:
        receive = NativeReceivePass(ep) if kind == "native" else ReferenceReceivePass(ep)
        for s in ours:
            viewer = _Viewer(s, b"", ViewerTotals(), probe=False, t0=0.0, stall=False, session="")
            viewer.last_seq, viewer.last_t = 0, 0
            receive.add(viewer)
        read_round = _pass_round(receive, n)
    _measure(read_round, peers, range(1, 6))  # warm-up
    cpu, frames = _measure(read_round, peers, range(6, 6 + rounds))
    row = {"case": kind, "viewers": n, "frames": frames,
           "cpu_us_per_frame": round(1e6 * cpu / frames, 2),
           "viewer_frames_per_core_s": int(frames / cpu)}  # fmt: skip
    if kind != "recv-floor":
        row["gaps"] = receive.counters()["gaps"]  # 0: every frame of every round counted
    ep.close()
    for s in ours + peers:
        s.close()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    kinds = ["recv-floor", "reference"] + (["native"] if native_receive_available() else [])
    rows = [run(k, args.viewers, args.rounds) for k in kinds]
    load = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps({"load_average": load, "rows": rows}))
    else:
        print(f"load average {load}")
        for row in rows:
            print(", ".join(f"{k} {v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
