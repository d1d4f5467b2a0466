"""Prometheus metrics shared by every service.

All services in one process (the embedded default) share one registry, so every metric carries a
``service`` label instead of having per-service metric names. Grafana dashboards and tests refer to
these names; keep ``METRIC_NAMES`` in step when adding one.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

FRAMES_IN = Counter(
    "facestream_frames_in_total", "Messages consumed by a service.", ["service", "topic"]
)
FRAMES_OUT = Counter(
    "facestream_frames_out_total", "Messages published by a service.", ["service", "topic"]
)
PROCESSING_SECONDS = Histogram(
    "facestream_processing_seconds",
    "Time spent processing one message (or capturing and publishing one frame).",
    ["service"],
    buckets=LATENCY_BUCKETS,
)
ERRORS = Counter("facestream_errors_total", "Errors by service and reason.", ["service", "reason"])
DEAD_LETTERS = Counter(
    "facestream_dead_letters_total",
    "Messages sent to the dead-letter topic, by reason.",
    ["service", "reason"],
)
CONSUMER_LAG = Gauge(
    "facestream_consumer_lag",
    "Messages not yet consumed by the service's consumer group, per topic.",
    ["service", "topic"],
)
EVENTS = Counter("facestream_events_total", "Recognition events published, by type.", ["type"])
SNAPSHOTS = Counter("facestream_snapshots_total", "Event snapshots written to the snapshot store.")
CAMERA_FRAMES_CAPTURED = Counter(
    "facestream_camera_frames_captured_total", "Frames read from a camera.", ["camera"]
)
CAMERA_FRAMES_PUBLISHED = Counter(
    "facestream_camera_frames_published_total", "Frames published for a camera.", ["camera"]
)
CAMERA_FRAMES_DROPPED = Counter(
    "facestream_camera_frames_dropped_total",
    "Captured frames not published, by reason (pacing, decode, frozen, encode, publish).",
    ["camera", "reason"],
)
CAMERA_RECONNECTS = Counter(
    "facestream_camera_reconnects_total",
    "Camera reconnect attempts, by the reason the stream was dropped.",
    ["camera", "reason"],
)
CAMERA_FPS = Gauge(
    "facestream_camera_fps", "Published frames per second, per camera (moving average).", ["camera"]
)
CAMERA_UP = Gauge("facestream_camera_up", "1 while a camera delivers frames, else 0.", ["camera"])
STYLIZER_FRAMES = Counter(
    "facestream_stylizer_frames_total",
    "Frames seen by the stylizer, per camera, by outcome (styled, unstyled, dropped_stale).",
    ["camera", "outcome"],
)
STYLIZER_LATENCY = Histogram(
    "facestream_stylizer_latency_seconds",
    "Capture to styled frame ready to publish.",
    buckets=LATENCY_BUCKETS,
)

LIVENESS_WINDOWS = Counter(
    "facestream_liveness_windows_total",
    "Track windows judged by the liveness model, by the track's state after it "
    "(pending, live, attack).",
    ["verdict"],
)
LIVENESS_FACES_SKIPPED = Counter(
    "facestream_liveness_faces_skipped_total",
    "Faces the liveness service did not judge, by reason (no_track, no_context, camera_off, "
    "tracked: carried by optical flow, not detected; no_eye_ratio: a camera requires a blink "
    "but the detector sent no eye aspect ratio, so the track cannot be named).",
    ["reason"],
)
LIVENESS_MODEL_SECONDS = Histogram(
    "facestream_liveness_model_seconds",
    "Time of one call of the liveness model (all windows due in a poll).",
    buckets=LATENCY_BUCKETS,
)

DETECTOR_FRAMES = Counter(
    "facestream_detector_frames_total",
    "Frames the detector handled, by what it did (detected; refined: young faces carried by "
    "optical flow and measured again by the detector's last stage; tracked: faces carried by "
    "flow; gated: no motion and no faces, nothing run) and why (services/detector/schedule.py).",
    ["decision", "reason"],
)
RECOGNIZER_FACES = Counter(
    "facestream_recognizer_faces_total",
    "Faces the recognizer handled, by outcome (encoded; skipped: a decided track between its "
    "periodic encodings; reassociated: a new track joined a lost one of the same person).",
    ["outcome"],
)

METRIC_NAMES = frozenset(
    {
        "facestream_detector_frames_total",
        "facestream_recognizer_faces_total",
        "facestream_frames_in_total",
        "facestream_frames_out_total",
        "facestream_processing_seconds_bucket",
        "facestream_processing_seconds_count",
        "facestream_processing_seconds_sum",
        "facestream_errors_total",
        "facestream_dead_letters_total",
        "facestream_consumer_lag",
        "facestream_events_total",
        "facestream_camera_frames_captured_total",
        "facestream_camera_frames_published_total",
        "facestream_camera_frames_dropped_total",
        "facestream_camera_reconnects_total",
        "facestream_camera_fps",
        "facestream_camera_up",
        "facestream_stylizer_frames_total",
        "facestream_stylizer_latency_seconds_bucket",
        "facestream_stylizer_latency_seconds_count",
        "facestream_stylizer_latency_seconds_sum",
        "facestream_liveness_windows_total",
        "facestream_liveness_faces_skipped_total",
        "facestream_liveness_model_seconds_bucket",
        "facestream_liveness_model_seconds_count",
        "facestream_liveness_model_seconds_sum",
    }
)
"""Every series name the services export; the Grafana dashboard may query only these."""
