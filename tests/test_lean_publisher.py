"""The load generator's Live Link publisher keeps its schedule and says when each flip left
(client/lean.py), and simulate times publish-to-receive from that (client/simulate.py)."""

from __future__ import annotations

import socket
import time

import numpy as np

from avatar_engine.client.lean import (
    FLIP_FRAMES,
    FLIP_S,
    FPS,
    HIGH,
    JAW,
    LOW,
    LiveLinkPublisher,
)
from avatar_engine.client.simulate import flip_latencies
from avatar_engine.formats.livelink import parse_packet


def _receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.settimeout(0.5)
    return sock


def test_each_flip_packet_leaves_on_schedule_and_its_send_time_is_kept() -> None:
    server = _receiver()
    subjects = ["a", "b", "c"]
    t0 = time.monotonic() + 0.05
    publisher = LiveLinkPublisher("127.0.0.1", server.getsockname()[1], subjects, t0)
    publisher.run(t0 + 2 * FLIP_S + 0.5 / FPS)  # frames 0..30: flips 0, 1 and 2
    publisher.close()
    received: list[tuple[float, str, float]] = []
    while len(received) < publisher.sent:
        data = server.recv(2048)
        frame = parse_packet(data)
        received.append((time.monotonic(), frame.subject, float(frame.values[JAW])))
    server.close()
    assert publisher.sent == 3 * (2 * FLIP_FRAMES + 1)
    jaws = [jaw for _, subject, jaw in received if subject == "b"]
    assert np.allclose(jaws[:FLIP_FRAMES], LOW) and np.allclose(jaws[FLIP_FRAMES:-1], HIGH)
    assert np.isclose(jaws[-1], LOW)  # flip 2 starts at frame 30
    for flip in (0, 1, 2):
        lags = [publisher.send_lag_ms(s, flip) for s in subjects]
        assert all(lag is not None for lag in lags)
        known = [lag for lag in lags if lag is not None]
        assert known == sorted(known)  # one process sends them one after another
        assert 0.0 <= known[0] < 1000 / FPS  # not before the flip's time, within its frame
    assert publisher.send_lag_ms("b", 3) is None  # not sent yet
    assert publisher.send_lag_ms("nobody", 0) is None


def test_publish_to_receive_is_timed_from_each_flip_packet_send() -> None:
    receipts = [("a", 4, 3.0), ("b", 4, 3.5), ("a", 5, 2.0)]
    lags = {("a", 4): 0.25, ("b", 4): 0.75}

    publish, schedule, unknown = flip_latencies(receipts, lambda s, k: lags.get((s, k)))
    assert unknown == 1  # ("a", 5): no send time known, so timed from the schedule
    assert schedule["p50"] == 3.0 and schedule["max"] == 3.5
    assert publish["p50"] == 2.75 and publish["max"] == 2.75  # 2.75, 2.75 and 2.0

    publish, schedule, unknown = flip_latencies(receipts, None)  # --publish ws
    assert publish == schedule and unknown == 3
