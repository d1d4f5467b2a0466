"""The System page's charts: key metrics over time, from Prometheus or from this process.

Where ``FACESTREAM_CONSOLE__PROMETHEUS_URL`` is set, each series is a ``query_range`` of
Prometheus's HTTP API (the same expressions as the Grafana dashboard). Otherwise (the embedded
default, where every service runs in this process) a sampler reads this process's own
prometheus_client registry every ``SAMPLE_S`` seconds and keeps the last ``POINTS`` points, so a
user without Prometheus or Grafana still sees the dashboard.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict, deque

from prometheus_client import REGISTRY

SAMPLE_S = 5.0
POINTS = 360
"""Half an hour at one point every five seconds."""

QUERIES = {
    "frames_per_s": "sum by (camera) (rate(facestream_camera_frames_published_total[1m]))",
    "detection_latency_s": 'sum(rate(facestream_processing_seconds_sum{service="detector"}[1m]))'
    ' / sum(rate(facestream_processing_seconds_count{service="detector"}[1m]))',
    "recognition_latency_s": 'sum(rate(facestream_processing_seconds_sum{service="recognizer"}[1m]))'
    ' / sum(rate(facestream_processing_seconds_count{service="recognizer"}[1m]))',
    "consumer_lag": "sum by (service) (facestream_consumer_lag)",
    "events_per_min": "sum(rate(facestream_events_total[1m])) * 60",
    "dead_letters_per_min": "sum(rate(facestream_dead_letters_total[1m])) * 60",
}


def _totals() -> dict[str, dict[str, float]]:
    """Sums of this process's samples that the charts need, by series and label."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in REGISTRY.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "facestream_camera_frames_published_total":
                out["frames"][labels.get("camera", "?")] += sample.value
            elif sample.name == "facestream_processing_seconds_sum":
                out["latency_sum"][labels.get("service", "?")] += sample.value
            elif sample.name == "facestream_processing_seconds_count":
                out["latency_count"][labels.get("service", "?")] += sample.value
            elif sample.name == "facestream_consumer_lag":
                out["lag"][labels.get("service", "?")] += sample.value
            elif sample.name == "facestream_events_total":
                out["events"][""] += sample.value
            elif sample.name == "facestream_dead_letters_total":
                out["dead"][""] += sample.value
    return out


class LocalSampler:
    """Rates and gauges of this process's metrics, sampled in a thread."""

    def __init__(self) -> None:
        self.series: dict[str, dict[str, deque]] = defaultdict(
            lambda: defaultdict(lambda: deque(maxlen=POINTS))
        )
        self._last: tuple[float, dict] | None = None
        self._lock = threading.Lock()

    def start(self, stop: threading.Event) -> LocalSampler:
        def loop() -> None:
            while not stop.wait(SAMPLE_S if self._last else 0.1):
                self.sample()

        threading.Thread(target=loop, name="console-metrics", daemon=True).start()
        return self

    def sample(self) -> None:
        now, totals = time.time(), _totals()
        if self._last is not None:
            before_ts, before = self._last
            dt = max(now - before_ts, 1e-3)

            def delta(name: str, label: str) -> float:
                return totals[name].get(label, 0.0) - before.get(name, {}).get(label, 0.0)

            with self._lock:
                for camera in totals["frames"]:
                    self._add("frames_per_s", camera, now, delta("frames", camera) / dt)
                for service, key in (("detector", "detection"), ("recognizer", "recognition")):
                    count = delta("latency_count", service)
                    if count > 0:
                        mean = delta("latency_sum", service) / count
                        self._add(f"{key}_latency_s", "", now, mean)
                for service, lag in totals["lag"].items():
                    self._add("consumer_lag", service, now, lag)
                self._add("events_per_min", "", now, delta("events", "") / dt * 60)
                self._add("dead_letters_per_min", "", now, delta("dead", "") / dt * 60)
        self._last = (now, {k: dict(v) for k, v in totals.items()})

    def _add(self, series: str, label: str, ts: float, value: float) -> None:
        self.series[series][label].append((round(ts, 1), round(value, 4)))

    def snapshot(self) -> dict[str, dict[str, list]]:
        with self._lock:
            return {s: {k: list(v) for k, v in d.items()} for s, d in self.series.items()}


def prometheus_series(base_url: str, minutes: int = 30, step_s: int = 15) -> dict:
    """The same series from Prometheus's ``/api/v1/query_range`` (raises OSError when down)."""
    end = time.time()
    out: dict[str, dict[str, list]] = {}
    for name, query in QUERIES.items():
        params = urllib.parse.urlencode(
            {"query": query, "start": end - minutes * 60, "end": end, "step": step_s}
        )
        url = f"{base_url.rstrip('/')}/api/v1/query_range?{params}"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - configured URL
            result = json.load(response)["data"]["result"]
        out[name] = {
            next(iter(r["metric"].values()), ""): [(float(t), float(v)) for t, v in r["values"]]
            for r in result
        }
    return out
