"""Publish-to-consume latency of one frame-sized message, on a bus, in a closed loop.

One message at a time: stamp ``time.perf_counter()`` into a header just before ``publish``,
``flush`` (as the ingestor does per frame), and wait until a subscriber polling in another thread
has received it before sending the next. That isolates the bus's own latency from queueing: the
figure is what one frame pays between the ingestor and the detector when nothing is backlogged.
Sender and receiver share the process, so both stamps come from the same clock.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from shared.bus.base import Bus, BusError, Subscriber

SEQ_HEADER = "bench-seq"
SENT_HEADER = "bench-sent"
WARMUP_TIMEOUT_S = 30.0
"""The first message also waits for the consumer group to form and partitions to be assigned."""
MAX_LOST_IN_A_ROW = 3
"""A broker restart loses a message or two; more in a row means it is gone, so stop waiting."""


@dataclass
class LatencyResult:
    """Latency of ``received`` of ``sent`` messages of ``payload_bytes`` on one bus, in ms."""

    bus: str
    payload_bytes: int
    sent: int
    received: int
    mean_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    error: str | None = None


class Receiver(threading.Thread):
    """Polls a subscriber and hands (sequence number, latency in s) to the sending thread."""

    def __init__(self, subscriber: Subscriber) -> None:
        super().__init__(name="bench-receiver", daemon=True)
        self.subscriber = subscriber
        self.received: queue.Queue[tuple[int, float]] = queue.Queue()
        self.error: str | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                messages = self.subscriber.poll(timeout_s=0.1, max_messages=10)
            except BusError as error:
                self.error = str(error)
                return
            now = time.perf_counter()
            for message in messages:
                try:
                    seq = int(message.headers[SEQ_HEADER])
                    sent = float(message.headers[SENT_HEADER])
                except (KeyError, ValueError):
                    continue  # not one of ours
                self.received.put((seq, now - sent))

    def stop(self) -> None:
        self._stop_event.set()

    def wait_for(self, seq: int, timeout_s: float) -> float | None:
        """Latency of message ``seq`` in seconds, or None if it did not arrive in time."""
        deadline = time.perf_counter() + timeout_s
        while (remaining := deadline - time.perf_counter()) > 0:
            try:
                got, latency = self.received.get(timeout=remaining)
            except queue.Empty:
                return None
            if got == seq:
                return latency
        return None


class LatencyProbe:
    """One publisher, one subscriber in a fresh group on ``topic``, and the receiving thread."""

    def __init__(self, bus: Bus, topic: str, group: str, timeout_s: float) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        self._seq = itertools.count()
        self._subscriber = bus.subscriber([topic], group)
        self._receiver = Receiver(self._subscriber)
        self._receiver.start()
        self._publisher = bus.publisher()

    def round_trip(self, payload: bytes, timeout_s: float | None = None) -> float | None:
        """Publish one message and wait for it; its latency in seconds, None if lost."""
        seq = next(self._seq)
        headers = {SEQ_HEADER: str(seq), SENT_HEADER: repr(time.perf_counter())}
        self._publisher.publish(self.topic, payload, key="bench", headers=headers)
        self._publisher.flush(timeout_s=self.timeout_s)
        latency = self._receiver.wait_for(seq, timeout_s or self.timeout_s)
        if latency is None and self._receiver.error:
            raise BusError(f"receiver failed: {self._receiver.error}")
        return latency

    def warm_up(self, count: int = 5) -> None:
        """Pay the group join, partition assignment and first metadata fetch before measuring."""
        if self.round_trip(b"warm-up", WARMUP_TIMEOUT_S) is None:
            raise BusError(f"the subscriber received nothing within {WARMUP_TIMEOUT_S:.0f} s")
        for _ in range(count - 1):
            self.round_trip(b"warm-up")

    def close(self) -> None:
        self._receiver.stop()
        self._receiver.join(timeout=5)
        self._subscriber.close()
        self._publisher.close()


def summarise(bus: str, size: int, sent: int, latencies: list[float]) -> LatencyResult:
    """Mean, median, 99th percentile and maximum, in milliseconds."""
    result = LatencyResult(bus=bus, payload_bytes=size, sent=sent, received=len(latencies))
    if latencies:
        ms = np.asarray(latencies) * 1000.0
        result.mean_ms = float(ms.mean())
        result.p50_ms = float(np.percentile(ms, 50))
        result.p99_ms = float(np.percentile(ms, 99))
        result.max_ms = float(ms.max())
    return result


def _send(probe: LatencyProbe, payload: bytes, messages: int) -> list[float]:
    """Latencies of the messages that arrived; a lost one is skipped, a run of them aborts."""
    received: list[float] = []
    lost_in_a_row = 0
    for _ in range(messages):
        try:
            latency = probe.round_trip(payload)
        except BusError as error:
            latency, last_error = None, str(error)
        else:
            last_error = "not received in time"
        if latency is not None:
            received.append(latency)
            lost_in_a_row = 0
            continue
        lost_in_a_row += 1
        if lost_in_a_row >= MAX_LOST_IN_A_ROW:
            raise BusError(f"{lost_in_a_row} messages in a row lost, last: {last_error}")
    return received


def measure(
    bus: Bus,
    name: str,
    topic: str,
    group: str,
    sizes: list[int],
    messages: int,
    timeout_s: float = 10.0,
) -> list[LatencyResult]:
    """Latency of ``messages`` random-byte payloads of each size (random: JPEG-like entropy)."""
    rng = np.random.default_rng(0)
    probe = LatencyProbe(bus, topic, group, timeout_s)
    try:
        probe.warm_up()
        results = []
        for size in sizes:
            payload = rng.bytes(size)
            received = _send(probe, payload, messages)
            results.append(summarise(name, size, messages, received))
        return results
    finally:
        probe.close()
