"""The publish/subscribe interface every service talks to.

Deliberately tiny: publish keyed messages with string headers, poll batches, commit after the work
is done (at-least-once), and report consumer lag. Kafka and the in-memory bus implement it, and one
contract test suite runs against both (tests/test_bus_contract.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Message:
    """One message as published or consumed. ``partition``/``offset`` are set on consumed messages."""

    topic: str
    value: bytes
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    partition: int = 0
    offset: int = -1


@dataclass(frozen=True)
class Outgoing:
    """A message to publish (what a worker returns; ``Message`` without a place in a topic)."""

    topic: str
    value: bytes
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class BusError(RuntimeError):
    """The bus is unreachable or refused an operation; transient, so callers retry."""


class MessageTooLargeError(BusError):
    """The bus refuses this message for its size: final, sending it again cannot succeed."""


class PublishFailedError(BusError):
    """Some messages queued since the last flush were not acknowledged; the others were.

    ``failed`` and ``too_large`` are positions among the messages published since the previous
    flush, so a caller resends only those (and never resends a too-large one as it is).
    """

    def __init__(self, text: str, failed: list[int], too_large: list[int]) -> None:
        super().__init__(text)
        self.failed = failed
        self.too_large = too_large


class Publisher(ABC):
    @abstractmethod
    def publish(
        self,
        topic: str,
        value: bytes,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue a message; failures surface at the latest on the next ``flush``."""

    @abstractmethod
    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every queued message is acknowledged; raise ``BusError`` if any was not."""

    def close(self) -> None:  # noqa: B027 - optional for implementations without resources
        """Release connections (after a final flush)."""


class Subscriber(ABC):
    @abstractmethod
    def poll(self, timeout_s: float, max_messages: int = 100) -> list[Message]:
        """Return the next messages (in order per key), waiting up to ``timeout_s`` for one."""

    @abstractmethod
    def commit(self) -> None:
        """Mark every message returned by ``poll`` so far as done for this consumer group."""

    @abstractmethod
    def lag(self) -> dict[str, int]:
        """Messages published but not yet consumed by this group, per topic (best effort)."""

    def close(self) -> None:  # noqa: B027 - optional for implementations without resources
        """Leave the consumer group; uncommitted messages are delivered again to the next member."""


class Bus(ABC):
    """Factory for publishers and subscribers on one broker (or one process)."""

    max_message_bytes: int | None = None
    """The largest message (value plus headers) the bus accepts; None: no limit."""

    @abstractmethod
    def publisher(self) -> Publisher: ...

    @abstractmethod
    def subscriber(self, topics: Iterable[str], group: str) -> Subscriber: ...

    @abstractmethod
    def ensure_topics(self, topics: Iterable[str]) -> None:
        """Create the topics that do not exist yet (idempotent)."""

    def close(self) -> None:  # noqa: B027 - optional for implementations without resources
        """Release the bus's own resources."""
