"""The one contract every per-frame worker follows: consume, process, publish, commit.

A worker only says how to turn one message into outgoing messages (``process``) and, optionally,
what to emit as time passes (``tick``, e.g. "track ended"). ``WorkerRunner`` owns everything else,
the same way for every service:

* offsets are committed only after the batch's outputs are acknowledged (at-least-once; a crash
  replays the uncommitted batch, so downstream consumers must be idempotent);
* a message the worker cannot process goes to the dead-letter topic with the reason, unchanged, and
  the loop keeps going;
* bus outages are counted and retried with capped backoff instead of crashing;
* SIGTERM/SIGINT finish the batch in hand, then close cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shared import metrics
from shared.bus.base import Bus, BusError, Message, Publisher, Subscriber
from shared.schemas import DEAD_LETTER_SCHEMA, Topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """A message a worker wants published."""

    topic: str
    value: bytes
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class Worker(ABC):
    """What a service implements; see the module docstring for what it gets for free."""

    name: str
    """Service name: metrics label, and consumer group ``facestream-<name>``."""
    topics: tuple[str, ...]

    @abstractmethod
    def process(self, message: Message) -> Iterable[Outgoing]:
        """Turn one message into outputs. Raise (ideally an error with a ``reason``) to dead-letter it."""

    def process_batch(self, messages: list[Message]) -> list[list[Outgoing] | Exception]:
        """Per message, its outputs or the exception that dead-letters it, in order.

        The default calls ``process`` for each; workers whose models run faster on batches
        (detection, encoding) override it to make one model call for the whole poll.
        """
        results: list[list[Outgoing] | Exception] = []
        for message in messages:
            try:
                results.append(list(self.process(message)))
            except Exception as error:  # noqa: BLE001 - reported per message, never fatal
                results.append(error)
        return results

    def tick(self, now: float) -> Iterable[Outgoing]:
        """Outputs due to the passage of time; called after every poll, even an empty one."""
        return ()


class BatchWorker(Worker):
    """A worker whose unit of work is the batch (one model call per poll); ``process`` delegates."""

    def process(self, message: Message) -> Iterable[Outgoing]:
        result = self.process_batch([message])[0]
        if isinstance(result, Exception):
            raise result
        return result

    @abstractmethod
    def process_batch(self, messages: list[Message]) -> list[list[Outgoing] | Exception]: ...


def dead_letter(message: Message, error: Exception, service: str) -> Outgoing:
    """The original message, unchanged, with ``dlq.*`` headers saying where it came from and why."""
    headers = dict(message.headers)
    headers.update(
        {
            "dlq.schema": DEAD_LETTER_SCHEMA,
            "dlq.reason": failure_reason(error),
            "dlq.error": str(error)[:500],
            "dlq.service": service,
            "dlq.source_topic": message.topic,
            "dlq.source_partition": str(message.partition),
            "dlq.source_offset": str(message.offset),
            "dlq.ts": repr(time.time()),
        }
    )
    return Outgoing(Topics.DEAD_LETTERS, message.value, message.key, headers)


def failure_reason(error: Exception) -> str:
    """Short, bounded label for metrics: the error's own ``reason`` or ``unexpected_error``."""
    return str(getattr(error, "reason", "unexpected_error"))


class WorkerRunner:
    """Runs one ``Worker`` against a bus until ``stop`` is set."""

    def __init__(
        self,
        worker: Worker,
        bus: Bus,
        stop: threading.Event,
        batch_size: int = 32,
        poll_timeout_s: float = 0.5,
        lag_interval_s: float = 5.0,
    ) -> None:
        self.worker = worker
        self.bus = bus
        self.stop = stop
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.lag_interval_s = lag_interval_s
        self.last_poll_ok = 0.0
        self._backoff = Backoff()

    @property
    def group(self) -> str:
        return f"facestream-{self.worker.name}"

    def healthy(self, max_silence_s: float = 60.0) -> bool:
        """True while the bus answered a poll recently."""
        return time.monotonic() - self.last_poll_ok < max_silence_s

    def run(self) -> None:
        connection = self._connect()
        if connection is None:
            return
        subscriber, publisher = connection
        next_lag = 0.0
        log.info(
            "%s consuming %s as %s", self.worker.name, ",".join(self.worker.topics), self.group
        )
        try:
            while not self.stop.is_set():
                try:
                    batch = subscriber.poll(self.poll_timeout_s, self.batch_size)
                    self.last_poll_ok = time.monotonic()
                    self._backoff.reset()
                except BusError as error:
                    self._count_bus_error("bus_poll", error)
                    continue
                outputs = self._process(batch) if batch else []
                outputs.extend(self.worker.tick(time.time()))
                if not self._publish(publisher, outputs):
                    break  # stopping with outputs unpublished: leave the batch uncommitted
                if batch:
                    try:
                        subscriber.commit()
                    except BusError as error:
                        self._count_bus_error("bus_commit", error)
                if time.monotonic() >= next_lag:
                    next_lag = time.monotonic() + self.lag_interval_s
                    self._record_lag(subscriber)
        finally:
            subscriber.close()
            publisher.close()
            log.info("%s stopped", self.worker.name)

    def _connect(self) -> tuple[Subscriber, Publisher] | None:
        """Create topics, a subscriber and a publisher, retrying while the bus is down."""
        while not self.stop.is_set():
            try:
                self.bus.ensure_topics([*self.worker.topics, Topics.DEAD_LETTERS])
                subscriber = self.bus.subscriber(self.worker.topics, self.group)
            except BusError as error:
                self._count_bus_error("bus_connect", error)
                continue
            try:
                return subscriber, self.bus.publisher()
            except BusError as error:
                subscriber.close()
                self._count_bus_error("bus_connect", error)
        return None

    def _process(self, batch: list[Message]) -> list[Outgoing]:
        name = self.worker.name
        for message in batch:
            metrics.FRAMES_IN.labels(name, message.topic).inc()
        started = time.perf_counter()
        try:
            results = self.worker.process_batch(batch)
        except Exception:  # noqa: BLE001 - a failing batch path: isolate the culprit message
            log.exception("%s: batch processing failed; processing one by one", name)
            results = Worker.process_batch(self.worker, batch)
        per_message = (time.perf_counter() - started) / len(batch)
        outputs: list[Outgoing] = []
        for message, result in zip(batch, results, strict=True):
            metrics.PROCESSING_SECONDS.labels(name).observe(per_message)
            if isinstance(result, Exception):
                outputs.append(self._dead_letter(message, result))
            else:
                outputs.extend(result)
        return outputs

    def _dead_letter(self, message: Message, error: Exception) -> Outgoing:
        name = self.worker.name
        reason = failure_reason(error)
        if reason == "unexpected_error":
            log.error(
                "%s: unexpected error on %s@%s",
                name,
                message.topic,
                message.offset,
                exc_info=(type(error), error, error.__traceback__),
            )
        else:
            log.warning("%s: dead-lettering %s@%s: %s", name, message.topic, message.offset, reason)
        metrics.ERRORS.labels(name, reason).inc()
        metrics.DEAD_LETTERS.labels(name, reason).inc()
        return dead_letter(message, error, name)

    def _publish(self, publisher: Publisher, outputs: list[Outgoing]) -> bool:
        """Publish and flush ``outputs``, retrying through bus outages; False if stopped first."""
        while outputs:
            try:
                for out in outputs:
                    publisher.publish(out.topic, out.value, out.key, out.headers)
                publisher.flush()
            except BusError as error:
                self._count_bus_error("bus_publish", error)
                if self.stop.is_set():
                    return False
                continue
            for out in outputs:
                metrics.FRAMES_OUT.labels(self.worker.name, out.topic).inc()
            return True
        return True

    def _record_lag(self, subscriber: Subscriber) -> None:
        try:
            for topic, lag in subscriber.lag().items():
                metrics.CONSUMER_LAG.labels(self.worker.name, topic).set(lag)
        except BusError as error:
            self._count_bus_error("bus_lag", error)

    def _count_bus_error(self, reason: str, error: BusError) -> None:
        metrics.ERRORS.labels(self.worker.name, reason).inc()
        log.warning("%s: %s (%s); retrying", self.worker.name, reason, error)
        self.stop.wait(self._backoff.next())


class Backoff:
    """Capped exponential backoff: initial, 2x, 4x, ... up to ``maximum`` seconds."""

    def __init__(self, initial: float = 0.5, maximum: float = 10.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.maximum, self.initial * 2**self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


def stop_on_signals(stop: threading.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT (call from the main thread), for a clean shutdown."""

    def handle(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
