"""The stylizer service: which frames it paints, with what, and what it does with bad input."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from services.stylizer.worker import StylizerWorker
from shared.bus.base import Message
from shared.bus.memory import MemoryBus
from shared.cameras import CameraSpec, FileCameraRegistry
from shared.errors import ProcessingError
from shared.images import decode_image, encode_jpeg
from shared.schemas import STYLED_FRAME_SCHEMA, FrameMeta, Topics
from shared.style.fast import load_network
from shared.worker import WorkerRunner

NOW = 1_800_000_000.0


def frame(camera: str, seq: int, age_s: float = 0.1, size: tuple[int, int] = (64, 48)) -> Message:
    width, height = size
    pixels = np.random.default_rng(seq).integers(0, 256, (height, width, 3), dtype=np.uint8)
    meta = FrameMeta(camera_id=camera, seq=seq, capture_ts=NOW - age_s, width=width, height=height)
    return Message(Topics.FRAMES, encode_jpeg(pixels), camera, meta.to_headers())


@pytest.fixture
def registry(tmp_path: Path) -> FileCameraRegistry:
    registry = FileCameraRegistry(tmp_path / "cameras.json")
    registry.put(CameraSpec(id="styled", url="a.mp4", style="starry_night"))
    registry.put(CameraSpec(id="plain", url="b.mp4"))
    return registry


@pytest.fixture
def worker(registry: FileCameraRegistry) -> StylizerWorker:
    return StylizerWorker(registry, load_network, registry_poll_s=0.0, clock=lambda: NOW)


def test_only_cameras_with_a_style_are_painted(worker: StylizerWorker) -> None:
    results = worker.process_batch([frame("styled", 1), frame("plain", 2), frame("styled", 3)])
    assert [len(r) for r in results] == [1, 0, 1]
    for result, seq in ((results[0][0], 1), (results[2][0], 3)):
        assert result.topic == Topics.STYLED_FRAMES and result.key == "styled"
        meta = FrameMeta.from_message(
            Message(result.topic, result.value, result.key, result.headers), STYLED_FRAME_SCHEMA
        )
        assert meta.seq == seq and meta.style == "starry_night" and meta.capture_ts == NOW - 0.1
        assert decode_image(result.value).shape == (48, 64, 3)


def test_the_painting_is_the_networks(worker: StylizerWorker) -> None:
    message = frame("styled", 1, size=(64, 64))
    published = worker.process_batch([message])[0][0].value
    expected = load_network("starry_night").stylize(decode_image(message.value)[..., ::-1])
    assert published == encode_jpeg(np.ascontiguousarray(expected[..., ::-1]))


def test_the_style_switches_at_run_time(
    worker: StylizerWorker, registry: FileCameraRegistry
) -> None:
    assert worker.process_batch([frame("styled", 1)])[0][0].headers["style"] == "starry_night"
    registry.put(CameraSpec(id="styled", url="a.mp4", style="great_wave"))
    assert worker.process_batch([frame("styled", 2)])[0][0].headers["style"] == "great_wave"
    registry.put(CameraSpec(id="styled", url="a.mp4"))
    assert worker.process_batch([frame("styled", 3)]) == [[]]


def test_stale_frames_are_dropped_not_queued(worker: StylizerWorker) -> None:
    results = worker.process_batch([frame("styled", 1, age_s=5.0), frame("styled", 2)])
    assert results[0] == [] and len(results[1]) == 1


def test_an_unknown_style_leaves_the_camera_unstyled(
    worker: StylizerWorker, registry: FileCameraRegistry
) -> None:
    registry.put(CameraSpec(id="styled", url="a.mp4", style="no_such_painting"))
    assert worker.process_batch([frame("styled", 1), frame("styled", 2)]) == [[], []]


def test_bad_frames_fail_alone(worker: StylizerWorker) -> None:
    good = frame("styled", 1)
    corrupt = Message(Topics.FRAMES, b"not a jpeg", "styled", good.headers)
    wrong_size = Message(
        Topics.FRAMES, frame("styled", 2, size=(32, 32)).value, "styled", good.headers
    )
    no_headers = Message(Topics.FRAMES, good.value, "styled", {})
    results = worker.process_batch([corrupt, good, wrong_size, no_headers])
    assert [getattr(r, "reason", None) for r in results] == [
        "corrupt_image",
        None,
        "corrupt_image",
        "missing_header",
    ]
    assert isinstance(results[0], ProcessingError) and len(results[1]) == 1


def test_the_runner_publishes_styled_frames_and_dead_letters_bad_ones(
    registry: FileCameraRegistry,
) -> None:
    bus = MemoryBus()
    # max_lag_s well above the network's first load and trace: on a loaded machine those alone
    # can take seconds and would drop the frames as stale (test_stale_frames_... checks that).
    worker = StylizerWorker(registry, load_network, registry_poll_s=0.0, max_lag_s=60.0)
    stop = threading.Event()
    runner = WorkerRunner(worker, bus, stop, batch_size=4, poll_timeout_s=0.05)
    out = bus.subscriber([Topics.STYLED_FRAMES, Topics.DEAD_LETTERS], "test")
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    publisher = bus.publisher()
    for seq in range(3):
        message = frame("styled", seq, age_s=NOW - time.time())  # captured now
        publisher.publish(message.topic, message.value, message.key, message.headers)
    publisher.publish(Topics.FRAMES, b"garbage", "styled", frame("styled", 9).headers)
    publisher.flush()
    received: list[Message] = []
    deadline = time.monotonic() + 30
    while len(received) < 4 and time.monotonic() < deadline:
        received += out.poll(0.2, 10)
    stop.set()
    thread.join(10)
    styled = [m for m in received if m.topic == Topics.STYLED_FRAMES]
    dead = [m for m in received if m.topic == Topics.DEAD_LETTERS]
    assert sorted(int(m.headers["seq"]) for m in styled) == [0, 1, 2]
    assert [m.headers["dlq.reason"] for m in dead] == ["corrupt_image"]
