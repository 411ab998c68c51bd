"""Lean WebRTC viewers for the load generator: many real aiortc peers per process whose frames
skip aiortc's receive path, so a WebRTC load test measures the server, not the viewers.

Each viewer is a real peer connection opened as a browser (or
:func:`~avatar_engine.client.subscriber.subscribe_rtc`) opens it: ICE, the DTLS handshake, the
SCTP association, the unreliable ``frames`` and reliable ``control`` channels, ``POST
/rtc/offer``. Once both channels are open a
:class:`~avatar_engine.transport.rtc_datapath.LeanReceiver` takes the peer's datagrams: a frame
costs one DTLS decryption, the SCTP chunk header and the few msgpack fields
:class:`~avatar_engine.client.lean.MessageCounter` reads, with a SACK every second packet as
browsers send; hello, events and audio on ``control`` still come through aiortc's channel
events. One asyncio loop per process; :func:`run_rtc_viewers` is the body of one and reports
its own CPU over the measured window, as :func:`~avatar_engine.client.lean.run_viewers` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdatachannel import RTCDataChannel

from avatar_engine.client.lean import MessageCounter, ViewerTotals
from avatar_engine.transport.rtc_datapath import LeanReceiver, internals_ok

CONNECT_AT_ONCE: Final = 10
"""Peers of one process negotiating at the same time (each handshake costs CPU on both sides)."""
CONNECT_S: Final = 30.0
"""How long one peer may take from its offer to both channels open."""
SACK_TIMER_S: Final = 0.1
"""A packet left unacknowledged (an odd one) is acknowledged within this (RFC 9260: 200 ms)."""


class _Window:
    """The measured window every viewer of a process counts in: (start, end, server_t0)."""

    value: tuple[float, float, float] = (math.inf, math.inf, 0.0)


class _RtcViewer(MessageCounter):
    """One peer connection: its channels, and what it counts."""

    __slots__ = ("control", "frames", "pc", "receiver", "window")

    def __init__(self, totals: ViewerTotals, window: _Window, *, probe: bool, t0: float,
                 session: str) -> None:  # fmt: skip
        super().__init__(totals, probe=probe, t0=t0, session=session)
        self.window = window
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames = self.pc.createDataChannel("frames", ordered=False, maxRetransmits=0)
        self.control: RTCDataChannel = self.pc.createDataChannel("control")
        self.frames.on("message", self._on_channel_message)  # frames aiortc delivered
        self.control.on("message", self._on_channel_message)
        self.receiver: LeanReceiver | None = None

    def request_keyframe(self, control: bytes) -> None:
        """On the reliable control channel."""
        if self.control.readyState == "open":
            self.control.send(control)

    def _on_channel_message(self, data: object) -> None:
        if isinstance(data, bytes) and data:
            self.message(data, 0, len(data), time.monotonic(), self.window.value)

    def on_frame(self, _stream: int, data: bytes) -> None:
        """A message the lean receiver took (the frames channel's, unordered)."""
        self.message(data, 0, len(data), time.monotonic(), self.window.value)

    async def connect(self, client: httpx.AsyncClient, session: str, lod: int) -> None:
        """Offer, answer, wait for both channels, then take the datagrams."""
        pc = self.pc
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"sdp": pc.localDescription.sdp, "type": "offer", "session": session, "lod": lod}
        response = await client.post("/rtc/offer", json=offer)
        response.raise_for_status()
        await pc.setRemoteDescription(RTCSessionDescription(**response.json()))
        while self.frames.readyState != "open" or self.control.readyState != "open":
            await asyncio.sleep(0.02)
        assert pc.sctp is not None, "the channels are open"
        if internals_ok():  # else frames keep coming through aiortc's channel events
            self.receiver = LeanReceiver(pc.sctp, self.on_frame)


async def _open(spec: dict[str, Any], totals: ViewerTotals,
                window: _Window) -> list[_RtcViewer]:  # fmt: skip
    """Connect every viewer of ``spec``, :data:`CONNECT_AT_ONCE` at a time; the open ones."""
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)
    viewers: list[_RtcViewer] = []

    async def one(path: str, probe: bool, session: str, client: httpx.AsyncClient) -> None:
        lod = int(parse_qs(urlsplit(path).query).get("lod", ["0"])[0])
        viewer = _RtcViewer(totals, window, probe=probe, t0=float(spec["t0"]), session=session)
        async with gate:
            try:
                await asyncio.wait_for(viewer.connect(client, session, lod), CONNECT_S)
            except Exception:
                totals.failed += 1
                await viewer.pc.close()
                return
        totals.connected += 1
        viewers.append(viewer)

        @viewer.pc.on("connectionstatechange")
        def on_state() -> None:
            if viewer.pc.connectionState in ("failed", "closed"):
                totals.closed += 1

    async with httpx.AsyncClient(base_url=spec["base"], timeout=CONNECT_S) as client:
        await asyncio.gather(*(
            one(path, probe, session, client)
            for (path, probe, _stall), session in zip(spec["paths"], spec["sessions"], strict=True)
        ))  # fmt: skip
    return viewers


async def _acknowledge_until(deadline: float, receivers: list[LeanReceiver]) -> None:
    """Until ``deadline``, acknowledge every receiver's odd last packet each
    :data:`SACK_TIMER_S` (the even ones are acknowledged as they arrive)."""
    while (now := time.monotonic()) < deadline:
        for receiver in receivers:
            receiver.flush_sack()
        await asyncio.sleep(min(SACK_TIMER_S, deadline - now))


async def _run(spec: dict[str, Any], on_ready: Callable[[], None] | None,
               window_of: Callable[[], tuple[float, float] | None]) -> dict[str, Any]:  # fmt: skip
    totals = ViewerTotals()
    window = _Window()
    viewers = await _open(spec, totals, window)
    if on_ready is not None:
        on_ready()
    server_t0 = float(spec["server_t0"])
    give_up = time.monotonic() + float(spec.get("limit_s", 120.0))
    while (known := window_of()) is None and time.monotonic() < give_up:
        await asyncio.sleep(0.02)
    start, end = known or (give_up, give_up)
    window.value = (start, end, server_t0)
    receivers = [v.receiver for v in viewers if v.receiver is not None]
    await _acknowledge_until(start, receivers)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await _acknowledge_until(end, receivers)
    cpu1, wall1 = time.process_time(), time.monotonic()
    # Still connected while the coordinator reads /stats (its counters are per connected peer).
    await _acknowledge_until(end + float(spec.get("linger_s", 0.0)), receivers)
    for viewer in viewers:
        with contextlib.suppress(Exception):
            await viewer.pc.close()
    return totals.result(cpu1 - cpu0, wall1 - wall0)


def run_rtc_viewers(
    spec: dict[str, Any],
    on_ready: Callable[[], None] | None = None,
    window_of: Callable[[], tuple[float, float] | None] | None = None,
) -> dict[str, Any]:
    """The body of one WebRTC viewer process. ``spec``: base (the server's http URL), paths
    (``[path, probe, stall]``, the path's ``lod`` query is used; a WebRTC viewer cannot stall),
    sessions (one per path), t0, server_t0, limit_s, linger_s, and start/end unless
    ``window_of`` gives the window once every process called ``on_ready`` (after connecting).

    Returns what :meth:`~avatar_engine.client.lean.ViewerTotals.result` returns.
    """
    if window_of is None:
        fixed = (float(spec["start"]), float(spec["end"]))
        window_of = lambda: fixed  # noqa: E731 - the fixed window, asked like a coordinator's
    return asyncio.run(_run(spec, on_ready, window_of))
