"""Admission over the senders' columns (ingest/admission.py, ingest/peers.py): the native
kernels match the reference loops, the loops match TokenBucket and SourceStats one datagram at
a time, a batch counts as its datagrams would one by one, and the table stays bounded."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from avatar_engine.formats.livelink import build_packet
from avatar_engine.ingest import CollectingSink, LiveLinkReceiver, ReceiverConfig
from avatar_engine.ingest.admission import (
    ADMITTED,
    NOT_HEARD,
    RATE_LIMITED,
    REFERENCE,
    TOO_LARGE,
    admission_backend,
)
from avatar_engine.ingest.limits import TokenBucket
from avatar_engine.ingest.peers import PeerTable
from avatar_engine.ingest.stats import RATE_WINDOW, SourceStats
from avatar_engine.kernels.backends import native_module

HAS_NATIVE = hasattr(native_module(), "admit_datagrams")
BACKENDS = ["numpy", pytest.param("native", marks=pytest.mark.skipif(
    not HAS_NATIVE, reason="native module not built"))]  # fmt: skip

PACKETS = (240.0, 60.0)
FRAMES = (120.0, 30.0)


def table(backend: str, max_peers: int = 16, batch: int = 64) -> PeerTable:
    return PeerTable(max_peers, batch, PACKETS, FRAMES, lambda: None, backend=backend)


def workload(seed: int) -> list[tuple[float, list[int], list[int], list[int]]]:
    """Batches of (now, senders, sizes, heard): bursts with repeated senders (floods), gaps that
    refill the buckets, oversize datagrams and senders not heard."""
    rng = np.random.default_rng(seed)
    now, out = 10.0, []
    for _ in range(60):
        now += float(rng.choice([0.0, 0.001, 1 / 60, 0.4, 1.3]))
        n = int(rng.integers(1, 64))
        senders = rng.choice(6, n, p=[0.6, 0.2, 0.05, 0.05, 0.05, 0.05]).tolist()
        sizes = rng.choice([200, 300, 2000], n, p=[0.6, 0.35, 0.05]).tolist()
        heard = (rng.random(n) > 0.05).astype(int).tolist()
        out.append((now, senders, sizes, heard))
    return out


def run(backend: str, batches: list[tuple[float, list[int], list[int], list[int]]]) -> Any:
    peers = table(backend)
    addresses = [("10.0.0.1", 5000 + s) for s in range(6)]
    statuses, oks = [], []
    for now, senders, sizes, heard in batches:
        rows = peers.rows_for([addresses[s] for s in senders], now)
        status, admitted = peers.admit(rows, np.array(sizes, np.int64),
                                       np.array(heard, np.uint8), 1024, now)  # fmt: skip
        assert admitted == int(np.count_nonzero(status == ADMITTED))
        taken = rows[status == ADMITTED]
        ok, got = peers.take_frames(taken, now)
        assert got == int(np.count_nonzero(ok))
        peers.count_frames(taken[ok.view(bool)], now)
        statuses.append(status.tolist())
        oks.append(ok.tolist())
    return peers, statuses, oks


COLUMNS = ("used", "packet_tokens", "packet_last", "frame_tokens", "frame_last", "packets",
           "bytes", "frames", "last_seen", "window_start", "window_count",
           "window_rate")  # fmt: skip


@pytest.mark.skipif(not HAS_NATIVE, reason="native module not built")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_native_kernels_match_the_reference(seed: int) -> None:
    batches = workload(seed)
    ref, ref_status, ref_ok = run("numpy", batches)
    nat, nat_status, nat_ok = run("native", batches)
    assert nat_status == ref_status and nat_ok == ref_ok
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(nat, name), getattr(ref, name), err_msg=name)
    assert nat.seq == ref.seq == sum(len(b[1]) for b in batches)
    assert {RATE_LIMITED, TOO_LARGE, NOT_HEARD, ADMITTED} <= {s for b in ref_status for s in b}


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_kernels_are_token_buckets_and_source_stats_one_entry_at_a_time(backend: str) -> None:
    """What a sender's row holds after the workload is what a TokenBucket pair and a
    SourceStats fed the same datagrams one by one hold."""
    batches = workload(7)
    peers, statuses, oks = run(backend, batches)
    buckets: dict[int, tuple[TokenBucket, TokenBucket]] = {}
    stats: dict[int, SourceStats] = {}
    for (now, senders, sizes, heard), status, ok in zip(batches, statuses, oks, strict=True):
        expected, frames = [], []
        for s, size, hear in zip(senders, sizes, heard, strict=True):
            if s not in buckets:
                buckets[s] = TokenBucket(*PACKETS, now), TokenBucket(*FRAMES, now)
                stats[s] = SourceStats()
            stats[s].packet(size, now)
            if size > 1024:
                expected.append(TOO_LARGE)
            elif not hear:
                expected.append(NOT_HEARD)
            elif buckets[s][0].take(now):
                expected.append(ADMITTED)
                frames.append(s)
            else:
                expected.append(RATE_LIMITED)
        assert status == expected
        expected_ok = [buckets[s][1].take(now) for s in frames]
        assert [bool(v) for v in ok] == expected_ok
        for s, took in zip(frames, expected_ok, strict=True):
            if took:
                stats[s].frame(now)
    last = batches[-1][0]
    for row in peers.rows():
        address = peers.address[row]
        assert address is not None
        reference = stats[address[1] - 5000].snapshot(last)
        assert peers.snapshot(row, last) == {**reference, "key": "", "session": None}


@pytest.mark.skipif(not HAS_NATIVE, reason="native module not built")
def test_native_kernels_refuse_bad_arguments() -> None:
    peers = table("native")
    kernels = admission_backend("native")
    status = np.zeros(2, np.uint8)
    sizes, heard = np.zeros(2, np.int64), np.ones(2, np.uint8)
    with pytest.raises(IndexError, match="outside the table"):
        kernels.admit_datagrams(peers, np.array([0, peers.size], np.int64), sizes, heard, 10, 1.0,
                                status)  # fmt: skip
    with pytest.raises(ValueError, match="a slot per"):
        kernels.take_frames(peers, np.array([0, 1], np.int64), 1.0, np.zeros(1, np.uint8))
    peers.frames = np.zeros(peers.size, np.float64)  # a column of the wrong dtype
    with pytest.raises(TypeError, match="frames"):
        kernels.count_frames(peers, np.array([0], np.int64), 1.0, RATE_WINDOW)
    assert kernels is not REFERENCE


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _load(rx: LiveLinkReceiver, packets: list[bytes]) -> None:
    """Fill the receiver's batch rows as a batch read does (a long datagram cut to the row)."""
    width = rx._rows.shape[1]
    for i, packet in enumerate(packets):
        kept = packet[:width]
        rx._rows[i, : len(kept)] = np.frombuffer(kept, np.uint8)
        rx._sizes[i] = len(packet)


def test_a_batch_counts_as_its_datagrams_one_at_a_time() -> None:
    """A burst with a flooding sender, an oversize datagram and a malformed one: the batch and
    the same datagrams one by one (same clock) give the same frames and the same stats."""
    values = np.full(61, 0.25, np.float32)
    packets, senders = [], []
    for i in range(
        90
    ):  # sender 0 floods: 60 packets in one burst against a burst of 60 + frames 30
        packets.append(build_packet("dev", f"s{i % 3}" if i % 3 else "flood", values))
        senders.append(("127.0.0.1", 6000 + (0 if i % 3 == 0 else i)))
    packets += [bytes(700), b"\x06broken"]
    senders += [("127.0.0.1", 7001), ("127.0.0.1", 7002)]
    config = ReceiverConfig(max_datagram=512)
    results = []
    for batched in (True, False):
        clock, sink = Clock(), CollectingSink()
        rx = LiveLinkReceiver(sink, config=config, clock=clock)
        for _ in range(3):
            clock.t += 1 / 60
            if batched:
                _load(rx, packets)
                rx.receive_batch(senders)
            else:
                for packet, sender in zip(packets, senders, strict=True):
                    rx.datagram_received(packet, sender)
        results.append((sink.sessions, rx.stats()))
    (batch_sessions, batch_stats), (one_sessions, one_stats) = results
    assert batch_sessions == one_sessions
    assert batch_stats == one_stats
    flood = batch_stats["sources"]["127.0.0.1:6000"]
    delivered = batch_sessions.count("flood")  # the frame burst (30), then about 2 a 60th of a s
    assert 30 < delivered <= 34 and flood["drops"]["rate_limited"] == 90 - delivered
    phones = [s for label, s in batch_stats["sources"].items() if label[-4:-2] == "60"]
    assert len(phones) == 61 and sum(bool(s["drops"]) for s in phones) == 1  # the flood only
    assert batch_stats["totals"]["drops"]["too_large"] == 3


def test_the_table_is_bounded_and_keeps_the_latest_senders() -> None:
    """A batch from more senders than max_peers: every frame is delivered, then the least
    recently heard are forgotten; the bound holds across batches."""
    sink = CollectingSink()
    clock = Clock()
    rx = LiveLinkReceiver(sink, config=ReceiverConfig(max_peers=8, max_datagram=512), clock=clock)
    values = np.zeros(61, np.float32)
    packets = [build_packet("dev", f"p{i}", values) for i in range(40)]
    _load(rx, packets)
    rx.receive_batch([("10.0.0.2", 9000 + i) for i in range(40)])
    assert len(sink) == 40 and len(rx.peers) == 8
    assert sorted(rx.stats()["sources"]) == [f"10.0.0.2:{9032 + i}" for i in range(8)]
    clock.t += 1
    _load(rx, packets[:1])
    rx.receive_batch([("10.0.0.3", 1)])  # one more: the oldest of the eight goes
    assert len(rx.peers) == 8 and "10.0.0.2:9032" not in rx.stats()["sources"]
    assert rx.totals.packets == 41


def test_a_non_finite_packet_is_dropped_without_a_numpy_warning() -> None:
    """A packet with a signalling NaN (random bytes make them) is counted ``non_finite``; the
    batch's range check over its row (it failed to parse) raises no RuntimeWarning."""
    bad = np.full(61, 0.25, np.float32)
    bad[3] = np.array([0x7F800001], np.uint32).view(np.float32)[0]
    rx = LiveLinkReceiver(CollectingSink(), config=ReceiverConfig(max_datagram=512))
    _load(
        rx, [build_packet("dev", "bad", bad), build_packet("dev", "ok", np.zeros(61, np.float32))]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rx.receive_batch([("127.0.0.1", 1), ("127.0.0.1", 2)])
    assert rx.stats()["totals"]["drops"] == {"non_finite": 1} and rx.totals.frames == 1
