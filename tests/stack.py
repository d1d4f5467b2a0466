"""A stack of real service processes on the local servers, and Kafka helpers for e2e tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from shared.bus.kafka import connection_options
from shared.cameras import RedisCameraRegistry
from shared.redis_client import create_redis
from shared.schemas import FacesMessage
from shared.settings import KafkaSettings, RedisSettings
from tests.helpers import ServiceProcess

RUN_DIR = Path(os.environ.get("FACESTREAM_RUN_DIR", Path.home() / ".cache/facestream/run"))


class Stack:
    """Service processes of one test, sharing a camera registry under a unique Redis prefix."""

    def __init__(self, kafka: KafkaSettings, redis: RedisSettings, log_dir: Path) -> None:
        self.kafka = kafka
        self.registry = RedisCameraRegistry(create_redis(redis), redis.key_prefix)
        self.log_dir = log_dir
        self.env = {
            "FACESTREAM_BUS": "kafka",
            "FACESTREAM_STORE": "redis",
            "FACESTREAM_METRICS_HOST": "127.0.0.1",
            "FACESTREAM_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "FACESTREAM_REDIS__URL": redis.url,
            "FACESTREAM_REDIS__PASSWORD": redis.password.get_secret_value(),
            "FACESTREAM_REDIS__KEY_PREFIX": redis.key_prefix,
            "FACESTREAM_REDIS__SOCKET_TIMEOUT_S": "2",
            "FACESTREAM_INGEST__READ_TIMEOUT_S": "3",
            "FACESTREAM_INGEST__OPEN_TIMEOUT_S": "3",
            "FACESTREAM_INGEST__BACKOFF_INITIAL_S": "0.2",
            "FACESTREAM_INGEST__BACKOFF_MAX_S": "2",
            "FACESTREAM_INGEST__REGISTRY_POLL_S": "0.5",
            "FACESTREAM_FACE__TF_THREADS": "1",
            # Tracks of a camera whose clip ended end 5 s later, not after the 30 s default.
            "FACESTREAM_RECOGNIZER__CAMERA_SILENCE_S": "5",
        }
        self.processes: list[ServiceProcess] = []

    def start(self, name: str) -> ServiceProcess:
        process = ServiceProcess(name, self.env, self.log_dir).start()
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            process.stop()


class TopicReader:
    """Reads one topic from its end at creation time, keeping the messages of one camera."""

    def __init__(self, settings: KafkaSettings, topic: str, camera_id: str) -> None:
        self.camera_id = camera_id
        self.consumer = KafkaConsumer(**connection_options(settings), enable_auto_commit=False)
        partitions = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic)]
        self.consumer.assign(partitions)
        self.consumer.seek_to_end(*partitions)
        for tp in partitions:
            self.consumer.position(tp)  # resolve "end" now, before anything new is published
        self.records: list = []

    def read(self) -> list:
        for batch in self.consumer.poll(timeout_ms=500, max_records=1000).values():
            self.records.extend(r for r in batch if r.key == self.camera_id.encode())
        return self.records

    def close(self) -> None:
        self.consumer.close()


def skip_group_to_end(settings: KafkaSettings, group: str, topic: str) -> None:
    """Commit the end of ``topic`` for ``group``, so a service ignores frames of earlier tests."""
    consumer = KafkaConsumer(
        **connection_options(settings), group_id=group, enable_auto_commit=False
    )
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    ends = {tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in partitions}
    deadline = time.monotonic() + 60
    while True:  # the broker refuses outside commits while a member (a killed service) remains
        try:
            consumer.commit(ends)
            break
        except CommitFailedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)
    consumer.close()


def faces_seq(record) -> int:
    return FacesMessage.model_validate_json(record.value).seq


def frame_seqs(records: list) -> list[int]:
    return [int(dict(r.headers)["seq"].decode()) for r in records]
