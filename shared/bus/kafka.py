"""Kafka implementation of the bus (kafka-python), for real deployments.

Producers wait for all in-sync replicas (acks=all) and raise their size limit for large frames;
consumers never auto-commit: services commit after their work is published, so a crash replays
the uncommitted messages (at-least-once). Broker restarts are absorbed by kafka-python's own
reconnects; what still fails surfaces as ``BusError`` for the caller to count and retry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)

from shared.bus.base import (
    Bus,
    BusError,
    Message,
    MessageTooLargeError,
    Publisher,
    PublishFailedError,
    Subscriber,
)
from shared.settings import KafkaSettings

TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)
"""The client's own size check and the broker's MESSAGE_TOO_LARGE: final, never retried."""

log = logging.getLogger(__name__)


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """kafka-python keyword arguments for the brokers, credentials and TLS in ``settings``."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
    }
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if (path := getattr(settings, name)) is not None:
            options[name] = str(path)
    return options


class KafkaBus(Bus):
    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.max_message_bytes = settings.max_message_bytes

    def publisher(self) -> Publisher:
        return KafkaPublisher(self.settings)

    def subscriber(self, topics: Iterable[str], group: str, latest: bool = False) -> Subscriber:
        return KafkaSubscriber(self.settings, list(topics), group, latest)

    def ensure_topics(self, topics: Iterable[str]) -> None:
        new = [
            NewTopic(
                name,
                num_partitions=self.settings.partitions,
                replication_factor=self.settings.replication_factor,
                topic_configs={"max.message.bytes": str(self.settings.max_message_bytes)},
            )
            for name in topics
        ]
        try:
            admin = KafkaAdminClient(**connection_options(self.settings))
        except KafkaError as error:
            raise BusError(f"cannot reach Kafka to create topics: {error}") from error
        try:
            existing = set(admin.list_topics())
            missing = [topic for topic in new if topic.name not in existing]
            if missing:
                admin.create_topics(missing)
        except TopicAlreadyExistsError:
            pass  # another process created them between list and create
        except KafkaError as error:
            raise BusError(f"cannot create topics: {error}") from error
        finally:
            admin.close()


class KafkaPublisher(Publisher):
    def __init__(self, settings: KafkaSettings) -> None:
        try:
            self._producer = KafkaProducer(
                **connection_options(settings),
                acks="all",
                linger_ms=5,
                retries=5,
                max_block_ms=10_000,
                max_request_size=settings.max_message_bytes,
            )
        except KafkaError as error:
            raise BusError(f"cannot connect a Kafka producer: {error}") from error
        self._pending: list[Any] = []

    def publish(
        self,
        topic: str,
        value: bytes,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        try:
            future = self._producer.send(
                topic,
                value=value,
                key=key.encode() if key is not None else None,
                headers=[(k, v.encode()) for k, v in (headers or {}).items()],
            )
        except TOO_LARGE as error:
            raise MessageTooLargeError(f"publish to {topic} refused: {error}") from error
        except KafkaError as error:
            raise BusError(f"publish to {topic} failed: {error}") from error
        self._pending.append(future)

    def flush(self, timeout_s: float = 30.0) -> None:
        pending, self._pending = self._pending, []
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as error:
            raise BusError(f"flush failed: {error}") from error
        too_large = [i for i, f in enumerate(pending) if f.is_done and _too_large(f.exception)]
        failed = [
            i
            for i, f in enumerate(pending)
            if (not f.is_done or f.failed()) and i not in set(too_large)
        ]
        if failed or too_large:
            first = pending[(failed or too_large)[0]].exception
            raise PublishFailedError(
                f"{len(failed) + len(too_large)} message(s) not acknowledged: {first}",
                failed,
                too_large,
            )

    def close(self) -> None:
        self._producer.close(timeout=5)


def _too_large(error: BaseException | None) -> bool:
    return isinstance(error, TOO_LARGE)


class KafkaSubscriber(Subscriber):
    def __init__(
        self, settings: KafkaSettings, topics: list[str], group: str, latest: bool = False
    ) -> None:
        try:
            self._consumer = KafkaConsumer(
                *topics,
                **connection_options(settings),
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="latest" if latest else "earliest",
                max_partition_fetch_bytes=settings.max_message_bytes,
                fetch_max_bytes=max(settings.max_message_bytes, 52_428_800),
                session_timeout_ms=10_000,
                heartbeat_interval_ms=3_000,
            )
        except KafkaError as error:
            raise BusError(f"cannot connect a Kafka consumer: {error}") from error

    def poll(self, timeout_s: float, max_messages: int = 100) -> list[Message]:
        try:
            records = self._consumer.poll(
                timeout_ms=int(timeout_s * 1000), max_records=max_messages
            )
        except KafkaError as error:
            raise BusError(f"poll failed: {error}") from error
        return [
            Message(
                topic=record.topic,
                value=record.value,
                key=record.key.decode(errors="replace") if record.key is not None else None,
                headers={k: v.decode(errors="replace") for k, v in record.headers or []},
                partition=record.partition,
                offset=record.offset,
            )
            for batch in records.values()
            for record in batch
        ]

    def commit(self) -> None:
        try:
            self._consumer.commit()
        except KafkaError as error:
            raise BusError(
                f"commit failed (the messages will be delivered again): {error}"
            ) from error

    def lag(self) -> dict[str, int]:
        assigned: set[TopicPartition] = self._consumer.assignment()
        if not assigned:
            return {}
        try:
            ends = self._consumer.end_offsets(list(assigned))
            lag: dict[str, int] = {}
            for tp in assigned:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(
                    0, ends[tp] - self._consumer.position(tp)
                )
            return lag
        except KafkaError as error:
            raise BusError(f"lag unavailable: {error}") from error

    def close(self) -> None:
        self._consumer.close(autocommit=False)
