"""In-memory bus: the embedded default, so the whole pipeline runs in one process with no broker.

Semantics follow Kafka where services can observe them: one ordered log per topic, absolute
offsets, consumer groups with committed offsets, redelivery of uncommitted messages to the next
subscriber of a group, and bounded retention (the oldest messages are dropped, as Kafka's retention
would). One partition per topic, so a group has one active subscriber at a time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping

from shared.bus.base import Bus, BusError, Message, MessageTooLargeError, Publisher, Subscriber


class _Log:
    """One topic: a bounded deque of messages with absolute offsets."""

    def __init__(self, name: str, retention: int) -> None:
        self.name = name
        self.messages: deque[Message] = deque(maxlen=retention)
        self.next_offset = 0

    @property
    def start_offset(self) -> int:
        return self.next_offset - len(self.messages)

    def read(self, position: int, limit: int) -> list[Message]:
        first = max(position, self.start_offset) - self.start_offset
        return [self.messages[i] for i in range(first, min(first + limit, len(self.messages)))]


class MemoryBus(Bus):
    def __init__(
        self, retention_messages: int = 10_000, max_message_bytes: int | None = None
    ) -> None:
        """``max_message_bytes``: refuse larger messages as a broker would (default: no limit)."""
        self._retention = retention_messages
        self.max_message_bytes = max_message_bytes
        self._logs: dict[str, _Log] = {}
        self._committed: dict[tuple[str, str], int] = {}
        self._active: set[tuple[str, str]] = set()
        self._changed = threading.Condition()

    def _log(self, topic: str) -> _Log:
        if topic not in self._logs:
            self._logs[topic] = _Log(topic, self._retention)
        return self._logs[topic]

    def append(self, topic: str, value: bytes, key: str | None, headers: Mapping[str, str]) -> None:
        if self.max_message_bytes is not None:
            size = len(value) + sum(len(k) + len(v.encode()) for k, v in headers.items())
            if size > self.max_message_bytes:
                raise MessageTooLargeError(
                    f"{size} bytes to {topic}, over the limit of {self.max_message_bytes}"
                )
        with self._changed:
            log = self._log(topic)
            log.messages.append(
                Message(topic, bytes(value), key, dict(headers), 0, log.next_offset)
            )
            log.next_offset += 1
            self._changed.notify_all()

    def publisher(self) -> Publisher:
        return MemoryPublisher(self)

    def subscriber(self, topics: Iterable[str], group: str, latest: bool = False) -> Subscriber:
        return MemorySubscriber(self, list(topics), group, latest)

    def ensure_topics(self, topics: Iterable[str]) -> None:
        with self._changed:
            for topic in topics:
                self._log(topic)


class MemoryPublisher(Publisher):
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus

    def publish(
        self,
        topic: str,
        value: bytes,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._bus.append(topic, value, key, headers or {})

    def flush(self, timeout_s: float = 30.0) -> None:
        """Appends are synchronous, so there is never anything left to flush."""


class MemorySubscriber(Subscriber):
    def __init__(self, bus: MemoryBus, topics: list[str], group: str, latest: bool = False) -> None:
        self._bus = bus
        self._group = group
        with bus._changed:
            claimed = {(group, topic) for topic in topics}
            if claimed & bus._active:
                raise BusError(
                    f"group {group!r} already has an active subscriber on the memory bus"
                )
            bus._active |= claimed
            start = {t: bus._log(t).next_offset if latest else 0 for t in topics}
            self._positions = {t: bus._committed.get((group, t), start[t]) for t in topics}

    def poll(self, timeout_s: float, max_messages: int = 100) -> list[Message]:
        with self._bus._changed:
            batch = self._take(max_messages)
            if not batch and timeout_s > 0:
                self._bus._changed.wait(timeout_s)
                batch = self._take(max_messages)
            return batch

    def _take(self, limit: int) -> list[Message]:
        batch: list[Message] = []
        for topic, position in self._positions.items():
            messages = self._bus._log(topic).read(position, limit - len(batch))
            if messages:
                self._positions[topic] = messages[-1].offset + 1
                batch.extend(messages)
        return batch

    def commit(self) -> None:
        with self._bus._changed:
            for topic, position in self._positions.items():
                self._bus._committed[(self._group, topic)] = position

    def lag(self) -> dict[str, int]:
        with self._bus._changed:
            return {t: self._bus._log(t).next_offset - p for t, p in self._positions.items()}

    def close(self) -> None:
        with self._bus._changed:
            self._bus._active -= {(self._group, topic) for topic in self._positions}
