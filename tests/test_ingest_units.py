"""Pacing, source handling, the frozen-stream detector and the undecodable-stream watchdog."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from services.ingestor.camera import CameraReader, FrozenStreamDetector
from services.ingestor.pacer import Pacer
from services.ingestor.source import Source, SourceError, open_capture, probe
from shared.bus.memory import MemoryBus
from shared.cameras import CameraSpec
from shared.images import fit_width
from shared.settings import IngestSettings
from tests.helpers import sample


def test_pacer_halves_a_29_97_fps_source_to_15_fps() -> None:
    pacer = Pacer(15)
    timestamps = [i / 29.97 for i in range(300)]  # ten seconds of source frames
    kept = [ts for ts in timestamps if pacer.admit(ts)]
    assert len(kept) == 150
    gaps = np.diff(kept)
    assert gaps.min() > 1 / 15 - 0.002 and gaps.max() < 2 / 29.97 + 0.002


def test_pacer_keeps_every_frame_of_a_slower_source() -> None:
    pacer = Pacer(15)
    assert all(pacer.admit(i / 10) for i in range(50))


def test_pacer_does_not_burst_after_a_stall() -> None:
    pacer = Pacer(10)
    assert pacer.admit(0.0)
    assert pacer.admit(5.0)  # five seconds without frames
    assert not pacer.admit(5.05)  # no catch-up burst
    assert pacer.admit(5.1)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("rtsp://cam.local/stream", "stream"),
        ("0", "device"),
        ("/videos/door.mp4", "file"),
    ],
)
def test_sources_are_classified(url: str, kind: str) -> None:
    source = Source(url)
    assert (source.is_stream, source.device_index is not None, source.is_file) == (
        kind == "stream",
        kind == "device",
        kind == "file",
    )
    assert source.live == (kind != "file")


def test_credentials_are_hidden_in_displayed_urls() -> None:
    source = Source("rtsp://admin:secret@10.0.0.5:554/stream1")
    assert source.display() == "rtsp://***@10.0.0.5:554/stream1"


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such video file") as error:
        open_capture(Source(str(tmp_path / "nope.mp4")), 1, 1)
    assert error.value.reason == "not_found"


def test_a_file_that_is_not_a_video_is_a_clear_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    with pytest.raises(SourceError, match="not a readable video"):
        probe(Source(str(text)))


def test_an_unreachable_stream_fails_within_its_open_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(SourceError, match="unreachable"):
        open_capture(Source("rtsp://127.0.0.1:9/none"), open_timeout_s=2, read_timeout_s=2)
    assert time.monotonic() - started < 10


def test_frozen_stream_is_flagged_only_after_the_timeout() -> None:
    detector = FrozenStreamDetector(timeout_s=2.0)
    still = np.zeros((36, 64, 3), np.uint8)
    assert not detector.frozen(still, 0.0)
    assert not detector.frozen(still, 1.9)
    assert detector.frozen(still, 2.1)
    noisy = still.copy()
    noisy[0, 0] = 255
    assert not detector.frozen(noisy, 2.2)  # any change restarts the clock


@pytest.mark.parametrize(
    ("size", "max_width", "expected"),
    [
        ((1920, 1080), 1280, (1280, 720)),  # 1.5x: bilinear only
        ((1920, 1080), 960, (960, 540)),  # a whole factor: area averaging only
        ((3840, 2160), 1000, (1000, 562)),  # 3x by area, then 1.28x bilinear
        ((1281, 721), 640, (640, 360)),  # the last column and row that fill no block are dropped
    ],
)
def test_wide_frames_are_scaled_to_the_max_width_with_their_aspect(
    size: tuple[int, int], max_width: int, expected: tuple[int, int]
) -> None:
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    scaled = fit_width(frame, max_width)
    assert (scaled.shape[1], scaled.shape[0]) == expected
    assert scaled.dtype == np.uint8 and scaled.shape[2] == 3


def test_frames_within_the_max_width_are_not_touched() -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    assert fit_width(frame, 640) is frame
    assert fit_width(frame, None) is frame


def test_scaling_down_averages_fine_detail_instead_of_aliasing_it() -> None:
    """One-pixel stripes (a moire-prone pattern, e.g. a screen's pixel grid) must turn grey, not
    into coarser stripes: what the detector and liveness cues see is the scene, not an artefact."""
    stripes = np.zeros((1080, 1920, 3), np.uint8)
    stripes[:, ::2] = 255
    for max_width in (960, 1280, 700):
        scaled = fit_width(stripes, max_width).astype(float)
        assert abs(scaled.mean() - 127.5) < 3
        assert scaled[:, 2:-2].std() < 40, max_width


class _UndecodableCapture:
    """Packets arrive (``grab`` succeeds) but no picture ever decodes (``retrieve`` fails)."""

    def grab(self) -> bool:
        time.sleep(0.01)
        return True

    def get(self, _prop: int) -> float:
        return 0.0

    def retrieve(self) -> tuple[bool, None]:
        return False, None

    def release(self) -> None:
        pass


def test_a_stream_whose_frames_never_decode_is_reconnected_not_left_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[float] = []

    def fake_open(*_args: object) -> _UndecodableCapture:
        opened.append(time.monotonic())
        return _UndecodableCapture()

    monkeypatch.setattr("services.ingestor.camera.open_capture", fake_open)
    settings = IngestSettings(read_timeout_s=0.3, backoff_initial_s=0.05)
    camera = CameraSpec(id="undecodable", url="rtsp://127.0.0.1:9/cam")
    reader = CameraReader(camera, MemoryBus().publisher(), settings)
    states: set[str] = set()
    reader.start()
    try:
        deadline = time.monotonic() + 5
        while len(opened) < 3 and time.monotonic() < deadline:
            states.add(reader.state)
            time.sleep(0.01)
    finally:
        reader.stop()
        reader.join(5)
    assert len(opened) >= 3, "the reader kept reading a stream with no picture"
    assert "up" not in states and reader.published == 0
    reconnects = sample(
        "facestream_camera_reconnects_total", camera="undecodable", reason="undecodable"
    )
    assert reconnects >= 2
    assert (
        sample("facestream_camera_frames_dropped_total", camera="undecodable", reason="decode") > 0
    )
