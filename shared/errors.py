"""Errors that mean "this input cannot be processed", as opposed to an infrastructure outage."""

from __future__ import annotations


class ProcessingError(ValueError):
    """Bad input: the message is dead-lettered with ``reason`` and the service keeps going."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
