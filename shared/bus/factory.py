"""Choose the bus implementation from settings."""

from __future__ import annotations

from shared.bus.base import Bus
from shared.settings import Settings


def create_bus(settings: Settings) -> Bus:
    """The Kafka bus when ``FACESTREAM_BUS=kafka``, else a fresh in-memory bus (one per process)."""
    if settings.bus == "kafka":
        from shared.bus.kafka import KafkaBus

        return KafkaBus(settings.kafka)
    from shared.bus.memory import MemoryBus

    return MemoryBus()
