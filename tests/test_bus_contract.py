"""The bus contract: the same tests against the in-memory bus and a real Kafka broker."""

from __future__ import annotations

import time

import pytest

from shared.bus.base import Bus, Message, Subscriber


def drain(subscriber: Subscriber, count: int, timeout_s: float = 30.0) -> list[Message]:
    """Poll until ``count`` messages arrived (Kafka needs a moment to assign partitions)."""
    received: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(received) < count and time.monotonic() < deadline:
        received.extend(subscriber.poll(0.5, count - len(received)))
    return received


@pytest.fixture
def topic(bus: Bus, unique: str) -> str:
    name = f"test.contract.{unique}"
    bus.ensure_topics([name])
    return name


def publish(bus: Bus, topic: str, values: list[tuple[str, bytes]]) -> None:
    publisher = bus.publisher()
    for key, value in values:
        publisher.publish(topic, value, key=key, headers={"n": value.decode(), "schema": "t/1"})
    publisher.flush()
    publisher.close()


def test_value_key_and_headers_round_trip(bus: Bus, topic: str, unique: str) -> None:
    publish(bus, topic, [("cam-1", b"0")])
    subscriber = bus.subscriber([topic], f"g-{unique}")
    [message] = drain(subscriber, 1)
    subscriber.close()
    assert (message.topic, message.key, message.value) == (topic, "cam-1", b"0")
    assert message.headers == {"n": "0", "schema": "t/1"}
    assert message.offset >= 0


def test_order_is_kept_per_key(bus: Bus, topic: str, unique: str) -> None:
    sent = [(f"cam-{i % 3}", str(i).encode()) for i in range(60)]
    publish(bus, topic, sent)
    subscriber = bus.subscriber([topic], f"g-{unique}")
    received = drain(subscriber, 60)
    subscriber.close()
    assert len(received) == 60
    for key in ("cam-0", "cam-1", "cam-2"):
        expected = [value for k, value in sent if k == key]
        assert [m.value for m in received if m.key == key] == expected


def test_committed_messages_are_not_delivered_again(bus: Bus, topic: str, unique: str) -> None:
    publish(bus, topic, [("k", str(i).encode()) for i in range(5)])
    first = bus.subscriber([topic], f"g-{unique}")
    assert len(drain(first, 5)) == 5
    first.commit()
    first.close()
    publish(bus, topic, [("k", b"5")])
    second = bus.subscriber([topic], f"g-{unique}")
    received = drain(second, 1)
    assert [m.value for m in received] == [b"5"]
    assert second.poll(1.0) == []
    second.close()


def test_uncommitted_messages_are_delivered_again(bus: Bus, topic: str, unique: str) -> None:
    publish(bus, topic, [("k", str(i).encode()) for i in range(4)])
    first = bus.subscriber([topic], f"g-{unique}")
    assert len(drain(first, 4)) == 4
    first.close()  # crashed before committing
    second = bus.subscriber([topic], f"g-{unique}")
    assert [m.value for m in drain(second, 4)] == [b"0", b"1", b"2", b"3"]
    second.close()


def test_each_group_gets_every_message(bus: Bus, topic: str, unique: str) -> None:
    publish(bus, topic, [("k", b"a"), ("k", b"b")])
    for group in (f"g1-{unique}", f"g2-{unique}"):
        subscriber = bus.subscriber([topic], group)
        assert [m.value for m in drain(subscriber, 2)] == [b"a", b"b"]
        subscriber.close()


def test_large_frames_pass(bus: Bus, topic: str, unique: str) -> None:
    frame = bytes(range(256)) * (3 * 1024 * 1024 // 256)  # 3 MiB, over Kafka's 1 MB default
    publish_one = bus.publisher()
    publish_one.publish(topic, frame, key="cam")
    publish_one.flush()
    publish_one.close()
    subscriber = bus.subscriber([topic], f"g-{unique}")
    [message] = drain(subscriber, 1)
    subscriber.close()
    assert message.value == frame


def test_lag_counts_unconsumed_messages(bus: Bus, topic: str, unique: str) -> None:
    publish(bus, topic, [("k", str(i).encode()) for i in range(10)])
    subscriber = bus.subscriber([topic], f"g-{unique}")
    received = drain(subscriber, 4)
    subscriber.commit()
    lag = subscriber.lag().get(topic)
    subscriber.close()
    # Kafka may prefetch, but lag is measured from the consumer's position: what was returned.
    assert lag == 10 - len(received)


def test_multiple_topics_in_one_subscription(bus: Bus, topic: str, unique: str) -> None:
    other = f"{topic}.other"
    bus.ensure_topics([other])
    publish(bus, topic, [("k", b"x")])
    publish(bus, other, [("k", b"y")])
    subscriber = bus.subscriber([topic, other], f"g-{unique}")
    received = drain(subscriber, 2)
    subscriber.close()
    assert sorted((m.topic, m.value) for m in received) == [(topic, b"x"), (other, b"y")]
