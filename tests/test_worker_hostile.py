"""The worker contract under hostile messages and faults (issue 13), on both buses.

A stateful worker counts frames per camera the way the real services keep per-camera state; each
test sends the attack, then a clean run, and checks that the clean run's outputs are exactly those
of a run without the attack and that the bad message is in the dead-letter topic with its reason.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable

import pytest

from shared import metrics
from shared.bus.base import Bus, Message
from shared.bus.memory import MemoryBus
from shared.errors import ProcessingError
from shared.schemas import Topics
from shared.stream import StreamGuard, StreamStamp
from shared.worker import BatchWorker, Outgoing, WorkerRunner
from tests.helpers import sample


class Counting(BatchWorker):
    """Counts frames per camera (its state), fails the whole batch on a ``boom`` frame."""

    name = "counting"

    def __init__(self, topic: str) -> None:
        self.topics = (topic,)
        self.out = f"{topic}.out"
        self.counts: dict[str, int] = {}
        self.expired: list[str] = []

    def stamp(self, message: Message) -> StreamStamp:
        try:
            h = message.headers
            return StreamStamp(h["camera_id"], float(h["capture_ts"]), int(h["seq"]))
        except (KeyError, ValueError):
            raise ProcessingError("missing_header", "camera_id, seq, capture_ts") from None

    def snapshot(self) -> object:
        return dict(self.counts)

    def restore(self, state: object) -> None:
        self.counts = dict(state)  # type: ignore[call-overload]

    def expire(self, camera_id: str) -> Iterable[Outgoing]:
        self.expired.append(camera_id)
        self.counts.pop(camera_id, None)
        return ()

    def process_batch(self, messages: list[Message]) -> list[list[Outgoing] | Exception]:
        outputs = []
        for message in messages:  # state changes first, like a batched model service
            camera = message.headers["camera_id"]
            self.counts[camera] = self.counts.get(camera, 0) + 1
            outputs.append([Outgoing(self.out, f"{camera}:{self.counts[camera]}".encode(), camera)])
        if any(m.value == b"boom" for m in messages):
            raise ValueError("a chip of the wrong size")  # np.concatenate of the whole poll
        return outputs


def frame(camera: str, seq: int, ts: float | None = None, value: bytes = b"ok") -> tuple:
    ts = time.time() if ts is None else ts
    return value, camera, {"camera_id": camera, "seq": str(seq), "capture_ts": repr(ts)}


def publish(bus: Bus, topic: str, frames: list[tuple]) -> None:
    publisher = bus.publisher()
    for value, key, headers in frames:
        publisher.publish(topic, value, key, headers)
    publisher.flush()
    publisher.close()


def read(
    bus: Bus, topic: str, at_least: int, timeout_s: float = 30.0, where=lambda m: True
) -> list[Message]:
    """The messages of ``topic`` (from its start) that satisfy ``where``."""
    subscriber = bus.subscriber([topic], f"reader-{time.monotonic_ns()}")
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(messages) < at_least and time.monotonic() < deadline:
        messages += [m for m in subscriber.poll(0.5, 1000) if where(m)]
    subscriber.close()
    return messages


def dead_letters(bus: Bus, source_topic: str, at_least: int = 1, **kwargs) -> list[Message]:
    return read(
        bus,
        Topics.DEAD_LETTERS,
        at_least,
        where=lambda m: m.headers.get("dlq.source_topic") == source_topic,
        **kwargs,
    )


def run(runner: WorkerRunner, until, timeout_s: float = 30.0) -> None:
    thread = threading.Thread(target=runner.run)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not until() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop.set()
        thread.join(15)
    assert not thread.is_alive()


def clean(camera: str, first_seq: int, n: int = 5) -> list[tuple]:
    return [frame(camera, seq) for seq in range(first_seq, first_seq + n)]


def test_a_future_capture_time_is_dead_lettered_and_the_next_clip_is_unaffected(
    bus: Bus, unique: str
) -> None:
    topic, camera = f"hostile-skew-{unique}", "cam"
    worker = Counting(topic)
    runner = WorkerRunner(worker, bus, threading.Event())
    future = frame(camera, 10_000, ts=time.time() + 3600)  # a camera clock jumped an hour
    past = frame(camera, 10_001, ts=time.time() - 3 * 86_400)
    publish(bus, topic, [*clean(camera, 0), future, past, *clean(camera, 5)])
    run(runner, lambda: worker.counts.get(camera) == 10)

    values = [m.value for m in read(bus, worker.out, 10)]
    assert values == [f"{camera}:{i}".encode() for i in range(1, 11)]  # as without the attack
    mine = dead_letters(bus, topic, 2)
    assert [m.headers["dlq.reason"] for m in mine] == ["clock_skew", "clock_skew"]
    assert [m.headers["seq"] for m in mine] == ["10000", "10001"]


def test_a_failed_batch_is_undone_and_retried_one_by_one(bus: Bus, unique: str) -> None:
    topic, camera = f"hostile-batch-{unique}", "cam"
    worker = Counting(topic)
    runner = WorkerRunner(worker, bus, threading.Event(), batch_size=32)
    bad = frame(camera, 3, value=b"boom")
    publish(bus, topic, [*clean(camera, 0, 3), bad, *clean(camera, 4, 3)])
    before = sample("facestream_errors_total", service="counting", reason="batch_fallback")
    run(runner, lambda: worker.counts.get(camera) == 6)

    values = [m.value for m in read(bus, worker.out, 6)]
    assert values == [f"{camera}:{i}".encode() for i in range(1, 7)]  # none counted twice
    dead = dead_letters(bus, topic)
    assert [(m.value, m.headers["dlq.reason"]) for m in dead] == [(b"boom", "unexpected_error")]
    assert sample("facestream_errors_total", service="counting", reason="batch_fallback") > before


def test_replays_are_skipped_but_a_frame_is_recorded_only_once_processed() -> None:
    guard = StreamGuard(replay_window=16)
    stamps = [StreamStamp("cam", 1000.0 + i, i) for i in range(40)]
    assert not guard.is_replay(stamps[0])  # not recorded until processed
    for stamp in stamps:
        guard.record(stamp, now=0.0)
    assert guard.is_replay(stamps[39]) and guard.is_replay(stamps[30])  # remembered
    assert guard.is_replay(stamps[0])  # forgotten, but older than anything remembered
    assert not guard.is_replay(StreamStamp("cam", 1035.5, 99))  # a new frame in between
    guard.record(StreamStamp("cam", 5000.0, 7), now=0.0)  # a stray time hides only itself
    assert not guard.is_replay(StreamStamp("cam", 1040.0, 40))


def test_a_redelivered_batch_produces_nothing_twice() -> None:
    bus = MemoryBus()
    worker = Counting("in")
    runner = WorkerRunner(worker, bus, threading.Event())
    frames = clean("cam", 0, 4)
    publish(bus, "in", frames + frames[1:3])  # a producer retry / an upstream replay
    run(runner, lambda: len(read(bus, worker.out, 4, timeout_s=0.1)) >= 4, timeout_s=5)
    time.sleep(0.2)
    assert worker.counts == {"cam": 4}


def test_a_copy_of_a_failed_frame_in_the_same_batch_is_processed() -> None:
    """Same camera, seq and capture time: a damaged first copy must not hide the good second."""
    bus = MemoryBus()
    worker = Counting("in")
    runner = WorkerRunner(worker, bus, threading.Event())
    value, key, headers = frame("cam", 9)
    publish(bus, "in", [(b"boom", key, headers), (value, key, headers), (value, key, headers)])
    run(runner, lambda: worker.counts.get("cam") == 1, timeout_s=5)
    time.sleep(0.2)
    assert [m.value for m in read(bus, worker.out, 1, timeout_s=1)] == [b"cam:1"]
    assert [m.value for m in dead_letters(bus, "in", timeout_s=1)] == [b"boom"]


def test_silent_and_surplus_cameras_are_forgotten() -> None:
    guard = StreamGuard(camera_idle_s=60.0, max_cameras=3)
    for i in range(5):
        guard.record(StreamStamp(f"c{i}", 1.0, 0), now=100.0 + i)
    assert guard.idle(now=105.0) == ["c0", "c1"]  # the least recently seen beyond 3
    assert guard.idle(now=163.5) == ["c2", "c3"]
    assert len(guard) == 1


def test_the_runner_expires_idle_cameras_through_the_worker() -> None:
    bus = MemoryBus()
    worker = Counting("in")
    runner = WorkerRunner(worker, bus, threading.Event(), guard=StreamGuard(camera_idle_s=0.3))
    publish(bus, "in", clean("gone", 0, 2))
    run(runner, lambda: worker.expired == ["gone"], timeout_s=5)
    assert worker.expired == ["gone"] and "gone" not in worker.counts


def test_an_original_too_large_for_the_dead_letter_topic_is_referenced(
    bus: Bus, unique: str
) -> None:
    topic = f"hostile-large-{unique}"
    worker = Counting(topic)
    limit = 1_000_000 if isinstance(bus, MemoryBus) else bus.max_message_bytes
    if isinstance(bus, MemoryBus):
        bus.max_message_bytes = limit
    runner = WorkerRunner(worker, bus, threading.Event(), dead_letter_headroom_bytes=65_536)
    big = b"\xff\xd8" + bytes(limit - 20_000)  # fits the topic, but not with the dlq headers
    value, key, headers = frame("cam", 0, value=big)
    headers = {**headers, "capture_ts": "not a time", "x-long": "h" * 9000}
    publish(bus, topic, [(value, key, headers), *clean("cam", 1, 2)])
    run(runner, lambda: worker.counts.get("cam") == 2)

    dead = dead_letters(bus, topic)
    assert len(dead) == 1
    letter = dead[0]
    body = json.loads(letter.value)
    assert body["reference"] is True and body["size"] == len(big)
    assert body["sha256"] == hashlib.sha256(big).hexdigest()
    assert (body["source_topic"], body["source_offset"]) == (topic, 0)
    assert letter.headers["dlq.reason"] == "missing_header"
    assert letter.headers["dlq.truncated"] == "true"
    assert len(letter.headers["dlq.headers_preview"]) <= 2048
    assert "x-long" in json.loads(letter.headers["dlq.headers_preview"])


class Oversized(BatchWorker):
    """Turns each message into an output the bus refuses for its size."""

    name = "oversized"

    def __init__(self, topic: str, size: int, out: str | None = None) -> None:
        self.topics = (topic,)
        self.size = size
        self.out = out or f"{topic}.out"

    def process_batch(self, messages: list[Message]) -> list[list[Outgoing] | Exception]:
        return [[Outgoing(self.out, bytes(self.size), m.key)] for m in messages]


def test_a_message_too_large_for_the_bus_is_final_not_retried(bus: Bus, unique: str) -> None:
    topic = f"hostile-toolarge-{unique}"
    if isinstance(bus, MemoryBus):
        bus.max_message_bytes = 100_000
    size = (bus.max_message_bytes or 0) + 10
    runner = WorkerRunner(Oversized(topic, size), bus, threading.Event())
    publish(bus, topic, [(b"x", "cam", {})])
    retries = sample("facestream_errors_total", service="oversized", reason="bus_publish")
    found: list[Message] = []

    def referenced() -> bool:
        found[:] = read(
            bus,
            Topics.DEAD_LETTERS,
            1,
            timeout_s=2,
            where=lambda m: m.headers.get("dlq.target_topic") == f"{topic}.out",
        )
        return bool(found)

    run(runner, referenced, timeout_s=60)
    assert found and found[0].headers["dlq.reason"] == "message_too_large"
    assert json.loads(found[0].value)["size"] == size
    assert sample("facestream_errors_total", service="oversized", reason="bus_publish") == retries


def test_heartbeat_and_lag_keep_moving_while_publishing_is_retried() -> None:
    from tests.test_worker import FlakyPublisher

    bus = MemoryBus()
    publish(bus, "in", clean("cam", 0, 4))
    flaky = FlakyPublisher(bus, failures=10**6)  # from now on the bus refuses every publish
    bus.publisher = lambda: flaky  # type: ignore[method-assign]
    worker = Counting("in")
    runner = WorkerRunner(worker, bus, threading.Event(), lag_interval_s=0.1)
    runner._backoff.initial = runner._backoff.maximum = 3.0
    lag = metrics.CONSUMER_LAG.labels("counting", "in")
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        time.sleep(2.0)
        first = runner.last_beat
        for seq in range(4, 10):  # the backlog grows while the batch is stuck
            MemoryBus.append(bus, "in", b"ok", "cam", frame("cam", seq)[2])
        time.sleep(1.5)
        assert runner.alive() and runner.last_beat > first
        assert lag._value.get() >= 6  # not 0: the stuck batch and the new messages
    finally:
        runner.stop.set()
        thread.join(15)


@pytest.mark.parametrize("future_s", [3600.0, float("nan")])
def test_the_clock_window_refuses_far_and_nonsense_times(future_s: float) -> None:
    guard = StreamGuard(max_future_s=5.0, max_past_s=60.0)
    with pytest.raises(ProcessingError) as error:
        guard.check_clock(StreamStamp("cam", 1000.0 + future_s), now=1000.0)
    assert error.value.reason == "clock_skew"
    guard.check_clock(StreamStamp("cam", 1004.0), now=1000.0)  # inside: no error
    with pytest.raises(ProcessingError):
        guard.check_clock(StreamStamp("cam", 900.0), now=1000.0)


@pytest.mark.kafka
def test_a_message_the_broker_refuses_for_its_size_is_final(kafka_settings, unique: str) -> None:
    """The topic's own ``max.message.bytes`` is below the producer's limit: the broker refuses."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from shared.bus.kafka import KafkaBus, connection_options

    topic, small = f"hostile-in-{unique}", f"hostile-small-{unique}"
    admin = KafkaAdminClient(**connection_options(kafka_settings))
    admin.create_topics([NewTopic(small, 1, 1, topic_configs={"max.message.bytes": "100000"})])
    admin.close()
    bus = KafkaBus(kafka_settings)
    worker = Oversized(topic, 200_000, out=small)
    runner = WorkerRunner(worker, bus, threading.Event())
    publish(bus, topic, [(b"x", "cam", {}), (b"y", "cam", {})])
    retries = sample("facestream_errors_total", service="oversized", reason="bus_publish")
    found: list[Message] = []

    def referenced() -> bool:
        found[:] = read(
            bus,
            Topics.DEAD_LETTERS,
            2,
            timeout_s=2,
            where=lambda m: m.headers.get("dlq.target_topic") == small,
        )
        return len(found) >= 2

    run(runner, referenced, timeout_s=90)
    assert [m.headers["dlq.reason"] for m in found] == ["message_too_large"] * 2
    assert sample("facestream_errors_total", service="oversized", reason="bus_publish") == retries
