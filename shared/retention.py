"""How long the broker keeps each topic: part of deletion, not only of disk space.

A face chip in ``facestream.faces`` or a frame in ``facestream.frames`` is biometric data. Deleting
a person from the gallery cannot reach the copies on the bus, so the bus must forget them by
itself, soon: each topic gets a ``retention.ms`` of hours (``FACESTREAM_RETENTION__*``), set by
``facestream topics create`` on new and existing topics alike.

Kafka deletes whole closed segments only, and a segment closes after ``segment.ms`` (7 days by
default) or ``segment.bytes``: with the defaults, a quiet topic would keep its data for a week
whatever ``retention.ms`` says. So ``segment.ms`` is set to at most the retention too; the worst
case age of a record is then about ``retention + segment`` (+ the broker's check interval,
``log.retention.check.interval.ms``, 5 minutes by default).
"""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from shared.bus.base import BusError
from shared.bus.kafka import connection_options
from shared.schemas import Topics
from shared.settings import KafkaSettings, RetentionSettings

HOUR_MS = 3_600_000


def retention_hours(settings: RetentionSettings) -> dict[str, float]:
    """Hours each topic keeps its records."""
    return {
        Topics.FRAMES: settings.frames_hours,
        Topics.STYLED_FRAMES: settings.frames_hours,
        Topics.FACES: settings.faces_hours,
        Topics.EMBEDDINGS: settings.faces_hours,
        Topics.LIVENESS: settings.faces_hours,
        Topics.DEAD_LETTERS: settings.dead_letters_hours,
        Topics.EVENTS: settings.events_hours,
    }


def topic_configs(hours: float, kafka: KafkaSettings) -> dict[str, str]:
    """The full set of per-topic overrides. AlterConfigs replaces a topic's overrides as a whole,
    so ``max.message.bytes`` (set when the topic was created) is repeated here."""
    retention_ms = max(60_000, int(hours * HOUR_MS))
    return {
        "retention.ms": str(retention_ms),
        "segment.ms": str(min(retention_ms, HOUR_MS)),
        "max.message.bytes": str(kafka.max_message_bytes),
        "cleanup.policy": "delete",
    }


def apply_retention(kafka: KafkaSettings, retention: RetentionSettings) -> dict[str, dict]:
    """Set each existing facestream topic's retention; returns what was set, per topic."""
    wanted = {t: topic_configs(h, kafka) for t, h in retention_hours(retention).items()}
    try:
        admin = KafkaAdminClient(**connection_options(kafka))
    except KafkaError as error:
        raise BusError(f"cannot reach Kafka to set retention: {error}") from error
    try:
        existing = set(admin.list_topics())
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)
            for topic, configs in wanted.items()
            if topic in existing
        ]
        if resources:
            admin.alter_configs(resources)
    except KafkaError as error:
        raise BusError(f"cannot set topic retention: {error}") from error
    finally:
        admin.close()
    return {r.name: wanted[r.name] for r in resources}


def describe(kafka: KafkaSettings, topics: list[str]) -> dict[str, dict[str, str]]:
    """The broker's current config of ``topics`` (for checks and ``topics create``'s report)."""
    admin = KafkaAdminClient(**connection_options(kafka))
    try:
        replies = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics]
        )
    finally:
        admin.close()
    configs: dict[str, dict[str, str]] = {}
    for reply in replies:
        for _error, _message, _kind, name, entries in reply.resources:
            configs[name] = {entry[0]: entry[1] for entry in entries}
    return configs
