"""The ingestor on the in-memory bus: sequence accounting, run-time camera changes, bad sources."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from services.ingestor.service import IngestorService
from shared.bus.memory import MemoryBus
from shared.cameras import CameraSpec, FileCameraRegistry
from shared.images import image_size
from shared.schemas import FrameMeta, Topics
from shared.settings import IngestSettings
from tests.helpers import sample, wait_for

FAST = IngestSettings(file_realtime=False, registry_poll_s=0.1, backoff_initial_s=0.1)


@pytest.fixture
def running(tmp_path: Path):
    bus = MemoryBus()
    registry = FileCameraRegistry(tmp_path / "cameras.json")
    stop = threading.Event()
    service = IngestorService(bus, registry, FAST, stop)
    thread = threading.Thread(target=service.run)
    thread.start()
    yield bus, registry, service
    stop.set()
    thread.join(15)
    assert not thread.is_alive()


def frames_of(bus: MemoryBus, camera_id: str) -> list[FrameMeta]:
    subscriber = bus.subscriber([Topics.FRAMES], f"check-{time.monotonic_ns()}")
    messages = subscriber.poll(0, 10_000)
    subscriber.close()
    return [FrameMeta.from_message(m) for m in messages if m.key == camera_id]


def test_every_sequence_number_is_published_or_counted_as_dropped(running, hamilton: Path) -> None:
    bus, registry, service = running
    registry.put(CameraSpec(id="ham-seq", url=str(hamilton), fps=15))
    wait_for(lambda: service.camera_states().get("ham-seq") == "ended")
    frames = frames_of(bus, "ham-seq")
    seqs = [f.seq for f in frames]
    assert seqs == sorted(set(seqs))  # in order, no duplicates
    dropped = sample("facestream_camera_frames_dropped_total", camera="ham-seq", reason="pacing")
    assert len(frames) + dropped == 275  # every captured frame: published or counted
    assert seqs[0] == 0 and seqs[-1] <= 274
    assert len(frames) == 138  # 29.97 fps paced to 15 fps
    assert (frames[0].width, frames[0].height) == (640, 360)


def test_cameras_are_added_and_removed_without_a_restart(running, hamilton: Path) -> None:
    bus, registry, service = running
    registry.put(CameraSpec(id="ham-loop", url=str(hamilton), loop=True, fps=30))
    wait_for(lambda: len(frames_of(bus, "ham-loop")) > 300)  # looped past the end of the file
    assert service.camera_states()["ham-loop"] == "up"
    registry.remove("ham-loop")
    wait_for(lambda: "ham-loop" not in service.camera_states())
    count = len(frames_of(bus, "ham-loop"))
    time.sleep(0.5)
    assert len(frames_of(bus, "ham-loop")) == count


def test_a_bad_camera_is_retried_with_backoff_and_others_keep_running(
    running, hamilton: Path, tmp_path: Path
) -> None:
    bus, registry, service = running
    not_video = tmp_path / "clip.mp4"
    not_video.write_bytes(b"\x00" * 4096)
    registry.put(CameraSpec(id="broken", url=str(not_video)))
    registry.put(CameraSpec(id="good", url=str(hamilton)))
    wait_for(
        lambda: (
            sample("facestream_camera_reconnects_total", camera="broken", reason="open_failed") >= 2
        )
    )
    wait_for(lambda: service.camera_states().get("good") == "ended")
    assert service.camera_states()["broken"] == "down"
    assert "not a readable video" in service.readers["broken"].last_error
    assert len(frames_of(bus, "good")) == 138


def test_a_camera_wider_than_its_max_width_is_published_scaled_down(
    running, hamilton: Path
) -> None:
    bus, registry, service = running
    registry.put(CameraSpec(id="ham-small", url=str(hamilton), fps=5, max_width=320))
    wait_for(lambda: service.camera_states().get("ham-small") == "ended")
    subscriber = bus.subscriber([Topics.FRAMES], "check-small")
    messages = [m for m in subscriber.poll(0, 10_000) if m.key == "ham-small"]
    subscriber.close()
    assert len(messages) == 46  # 29.97 fps paced to 5 fps: scaling loses no frame
    metas = {(FrameMeta.from_message(m).width, FrameMeta.from_message(m).height) for m in messages}
    assert metas == {(320, 180)}  # the aspect kept, and the headers say what the JPEG holds
    assert {image_size(m.value)[1:] for m in messages} == {(320, 180)}
