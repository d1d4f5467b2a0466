"""The publish/subscribe bus: one small interface, a Kafka and an in-memory implementation."""

from shared.bus.base import Bus, BusError, Message, Publisher, Subscriber

__all__ = ["Bus", "BusError", "Message", "Publisher", "Subscriber"]
