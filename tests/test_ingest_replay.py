"""Replay of the reference take through every input gives the frames ``convert`` gives, and
``record`` writes a stream to an .avrec that replays again. Real loopback sockets, ephemeral
ports; the WebSocket endpoints are small in-test servers that speak docs/protocol.md with the
codec package (the real server's endpoints are tested with the server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from avatar_engine.cli import main as cli_main
from avatar_engine.codec import BatchEncoder, StreamParams, StreamSchema, encode_hello
from avatar_engine.formats.curves_io import resample_uniform
from avatar_engine.formats.recording import AvrecWriter, capture_header, read_recording
from avatar_engine.formats.rotation import DEGREES_PER_UNIT
from avatar_engine.ingest import (
    CollectingSink,
    IFacialMocapReceiver,
    LiveLinkReceiver,
    PublishUdpReceiver,
    ReceiverConfig,
    VmcReceiver,
)
from avatar_engine.ingest.receivers import DatagramReceiver
from avatar_engine.ingest.replay import (
    ReplayError,
    TakeFrames,
    load_take,
    open_target,
    replay,
)
from avatar_engine.ingest.websocket import PublishLimits, record_stream, serve_publish
from avatar_engine.kernels.retarget import Retargeter
from avatar_engine.rigs.arkit import ROTATION_NAMES
from avatar_engine.rigs.profile import load_rig

LOOPBACK = "127.0.0.1"
FAST = 25.0  # replay speed for tests: the 5.5 s take in about 0.2 s
UNLIMITED = ReceiverConfig(
    host=LOOPBACK,
    port=0,
    max_packet_rate_hz=1e6,
    packet_burst=1e6,
    max_frame_rate_hz=1e6,
    frame_burst=1e6,
)


@pytest.fixture(scope="module")
def take(reference_take: Path) -> TakeFrames:
    return load_take(reference_take)


@pytest.fixture(scope="module")
def converted(reference_take: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("convert") / "take.json"
    assert cli_main(["convert", str(reference_take), "--rig", "cc4-extended", "-o", str(out)]) == 0
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def quantization_bound(step: float) -> np.ndarray:
    """Per-morph bound on |retarget(x + e) - retarget(x)| for |e| <= step per input."""
    stage = Retargeter(load_rig("cc4-extended"))
    # The map is linear before the clamp: probe it with unit inputs to get |W| row sums.
    eye = np.eye(52, dtype=np.float32)
    base = stage.map(np.zeros((1, 52), np.float32))
    rows = np.abs(stage.map(eye * 0.5) - base) / 0.5
    return np.asarray(2 * step * rows.sum(axis=0) + 1e-5)


async def _receive_replay(
    rx: DatagramReceiver, sink: CollectingSink, url_of: str, take: TakeFrames
) -> None:
    _, port = await rx.start()
    target = open_target(url_of.format(port=port), subject="ref")
    stats = await replay(take, target, speed=FAST, skip_late=False)
    assert stats.sent == len(take)
    loop = asyncio.get_running_loop()
    end = loop.time() + 5
    while len(sink) < len(take) and loop.time() < end:
        await asyncio.sleep(0.01)
    rx.close()


def _check_against_convert(
    sink: CollectingSink,
    take: TakeFrames,
    converted: dict[str, Any],
    *,
    input_step: float,
    rotation_atol: float,
) -> None:
    assert len(sink) == len(take)
    # convert resamples the take onto a uniform 60 fps grid (the phone's timecode jitters by a
    # millisecond or so); frame i of the replay is take row i, so the same resampling applies.
    arkit = resample_uniform(take.times, np.stack(sink.arkit), converted["fps"])
    frames = Retargeter(load_rig("cc4-extended")).map(arkit)
    expected = np.asarray(converted["frames"], dtype=np.float64)
    assert frames.shape == expected.shape
    bound = quantization_bound(input_step) if input_step else np.full(frames.shape[1], 2e-6)
    err = np.abs(frames - expected)
    assert (err <= bound).all(), (
        f"max error {err.max()} at {np.unravel_index(err.argmax(), err.shape)}"
    )
    rotations = np.stack(sink.rotations)
    np.testing.assert_allclose(rotations, take.rotations, atol=rotation_atol)
    resampled = resample_uniform(take.times, rotations, converted["fps"])
    for name, curve in converted["channels"].items():
        np.testing.assert_allclose(
            resampled[:, ROTATION_NAMES.index(name)], curve, atol=rotation_atol + 1e-6
        )


def test_replay_via_livelink_matches_convert(take: TakeFrames, converted: dict[str, Any]) -> None:
    sink = CollectingSink()
    asyncio.run(_receive_replay(LiveLinkReceiver(sink, config=UNLIMITED), sink,
                                "livelink://127.0.0.1:{port}", take))  # fmt: skip
    assert set(sink.sessions) == {"ref"}
    _check_against_convert(sink, take, converted, input_step=0.0, rotation_atol=0.0)


def test_replay_via_vmc_matches_convert(take: TakeFrames, converted: dict[str, Any]) -> None:
    sink = CollectingSink()
    asyncio.run(_receive_replay(VmcReceiver(sink, config=UNLIMITED), sink,
                                "vmc://127.0.0.1:{port}", take))  # fmt: skip
    # float32 weights travel exactly; rotations go through a quaternion and back
    _check_against_convert(sink, take, converted, input_step=0.0, rotation_atol=2e-6)


def test_replay_via_ifacialmocap_matches_convert_within_quantization(
    take: TakeFrames, converted: dict[str, Any]
) -> None:
    sink = CollectingSink()
    asyncio.run(_receive_replay(IFacialMocapReceiver(sink, config=UNLIMITED), sink,
                                "ifacialmocap://127.0.0.1:{port}", take))  # fmt: skip
    # the app's wire format: whole percent weights, degrees with 2 decimals
    _check_against_convert(
        sink, take, converted, input_step=0.005, rotation_atol=0.005 / DEGREES_PER_UNIT + 1e-7
    )


def test_replay_via_udp_publish_matches_convert(
    take: TakeFrames, converted: dict[str, Any]
) -> None:
    sink = CollectingSink()
    asyncio.run(_receive_replay(PublishUdpReceiver(sink, config=UNLIMITED), sink,
                                "udp://127.0.0.1:{port}", take))  # fmt: skip
    assert set(sink.sessions) == {"publish-1"}
    _check_against_convert(sink, take, converted, input_step=0.0, rotation_atol=0.0)


def test_replay_via_websocket_publish_matches_convert(
    take: TakeFrames, converted: dict[str, Any]
) -> None:
    sink = CollectingSink()
    outcomes: list[Any] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        parts = ws.request.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "sessions" or parts[2] != "publish":
            await ws.close(1008, "not a publish endpoint")
            return
        unlimited = PublishLimits(max_frame_rate_hz=1e6, frame_burst=1e6)  # replay runs at 25x
        outcomes.append(await serve_publish(ws, parts[1], sink, limits=unlimited))

    async def main() -> None:
        async with serve(handler, LOOPBACK, 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            target = open_target(f"ws://127.0.0.1:{port}/sessions/wsref/publish")
            stats = await replay(take, target, speed=FAST, skip_late=False)
            assert stats.sent == len(take)
            for _ in range(200):
                if outcomes:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(main())
    assert set(sink.sessions) == {"wsref"}
    assert outcomes and outcomes[0].stats.frames == len(take) and outcomes[0].stats.drops == {}
    _check_against_convert(sink, take, converted, input_step=0.0, rotation_atol=0.0)


def test_replay_of_an_avrec_capture_matches_convert(
    take: TakeFrames, converted: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "take.avrec"
    with AvrecWriter(path, capture_header("test")) as writer:
        for i in range(len(take)):
            writer.write(float(take.times[i]), take.arkit[i], take.rotations[i])
    again = load_take(path)
    np.testing.assert_array_equal(again.arkit, take.arkit)
    sink = CollectingSink()
    asyncio.run(_receive_replay(LiveLinkReceiver(sink, config=UNLIMITED), sink,
                                "livelink://127.0.0.1:{port}", again))  # fmt: skip
    _check_against_convert(sink, take, converted, input_step=0.0, rotation_atol=0.0)


def test_replay_timing_loop_count_and_late_skips(take: TakeFrames) -> None:
    class Clock:
        t = 0.0

        def __call__(self) -> float:
            return self.t

    clock = Clock()
    sent: list[float] = []

    class Target:
        async def open(self) -> None: ...

        async def close(self) -> None: ...

        async def send(self, index: int, t: float, arkit: Any, rotations: Any) -> None:
            sent.append(clock.t)

    async def fake_sleep(dt: float) -> None:
        clock.t += dt

    stats = asyncio.run(
        replay(take, Target(), loop=True, count=len(take) + 10, clock=clock, sleep=fake_sleep)
    )
    assert stats.sent == len(take) + 10 and stats.loops == 1 and stats.skipped_late == 0
    # frames leave on the take's clock: the 11th frame of the second loop at period + t[10]
    period = float(take.times[-1]) + float(np.median(np.diff(take.times)))
    assert sent[len(take) + 9] == pytest.approx(period + float(take.times[9]))
    assert sent[10] == pytest.approx(float(take.times[10]))

    # a sender that stalls for 1 s skips what is overdue instead of bursting
    clock.t = 0.0
    sent.clear()

    async def stalling_sleep(dt: float) -> None:
        clock.t += dt + (1.0 if len(sent) == 5 else 0.0)

    stats = asyncio.run(replay(take, Target(), duration=2.0, clock=clock, sleep=stalling_sleep))
    in_window = int(np.count_nonzero(take.times <= 2.0))
    assert stats.skipped_late >= 55 and stats.sent + stats.skipped_late == in_window


def test_replay_rejects_bad_targets_and_takes(tmp_path: Path) -> None:
    for url in ("http://x:1", "livelink://nohost", "ws://h:1/sessions/x/stream", "vmc://h:port"):
        with pytest.raises(ReplayError):
            open_target(url)
    bad = tmp_path / "t.txt"
    bad.write_text("x")
    with pytest.raises(ReplayError):
        load_take(bad)


# --------------------------------------------------------------------------- record


async def _stream_server(
    rig_name: str, take: TakeFrames, port_box: list[int], sent: list[tuple[int, np.ndarray]]
) -> Any:
    rig = load_rig(rig_name)
    schema = StreamSchema.from_rig(rig, rot_scale=8.0)
    params = StreamParams(bits=16, dead_band=0.0)
    morphs = Retargeter(rig).map(take.arkit)

    async def handler(ws: ServerConnection) -> None:
        encoder = BatchEncoder(schema, 1)
        k = encoder.add_stream(0, 7, 0, params)
        await ws.send(encode_hello(7, schema, params))
        for i in range(len(take)):
            t_ms = round(float(take.times[i]) * 1000)
            tick = encoder.encode(t_ms, morphs[i : i + 1], take.rotations[i : i + 1])
            if tick.kinds[k]:
                await ws.send(bytes(tick.message(k)))
                sent.append((t_ms, np.concatenate([morphs[i], take.rotations[i]])))
        await ws.close()

    return serve(handler, LOOPBACK, 0), schema, params


def test_record_writes_the_stream_to_avrec_and_it_replays(take: TakeFrames, tmp_path: Path) -> None:
    out = tmp_path / "rec.avrec"
    sent: list[tuple[int, np.ndarray]] = []

    async def main() -> StreamSchema:
        server_cm, schema, _ = await _stream_server("arkit52", take, [], sent)
        async with server_cm as server:
            port = next(iter(server.sockets)).getsockname()[1]
            stats = await record_stream(f"ws://127.0.0.1:{port}/sessions/s/stream", out)
            assert stats.rig == "arkit52" and stats.frames == len(sent)
        result: StreamSchema = schema
        return result

    schema = asyncio.run(main())
    recording = read_recording(out)
    assert recording.header.kind == "stream" and recording.header.rig == "arkit52"
    assert recording.error is None and len(recording.times) == len(sent) > len(take) * 0.9
    morph_bound, rot_bound = schema.error_bound(16, 0.0)
    for i, (t_ms, values) in enumerate(sent):
        assert recording.times[i] == pytest.approx((t_ms - sent[0][0]) / 1000)
        assert (np.abs(recording.values[i] - values[:52]) <= morph_bound + 1e-6).all()
        assert (np.abs(recording.channels[i] - values[52:]) <= rot_bound + 1e-6).all()
    # the recording is a take again: replay reads it as ARKit capture
    again = load_take(out)
    assert len(again) == len(sent)
    np.testing.assert_allclose(again.arkit, recording.values, atol=0)


def test_replay_and_record_cli_in_a_subprocess(reference_take: Path, tmp_path: Path) -> None:
    async def main() -> tuple[int, str, int]:
        sink = CollectingSink()
        rx = LiveLinkReceiver(sink, config=UNLIMITED)
        _, port = await rx.start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "avatar_engine.cli", "replay", str(reference_take),
            "--to", f"livelink://127.0.0.1:{port}", "--count", "30", "--speed", "4",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
        loop = asyncio.get_running_loop()
        end = loop.time() + 3
        while len(sink) < 30 and loop.time() < end:
            await asyncio.sleep(0.01)
        rx.close()
        assert proc.returncode == 0, stderr.decode()
        return len(sink), stdout.decode(), proc.returncode or 0

    frames, stdout, _ = asyncio.run(main())
    assert frames == 30 and "sent 30 frames" in stdout
    bad = subprocess.run(
        [sys.executable, "-m", "avatar_engine.cli", "replay", str(reference_take),
         "--to", "ftp://x:1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("avatar-engine: error:")
    refused = subprocess.run(
        [sys.executable, "-m", "avatar_engine.cli", "record",
         "ws://127.0.0.1:9/sessions/x/stream", "-o", str(tmp_path / "x.avrec")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "Traceback" not in refused.stderr


def test_record_against_the_real_server_stream_endpoint(tmp_path: Path) -> None:
    """``record`` against the lead's real server (issue 8), when it is importable."""
    import socket
    import urllib.request

    serve_mod = pytest.importorskip("avatar_engine.server.serve")
    config_mod = pytest.importorskip("avatar_engine.server.config")
    out = tmp_path / "server.avrec"

    async def main() -> Any:
        s = socket.socket()
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
        s.close()
        options = config_mod.ServerOptions(
            port=port, livelink_port=0, vmc_port=0, log_format="text", log_level="error"
        )
        server = asyncio.create_task(serve_mod.run_server(options))
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                await asyncio.sleep(0.05)
                try:
                    await asyncio.to_thread(urllib.request.urlopen, f"{base}/health", None, 1)
                    break
                except OSError:
                    continue
            body = json.dumps({"id": "rec", "rig": "arkit52"}).encode()
            request = urllib.request.Request(
                f"{base}/sessions", body, {"content-type": "application/json"}, method="POST"
            )
            await asyncio.to_thread(urllib.request.urlopen, request, None, 5)
            url = f"ws://127.0.0.1:{port}/sessions/rec/stream?bits=16"
            return await record_stream(url, out, duration=1.2)
        finally:
            server.cancel()
            with contextlib.suppress(BaseException):
                await server

    stats = asyncio.run(main())
    recording = read_recording(out)
    assert stats.rig == "arkit52" and recording.header.rig == "arkit52"
    assert len(recording.times) == stats.frames >= 1 and recording.error is None
