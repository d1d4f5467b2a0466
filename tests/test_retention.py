"""Topic retention is set by ``facestream topics create``, on the real local Kafka."""

from __future__ import annotations

import os
import subprocess
import sys

from shared.retention import HOUR_MS, apply_retention, describe
from shared.schemas import Topics
from shared.settings import RetentionSettings
from tests.helpers import wait_for


def test_topics_create_sets_retention_in_hours(kafka_settings) -> None:
    env = {
        **os.environ,
        "FACESTREAM_BUS": "kafka",
        "FACESTREAM_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "FACESTREAM_RETENTION__FRAMES_HOURS": "3",
        "FACESTREAM_RETENTION__DEAD_LETTERS_HOURS": "12",
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "topics", "create"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "facestream.frames: records kept 3 h" in result.stdout
    topics = [Topics.FRAMES, Topics.FACES, Topics.DEAD_LETTERS]
    # KRaft applies config changes to the broker's metadata asynchronously: wait for them.
    wait_for(
        lambda: describe(kafka_settings, topics)[Topics.FRAMES]["retention.ms"] == str(3 * HOUR_MS),
        15,
        "the retention to reach the broker",
    )
    configs = describe(kafka_settings, topics)
    assert configs[Topics.FRAMES]["retention.ms"] == str(3 * HOUR_MS)
    assert configs[Topics.FACES]["retention.ms"] == str(2 * HOUR_MS)  # the default
    assert configs[Topics.DEAD_LETTERS]["retention.ms"] == str(12 * HOUR_MS)
    # Segments roll within the hour, or retention could not delete anything for 7 days.
    assert int(configs[Topics.FRAMES]["segment.ms"]) <= HOUR_MS
    # Altering the configs kept the large-message limit set at creation.
    assert configs[Topics.FRAMES]["max.message.bytes"] == str(kafka_settings.max_message_bytes)


def test_existing_topics_get_the_retention_too(kafka_settings) -> None:
    from shared.bus.kafka import KafkaBus

    KafkaBus(kafka_settings).ensure_topics(Topics.ALL)
    applied = apply_retention(kafka_settings, RetentionSettings(faces_hours=0.5))
    assert set(applied) == set(Topics.ALL)
    wait_for(
        lambda: (
            describe(kafka_settings, [Topics.FACES])[Topics.FACES]["retention.ms"]
            == str(HOUR_MS // 2)
        ),
        15,
        "the retention to reach the broker",
    )
    configs = describe(kafka_settings, [Topics.FACES, Topics.EVENTS])
    assert configs[Topics.FACES]["retention.ms"] == str(HOUR_MS // 2)
    assert configs[Topics.FACES]["segment.ms"] == str(HOUR_MS // 2)
    assert configs[Topics.EVENTS]["retention.ms"] == str(72 * HOUR_MS)
    apply_retention(kafka_settings, RetentionSettings())  # leave the defaults
