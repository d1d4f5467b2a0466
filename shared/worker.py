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

Frame-derived messages also get the per-camera checks of ``shared/stream.py`` when the worker
asks for them (``stream_checks``; the stamp is read by topic, ``shared/frames.py``): capture
times outside the clock window are dead-lettered (``clock_skew``), replays are skipped, and a
frame is recorded as done only after it was processed successfully; cameras silent for
``stream.camera_idle_s`` are forgotten and the worker told (``expire``). A batch that fails as a
whole is undone (``snapshot``/``restore``) and retried one message at a time, so one bad message
costs only itself. A dead letter always fits the bus (``shared/dead_letters.py``).

Per-worker hooks, as in Frigate's processor contract: ``expire`` (a camera went silent),
``update_config`` (re-read the registry or the gallery), ``shutdown`` (last words on a clean
stop), beside ``tick``, ``published`` and ``snapshot``/``restore``. The helpers the workers
share (the per-message guard, frame decoding with its size checks) are in ``shared/frames.py``.

Over 400 lines for a reason: ``WorkerRunner``'s loop, publish retries and dead-letter paths
share one state (the batch in hand, the heartbeat, the backoff); split, they would pass it around.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable

from shared import metrics
from shared.bus.base import (
    Bus,
    BusError,
    Message,
    MessageTooLargeError,
    Outgoing,
    Publisher,
    PublishFailedError,
    Subscriber,
)
from shared.dead_letters import dead_letter, failure_reason, reference
from shared.frames import STAMPS
from shared.schemas import DEAD_LETTER_SCHEMA, Topics
from shared.stream import StreamGuard, StreamStamp

log = logging.getLogger(__name__)


class Worker(ABC):
    """What a service implements; see the module docstring for what it gets for free."""

    name: str
    """Service name: metrics label, and consumer group ``facestream-<name>``."""
    topics: tuple[str, ...]
    stream_checks: bool = False
    """Whether the runner checks this worker's messages against their camera's stream (clock
    window, replays by (camera, seq, capture time), idle cameras: ``shared/stream.py``)."""

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

    def stamp(self, message: Message) -> StreamStamp | None:
        """Where ``message`` sits in its camera's stream, for the runner's clock and replay checks.

        With ``stream_checks``, read from the message by its topic (``shared.frames.STAMPS``);
        None (no checks) otherwise. Raise (a ``ProcessingError``) to dead-letter a message that
        cannot even say that.
        """
        read = STAMPS.get(message.topic) if self.stream_checks else None
        return read(message) if read is not None else None

    def update_config(self) -> None:  # noqa: B027 - optional hook
        """Re-read what may change while running (the camera registry, the gallery); called by
        the runner on every turn of its loop, before the batch. Keep your own pace."""

    def snapshot(self) -> object | None:
        """The worker's mutable state, to undo a batch that fails as a whole; None: nothing to undo."""
        return None

    def restore(self, state: object) -> None:  # noqa: B027 - optional hook
        """Return to a state ``snapshot`` returned (called only with a non-None one)."""

    def expire(self, camera_id: str) -> Iterable[Outgoing]:
        """The camera sent nothing for ``stream.camera_idle_s``: drop its state (outputs allowed)."""
        return ()

    def published(self, outputs: list[Outgoing]) -> None:  # noqa: B027 - optional hook
        """Called once ``outputs`` are acknowledged by the bus (before the commit)."""

    def shutdown(self) -> Iterable[Outgoing]:
        """Last outputs on a clean stop (published before the final commit)."""
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
        guard: StreamGuard | None = None,
        dead_letter_headroom_bytes: int = 65_536,
    ) -> None:
        self.worker = worker
        self.bus = bus
        self.stop = stop
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.lag_interval_s = lag_interval_s
        self.guard = guard if guard is not None else StreamGuard()
        limit = getattr(bus, "max_message_bytes", None)
        self.max_dead_letter_bytes = (
            max(1024, limit - dead_letter_headroom_bytes) if limit is not None else None
        )
        self.last_poll_ok = 0.0
        self.last_beat = time.monotonic()
        """The loop's heartbeat: moves on every poll and every retry, whatever the bus does."""
        self._backoff = Backoff()
        self._subscriber: Subscriber | None = None
        self._in_hand: Counter[str] = Counter()
        self._next_lag = 0.0

    @property
    def group(self) -> str:
        return f"facestream-{self.worker.name}"

    def healthy(self, max_silence_s: float = 60.0) -> bool:
        """True while the bus answered a poll recently."""
        return time.monotonic() - self.last_poll_ok < max_silence_s

    def alive(self, max_silence_s: float = 60.0) -> bool:
        """True while the loop turns: polling, or retrying an outage (a liveness probe's question)."""
        return time.monotonic() - self.last_beat < max_silence_s

    def run(self) -> None:
        connection = self._connect()
        if connection is None:
            return
        subscriber, publisher = connection
        self._subscriber = subscriber
        log.info(
            "%s consuming %s as %s", self.worker.name, ",".join(self.worker.topics), self.group
        )
        try:
            while not self.stop.is_set():
                self.last_beat = time.monotonic()
                try:
                    batch = subscriber.poll(self.poll_timeout_s, self.batch_size)
                    self.last_poll_ok = time.monotonic()
                    self._backoff.reset()
                except BusError as error:
                    self._count_bus_error("bus_poll", error)
                    continue
                self._in_hand = Counter(m.topic for m in batch)
                self.worker.update_config()
                outputs = self._process(batch) if batch else []
                outputs.extend(self.worker.tick(time.time()))
                outputs.extend(self._expire_idle())
                if not self._publish(publisher, outputs):
                    break  # stopping with outputs unpublished: leave the batch uncommitted
                if batch:
                    try:
                        subscriber.commit()
                    except BusError as error:
                        self._count_bus_error("bus_commit", error)
                self._in_hand = Counter()
                self._record_lag_if_due()
            else:  # a clean stop: the worker's last words (e.g. ending its open tracks)
                self._publish(publisher, list(self.worker.shutdown()))
        finally:
            subscriber.close()
            publisher.close()
            log.info("%s stopped", self.worker.name)

    def _connect(self) -> tuple[Subscriber, Publisher] | None:
        """Create topics, a subscriber and a publisher, retrying while the bus is down."""
        while not self.stop.is_set():
            self.last_beat = time.monotonic()
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
        results = self._checked_and_processed(batch)
        per_message = (time.perf_counter() - started) / len(batch)
        outputs: list[Outgoing] = []
        for message, result in zip(batch, results, strict=True):
            metrics.PROCESSING_SECONDS.labels(name).observe(per_message)
            if isinstance(result, Exception):
                outputs.append(self._dead_letter(message, result))
            else:
                outputs.extend(result)
        return outputs

    def _checked_and_processed(self, batch: list[Message]) -> list[list[Outgoing] | Exception]:
        """Stream checks, processing, and recording of the frames that succeeded.

        A second copy of a frame within the batch waits for the first: it is a replay if the first
        succeeded, and is processed in its place if the first failed.
        """
        results, stamps, later = self._checked(batch)
        todo = [i for i, result in enumerate(results) if result is None and i not in later]
        if todo:
            processed = self._process_guarded([batch[i] for i in todo])
            for i, result in zip(todo, processed, strict=True):
                results[i] = result
        now = time.time()
        for i in todo:
            stamp = stamps[i]
            if stamp is not None and not isinstance(results[i], Exception):
                self.guard.record(stamp, now)
        if later:
            again = self._checked_and_processed([batch[i] for i in later])
            for i, result in zip(later, again, strict=True):
                results[i] = result
        return results  # type: ignore[return-value]  # every slot is filled above

    def _checked(
        self, batch: list[Message]
    ) -> tuple[list[list[Outgoing] | Exception | None], list[StreamStamp | None], list[int]]:
        """Clock window and replays before any processing: None marks the messages to process;
        the positions of second copies of a frame in the batch come last."""
        now = time.time()
        results: list[list[Outgoing] | Exception | None] = [None] * len(batch)
        stamps: list[StreamStamp | None] = [None] * len(batch)
        in_batch: set[tuple[str, tuple[int | None, float]]] = set()
        later: list[int] = []
        for i, message in enumerate(batch):
            try:
                stamp = self.worker.stamp(message)
                if stamp is None:
                    continue
                self.guard.check_clock(stamp, now)
            except Exception as error:  # noqa: BLE001 - dead-lettered with its reason
                results[i] = error
                continue
            key = (stamp.camera_id, stamp.key)
            if self.guard.is_replay(stamp):
                metrics.ERRORS.labels(self.worker.name, "replay").inc()
                results[i] = []  # already processed (at-least-once redelivery): nothing to redo
                continue
            if stamp.dedupe and key in in_batch:
                later.append(i)
                continue
            in_batch.add(key)
            stamps[i] = stamp
        return results, stamps, later

    def _process_guarded(self, batch: list[Message]) -> list[list[Outgoing] | Exception]:
        """``process_batch``; if it fails as a whole, undo it and go one message at a time."""
        state = self.worker.snapshot()
        try:
            return self.worker.process_batch(batch)
        except Exception:  # noqa: BLE001 - a failing batch path: isolate the culprit message
            log.exception("%s: batch processing failed; processing one by one", self.worker.name)
            metrics.ERRORS.labels(self.worker.name, "batch_fallback").inc()
        if state is not None:
            self.worker.restore(state)
        results: list[list[Outgoing] | Exception] = []
        for message in batch:
            state = self.worker.snapshot()
            try:
                results.append(list(self.worker.process(message)))
            except Exception as error:  # noqa: BLE001 - reported per message, never fatal
                if state is not None:
                    self.worker.restore(state)  # the failed message leaves nothing behind
                results.append(error)
        return results

    def _expire_idle(self) -> list[Outgoing]:
        outputs: list[Outgoing] = []
        for camera_id in self.guard.idle(time.time()):
            outputs.extend(self.worker.expire(camera_id))
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
        return dead_letter(message, error, name, self.max_dead_letter_bytes)

    def _publish(self, publisher: Publisher, outputs: list[Outgoing]) -> bool:
        """Publish and flush ``outputs``, retrying through bus outages; False if stopped first.

        A message the bus refuses for its size is never sent again as is: it is replaced by a
        dead letter that references it (``message_too_large``).
        """
        pending = list(outputs)
        while pending:
            flushing = False
            try:
                for i, out in enumerate(pending):
                    try:
                        publisher.publish(out.topic, out.value, out.key, out.headers)
                    except MessageTooLargeError as error:
                        pending[i] = self._too_large(out, error)
                        publisher.publish(
                            pending[i].topic, pending[i].value, pending[i].key, pending[i].headers
                        )
                flushing = True
                publisher.flush()
            except PublishFailedError as error:
                again = sorted({*error.failed, *error.too_large})
                done = [out for i, out in enumerate(pending) if i not in set(again)]
                self._published(done)
                too_large = set(error.too_large)
                pending = [
                    self._too_large(pending[i], error) if i in too_large else pending[i]
                    for i in again
                ]
                if error.failed:
                    self._count_bus_error("bus_publish", error)
                    if self.stop.is_set():
                        return False
                continue
            except BusError as error:
                if not flushing:  # a later flush must report positions of one round only
                    _drain(publisher)
                self._count_bus_error("bus_publish", error)
                if self.stop.is_set():
                    return False
                continue
            self._published(pending)
            return True
        return True

    def _published(self, outputs: list[Outgoing]) -> None:
        for out in outputs:
            metrics.FRAMES_OUT.labels(self.worker.name, out.topic).inc()
        if outputs:
            self.worker.published(outputs)

    def _too_large(self, out: Outgoing, error: Exception) -> Outgoing:
        """A reference dead letter in place of ``out``, which the bus refused for its size."""
        name = self.worker.name
        log.warning(
            "%s: %s message of %d bytes refused for its size", name, out.topic, len(out.value)
        )
        metrics.ERRORS.labels(name, "message_too_large").inc()
        if out.topic == Topics.DEAD_LETTERS:  # a dead letter of a large original: keep its reason
            dlq = {k: v for k, v in out.headers.items() if k.startswith("dlq.")}
            source = out.headers.get("dlq.source_topic", out.topic)
            original = {k: v for k, v in out.headers.items() if not k.startswith("dlq.")}
            ref = reference(source, out.value, out.key, original, dlq)
            body = json.loads(ref.value)
            body["source_partition"] = _int(dlq.get("dlq.source_partition"))
            body["source_offset"] = _int(dlq.get("dlq.source_offset"))
            return Outgoing(ref.topic, json.dumps(body).encode(), ref.key, ref.headers)
        metrics.DEAD_LETTERS.labels(name, "message_too_large").inc()
        dlq = {
            "dlq.schema": DEAD_LETTER_SCHEMA,
            "dlq.reason": "message_too_large",
            "dlq.error": str(error)[:500],
            "dlq.service": name,
            "dlq.target_topic": out.topic,
            "dlq.ts": repr(time.time()),
        }
        return reference(out.topic, out.value, out.key, out.headers, dlq)

    def _record_lag_if_due(self) -> None:
        """Consumer lag, including the batch in hand while it is not committed."""
        if self._subscriber is None or time.monotonic() < self._next_lag:
            return
        self._next_lag = time.monotonic() + self.lag_interval_s
        try:
            lag = self._subscriber.lag()
        except BusError as error:
            metrics.ERRORS.labels(self.worker.name, "bus_lag").inc()
            log.warning("%s: lag unavailable (%s)", self.worker.name, error)
            return
        for topic in set(lag) | set(self._in_hand):
            metrics.CONSUMER_LAG.labels(self.worker.name, topic).set(
                lag.get(topic, 0) + self._in_hand.get(topic, 0)
            )

    def _count_bus_error(self, reason: str, error: BusError) -> None:
        metrics.ERRORS.labels(self.worker.name, reason).inc()
        log.warning("%s: %s (%s); retrying", self.worker.name, reason, error)
        deadline = time.monotonic() + self._backoff.next()
        while not self.stop.is_set():  # keep the heartbeat and the lag moving while waiting
            self.last_beat = time.monotonic()
            self._record_lag_if_due()
            left = deadline - time.monotonic()
            if left <= 0 or self.stop.wait(min(left, 1.0)):
                break


def _drain(publisher: Publisher) -> None:
    """Settle whatever an interrupted round left queued (it is all sent again anyway)."""
    with contextlib.suppress(BusError):
        publisher.flush()


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


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
