"""Prometheus exposition of the runtime's numbers, read at scrape time (no per-frame cost)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from avatar_engine.server.runtime import Runtime


class RuntimeCollector(Collector):
    """Prometheus collector that reads the runtime's counters at scrape time (nothing is counted
    twice)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        """The metric families of one scrape, from a fresh ``runtime.stats()``."""
        stats = self.runtime.stats()
        tick = self.runtime.scheduler.stats
        yield GaugeMetricFamily(
            "avatar_engine_sessions",
            "Sessions in this process",
            value=self.runtime.session_count(),
        )
        subs = GaugeMetricFamily(
            "avatar_engine_subscribers", "Connected subscribers", labels=["transport"]
        )
        by_transport = stats["subscribers_by_transport"]
        assert isinstance(by_transport, dict)
        for transport, count in by_transport.items():
            subs.add_metric([transport], count)
        yield subs
        yield CounterMetricFamily("avatar_engine_ticks", "Engine ticks run", value=tick.ticks)
        yield CounterMetricFamily(
            "avatar_engine_ticks_late", "Ticks that started late", value=tick.late
        )
        yield CounterMetricFamily(
            "avatar_engine_ticks_skipped", "Tick slots skipped (never replayed)", value=tick.skipped
        )
        summary = tick.summary()
        durations = GaugeMetricFamily(
            "avatar_engine_tick_seconds", "Recent tick duration quantiles", labels=["quantile"]
        )
        durations.add_metric(["0.5"], float(summary["p50_ms"]) / 1e3)
        durations.add_metric(["0.99"], float(summary["p99_ms"]) / 1e3)
        yield durations
        frames = stats["frames"]
        assert isinstance(frames, dict)
        yield CounterMetricFamily(
            "avatar_engine_frame_bytes",
            "Frame bytes handed to transports",
            value=frames["bytes_out"],
        )
        yield CounterMetricFamily(
            "avatar_engine_frames_skipped", "Frames a slow subscriber lost", value=frames["skipped"]
        )
        yield CounterMetricFamily(
            "avatar_engine_frames_lost",
            "WebRTC frames the kernel refused to send (lost as on the network)",
            value=frames["lost"],
        )
        publish = stats["publish"]
        assert isinstance(publish, dict)
        yield CounterMetricFamily(
            "avatar_engine_publish_messages", "Publish messages accepted", value=publish["messages"]
        )
        yield CounterMetricFamily(
            "avatar_engine_publish_rejected", "Publish messages dropped", value=publish["rejected"]
        )
        yield self._drops()

    def _drops(self) -> Metric:
        """Every capture input dropped, by source kind and reason (UDP receivers and the
        WebSocket publish path): garbage, non-finite values, rate limits, unrouted, ..."""
        drops = CounterMetricFamily(
            "avatar_engine_capture_dropped",
            "Capture messages dropped, by source kind and reason",
            labels=["kind", "reason"],
        )
        totals = [(kind, rx.totals) for kind, rx in self.runtime.ingest.receivers.items()]
        totals.append(("publish-ws", self.runtime.publish_totals))
        for kind, stats in totals:
            for reason, count in sorted(stats.drops.items()):
                drops.add_metric([kind, reason], count)
        return drops


def metrics_text(runtime: Runtime) -> bytes:
    """The Prometheus text exposition of the runtime (``/metrics``), from a private registry."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(RuntimeCollector(runtime))
    return generate_latest(registry)
