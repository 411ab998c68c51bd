"""The runtime and its placement, in process on a fake clock (issue 17, item 2).

The runtime asks its placement everything that depends on where sessions live, and the
placement reaches back only through the runtime's ``PlacementHost`` operations. These tests
hand the runtime a placement that says one session ("far") lives on another node and record
what the runtime asks of it: the single-process placement and the cluster's answer the same
questions (the cluster's own behaviour, with Redis and real nodes, is tests/test_cluster_*.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from avatar_engine.codec.wire import AudioCodec, DeltaMode
from avatar_engine.engine.sessions import Session
from avatar_engine.ingest.sink import SourceInfo, SourceKind
from avatar_engine.rigs.arkit import ARKIT_COUNT, ROTATION_COUNT
from avatar_engine.server.auth import ANONYMOUS, Principal
from avatar_engine.server.config import ServerOptions
from avatar_engine.server.placement import LocalPlacement, PlacementHost
from avatar_engine.server.runtime import Runtime
from avatar_engine.server.streams import StreamKey, Subscriber
from avatar_engine.types import F32
from inprocess import FakeClock

OPTIONS = ServerOptions(livelink_port=0, vmc_port=0)


class ElsewherePlacement(LocalPlacement):
    """One process, except that session "far" lives on another node; records every call."""

    def __init__(self, host: PlacementHost) -> None:
        super().__init__(host.options, host.clock)
        self.host = host
        self.calls: list[tuple[str, str]] = []
        self.remote: set[Subscriber] = set()

    def owned_elsewhere(self, session_id: str) -> bool:
        return session_id == "far"

    def check_new(self, session_id: str | None) -> None:
        self.calls.append(("check_new", str(session_id)))

    def on_created(self, session: Session) -> None:
        self.calls.append(("on_created", session.id))

    def on_deleted(self, session: Session) -> None:
        gone = self.host.local_session(session.id) is None  # the teardown ran first
        self.calls.append(("on_deleted", f"{session.id} gone={gone}"))

    def subscribe_remote(
        self, principal: Principal, session_id: str, *,
        lod: int, mode: DeltaMode, bits: int, transport: str, audio: AudioCodec,
    ) -> Subscriber:  # fmt: skip
        sub = Subscriber(session_id, principal.tenant, transport,
                         StreamKey(session_id, lod, mode, bits), 7, self.host.now())  # fmt: skip
        self.remote.add(sub)
        self.host.add_viewer(sub, counted=True)
        return sub

    def is_remote(self, sub: Subscriber) -> bool:
        return sub in self.remote

    def set_remote_lod(self, sub: Subscriber, lod: int) -> None:
        self.calls.append(("set_remote_lod", str(lod)))

    def request_remote_keyframe(self, sub: Subscriber) -> None:
        self.calls.append(("request_remote_keyframe", sub.session))

    def forget(self, sub: Subscriber) -> None:
        self.calls.append(("forget", sub.session))

    def forward_capture(
        self, session_id: str, arkit: F32, rotations: F32, source: SourceInfo
    ) -> bool:
        self.calls.append(("forward_capture", session_id))
        return self.owned_elsewhere(session_id)


def elsewhere_runtime() -> tuple[Runtime, ElsewherePlacement]:
    runtime = Runtime(OPTIONS, clock=FakeClock(), placement=ElsewherePlacement)
    assert isinstance(runtime.placement, ElsewherePlacement)
    return runtime, runtime.placement


def capture(runtime: Runtime, session_id: str) -> None:
    runtime.on_frame(session_id, np.zeros(ARKIT_COUNT, np.float32),
                     np.zeros(ROTATION_COUNT, np.float32), runtime.now(),
                     SourceInfo(SourceKind.LIVELINK, "phone"))  # fmt: skip


def test_viewers_of_a_session_elsewhere_are_the_placements() -> None:
    runtime, placement = elsewhere_runtime()
    sub = runtime.subscribe(ANONYMOUS, "far", lod=0, mode=DeltaMode.CHAINED, bits=8,
                            transport="websocket")  # fmt: skip
    assert sub in placement.remote and sub in runtime.subscribers["far"]
    runtime.set_lod(sub, 2)
    runtime.request_keyframe(sub)
    runtime.unsubscribe(sub)
    assert placement.calls == [
        ("set_remote_lod", "2"),
        ("request_remote_keyframe", "far"),
        ("forget", "far"),
    ]
    assert "far" not in runtime.subscribers
    assert runtime.stats()["subscribers"] == 0


def test_capture_for_a_session_elsewhere_goes_to_the_placement() -> None:
    runtime, placement = elsewhere_runtime()
    assert runtime.ensure_capture_session("far", OPTIONS.default_rig)  # not created here
    assert runtime.local_session("far") is None
    capture(runtime, "far")
    capture(runtime, "nowhere")
    assert placement.calls == [("forward_capture", "far"), ("forward_capture", "nowhere")]
    publish = runtime.stats()["publish"]
    assert isinstance(publish, dict)
    assert (publish["messages"], publish["rejected"]) == (0, 1)  # only the unknown one refused


def test_the_placement_hears_of_sessions_made_and_deleted_after_the_teardown() -> None:
    runtime, placement = elsewhere_runtime()
    runtime.create_session(ANONYMOUS, session_id="near")
    runtime.delete_session(ANONYMOUS, "near")
    assert placement.calls == [
        ("check_new", "near"),
        ("on_created", "near"),
        ("on_deleted", "near gone=True"),
    ]


def test_ending_a_session_here_detaches_its_viewers_for_the_caller_to_settle() -> None:
    runtime = Runtime(OPTIONS, clock=FakeClock())
    session = runtime.create_session(ANONYMOUS, session_id="a")
    sub = runtime.subscribe(ANONYMOUS, "a", lod=0, mode=DeltaMode.CHAINED, bits=8,
                            transport="websocket")  # fmt: skip
    viewers = runtime.end_here(session)  # what a cluster node does when it loses the lease
    assert viewers == [sub] and not sub.outbox.closed
    assert runtime.local_session("a") is None
    assert sub in runtime.subscribers["a"]  # moved, not closed: the caller's to settle


def test_local_stream_ids_follow_first_use_and_die_with_their_session() -> None:
    runtime = Runtime(OPTIONS, clock=FakeClock())
    runtime.create_session(ANONYMOUS, session_id="a")

    def sid(mode: DeltaMode) -> int:
        return runtime.subscribe(ANONYMOUS, "a", lod=0, mode=mode, bits=8,
                                 transport="websocket").sid  # fmt: skip

    first, second = sid(DeltaMode.CHAINED), sid(DeltaMode.KEYFRAME)
    assert sid(DeltaMode.CHAINED) == first and second != first
    runtime.delete_session(ANONYMOUS, "a")
    runtime.create_session(ANONYMOUS, session_id="a")
    assert sid(DeltaMode.CHAINED) not in (first, second)  # a new stream, never an old id


def test_a_cluster_configuration_needs_the_cluster_placement() -> None:
    with pytest.raises(ValueError, match="cluster's placement"):
        Runtime(ServerOptions(livelink_port=0, vmc_port=0, redis_url="redis://127.0.0.1:1"))
