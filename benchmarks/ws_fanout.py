"""Fan-out of one frame to N WebSocket subscribers: websockets.broadcast() vs a writer per
subscriber, measured as server CPU time per delivered frame (clients in another process).

    python benchmarks/ws_fanout.py [--subscribers 200] [--frames 300]

Why it matters: the server sends the same 20-100 byte frame to every subscriber of a group
60 times a second; the per-subscriber cost decides how many viewers one core serves.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource

import websockets
from websockets.asyncio.server import broadcast, serve

FRAME = bytes(40)


def _clients(port: int, n: int, ready: mp.Event) -> None:  # type: ignore[type-arg]
    async def one(done: list[int]) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
            done[0] += 1
            while True:  # until the server goes quiet (frames a writer skipped never come)
                try:
                    await asyncio.wait_for(ws.recv(), 1.0)
                except (TimeoutError, websockets.ConnectionClosed):
                    return

    async def main() -> None:
        done = [0]
        tasks = [asyncio.create_task(one(done)) for _ in range(n)]
        while done[0] < n:
            await asyncio.sleep(0.01)
        ready.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())


async def run(mode: str, n: int, frames: int) -> float:
    conns: set[websockets.ServerConnection] = set()
    queues: dict[websockets.ServerConnection, asyncio.Queue[bytes]] = {}

    async def handler(ws: websockets.ServerConnection) -> None:
        conns.add(ws)
        if mode == "writer":
            q: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
            queues[ws] = q
            while frame := await q.get():  # b"" ends the writer
                await ws.send(frame)
        else:
            await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        ready = mp.get_context("spawn").Event()
        proc = mp.get_context("spawn").Process(target=_clients, args=(port, n, ready))
        proc.start()
        while not ready.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(frames):
            if mode == "broadcast":
                broadcast(conns, FRAME)
            else:
                for q in queues.values():
                    if q.full():
                        q.get_nowait()
                    q.put_nowait(FRAME)
            await asyncio.sleep(1 / 60)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        for q in queues.values():
            if q.full():
                q.get_nowait()
            q.put_nowait(b"")
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return cpu / (frames * n) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    for mode in ("broadcast", "writer"):
        us = asyncio.run(run(mode, args.subscribers, args.frames))
        share = us * args.subscribers * 60 / 1e4
        print(f"{mode:>10}: {us:.2f} us server CPU per delivered frame "
              f"({args.subscribers} subscribers at 60 fps = {share:.1f} % of a core)")  # fmt: skip


if __name__ == "__main__":
    main()
