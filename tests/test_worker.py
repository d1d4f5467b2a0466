"""The worker contract, exercised through the detector service on the in-memory bus."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import numpy as np
import pytest

from services.detector.worker import DetectorWorker
from shared.bus.base import BusError, Message
from shared.bus.memory import MemoryBus, MemoryPublisher
from shared.face.detection import HaarCascadeDetector
from shared.images import encode_jpeg
from shared.schemas import FacesMessage, FrameMeta, Topics
from shared.worker import Outgoing, Worker, WorkerRunner
from tests.helpers import sample


def frame(seq: int, width: int = 64, height: int = 48) -> tuple[bytes, dict[str, str]]:
    image = np.full((height, width, 3), 128, np.uint8)
    meta = FrameMeta(camera_id="cam", seq=seq, capture_ts=time.time(), width=width, height=height)
    return encode_jpeg(image), meta.to_headers()


def run_until(runner: WorkerRunner, condition, timeout_s: float = 20.0) -> None:
    thread = threading.Thread(target=runner.run)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop.set()
        thread.join(10)
    assert not thread.is_alive()


def read_all(bus: MemoryBus, topic: str) -> list[Message]:
    subscriber = bus.subscriber([topic], f"reader-{time.monotonic_ns()}")
    messages = subscriber.poll(0)
    subscriber.close()
    return messages


@pytest.fixture
def detector_runner() -> tuple[MemoryBus, WorkerRunner]:
    bus = MemoryBus()
    return bus, WorkerRunner(DetectorWorker(HaarCascadeDetector()), bus, threading.Event())


def test_bad_messages_go_to_dead_letters_and_the_worker_keeps_going(detector_runner) -> None:
    bus, runner = detector_runner
    publisher = bus.publisher()
    good, headers = frame(0)
    bad_inputs = {
        "corrupt_image": (b"\xff\xd8 not really a jpeg", frame(1)[1]),
        "missing_header": (good, {"schema": "frame/1", "camera_id": "cam"}),
        "unsupported_schema": (good, {**frame(3)[1], "schema": "frame/99"}),
        "size_mismatch": (good, {**frame(4, width=10)[1]}),
    }
    for value, hdrs in bad_inputs.values():
        publisher.publish(Topics.FRAMES, value, "cam", hdrs)
    publisher.publish(Topics.FRAMES, good, "cam", frame(5)[1])
    before = sample("facestream_dead_letters_total", service="detector", reason="corrupt_image")

    run_until(runner, lambda: len(read_all(bus, Topics.FACES)) == 1)

    dead = read_all(bus, Topics.DEAD_LETTERS)
    reasons = [m.headers["dlq.reason"] for m in dead]
    # A frame whose size disagrees with its headers is corrupt too.
    assert reasons == ["corrupt_image", "missing_header", "unsupported_schema", "corrupt_image"]
    assert dead[0].value == b"\xff\xd8 not really a jpeg"  # the original, unchanged
    assert dead[0].headers["dlq.source_topic"] == Topics.FRAMES
    assert dead[0].headers["camera_id"] == "cam"
    [faces] = read_all(bus, Topics.FACES)
    assert FacesMessage.from_message(faces).seq == 5
    assert (
        sample("facestream_dead_letters_total", service="detector", reason="corrupt_image")
        == before + 2
    )


def test_offsets_are_committed_after_the_outputs_are_published(detector_runner) -> None:
    bus, runner = detector_runner
    publisher = bus.publisher()
    for seq in range(3):
        publisher.publish(Topics.FRAMES, *frame(seq)[:1], key="cam", headers=frame(seq)[1])
    run_until(runner, lambda: len(read_all(bus, Topics.FACES)) == 3)
    # A second run of the same group starts after the committed frames: nothing is redone.
    again = WorkerRunner(DetectorWorker(HaarCascadeDetector()), bus, threading.Event())
    run_until(again, lambda: False, timeout_s=1.0)
    assert len(read_all(bus, Topics.FACES)) == 3


class FlakyPublisher(MemoryPublisher):
    """Fails the first ``failures`` flushes, like a broker that is restarting."""

    def __init__(self, bus: MemoryBus, failures: int) -> None:
        super().__init__(bus)
        self.failures = failures
        self.queued: list[tuple] = []

    def publish(self, topic, value, key=None, headers=None) -> None:
        self.queued.append((topic, value, key, headers))

    def flush(self, timeout_s: float = 30.0) -> None:
        queued, self.queued = self.queued, []
        if self.failures > 0:
            self.failures -= 1
            raise BusError("broker unavailable")
        for item in queued:
            super().publish(*item)


class Echo(Worker):
    name = "echo"
    topics = ("in",)

    def process(self, message: Message) -> Iterable[Outgoing]:
        yield Outgoing("out", message.value, message.key)


def test_publish_failures_are_retried_and_counted_not_lost() -> None:
    bus = MemoryBus()
    bus.publisher().publish("in", b"x", "k")
    flaky = FlakyPublisher(bus, failures=2)
    bus.publisher = lambda: flaky  # type: ignore[method-assign]
    runner = WorkerRunner(Echo(), bus, threading.Event())
    runner._backoff.initial = 0.01
    before = sample("facestream_errors_total", service="echo", reason="bus_publish")
    run_until(runner, lambda: len(read_all(bus, "out")) == 1)
    assert [m.value for m in read_all(bus, "out")] == [b"x"]
    assert sample("facestream_errors_total", service="echo", reason="bus_publish") == before + 2


def test_stopping_with_unpublished_outputs_leaves_the_batch_uncommitted() -> None:
    bus = MemoryBus()
    bus.publisher().publish("in", b"x", "k")
    flaky = FlakyPublisher(bus, failures=10**6)
    bus.publisher = lambda: flaky  # type: ignore[method-assign]
    runner = WorkerRunner(Echo(), bus, threading.Event())
    run_until(runner, lambda: flaky.failures < 10**6, timeout_s=5)
    subscriber = bus.subscriber(["in"], runner.group)
    assert [m.value for m in subscriber.poll(0)] == [b"x"]  # delivered again on restart
