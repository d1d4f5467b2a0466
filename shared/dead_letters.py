"""Dead letters: a message a worker cannot process, or the bus refuses, kept with why.

The original goes to the dead-letter topic unchanged, with ``dlq.*`` headers saying where it came
from and why; one too large for that topic is replaced by a reference (topic, partition, offset,
sha256, size), so a dead letter always fits the bus. ``shared/worker.py``'s runner sends them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping

from shared.bus.base import Message, Outgoing
from shared.schemas import DEAD_LETTER_SCHEMA, Topics


def dead_letter(
    message: Message, error: Exception, service: str, max_bytes: int | None = None
) -> Outgoing:
    """The original message, unchanged, with ``dlq.*`` headers saying where it came from and why.

    When the original plus those headers would exceed ``max_bytes`` (what the dead-letter topic
    takes, minus headroom), the dead letter carries a reference instead (``reference``).
    """
    dlq = {
        "dlq.schema": DEAD_LETTER_SCHEMA,
        "dlq.reason": failure_reason(error),
        "dlq.error": str(error)[:500],
        "dlq.service": service,
        "dlq.source_topic": message.topic,
        "dlq.source_partition": str(message.partition),
        "dlq.source_offset": str(message.offset),
        "dlq.ts": repr(time.time()),
    }
    key = message.key[:256] if message.key is not None else None
    if max_bytes is not None and _size(message.value, message.headers, dlq) > max_bytes:
        return reference(message.topic, message.value, key, message.headers, dlq, message)
    return Outgoing(Topics.DEAD_LETTERS, message.value, message.key, {**message.headers, **dlq})


HEADER_PREVIEW_CHARS = 2048


def reference(
    topic: str,
    value: bytes,
    key: str | None,
    headers: Mapping[str, str],
    dlq: Mapping[str, str],
    source: Message | None = None,
) -> Outgoing:
    """A dead letter that points at a message too large to copy: where it is, its hash and size.

    The original stays in its topic (until retention) and can be fetched by partition and offset;
    the sha256 proves it is the same one. Its headers are kept as a truncated JSON preview.
    """
    body = {
        "reference": True,
        "source_topic": topic,
        "source_partition": source.partition if source else None,
        "source_offset": source.offset if source else None,
        "sha256": hashlib.sha256(value).hexdigest(),
        "size": len(value),
    }
    preview = json.dumps({k[:64]: str(v)[:128] for k, v in list(headers.items())[:32]})
    out_headers = {
        **{k: str(v)[:1000] for k, v in dlq.items()},
        "dlq.truncated": "true",
        "dlq.headers_preview": preview[:HEADER_PREVIEW_CHARS],
        "content-type": "application/json",
    }
    return Outgoing(Topics.DEAD_LETTERS, json.dumps(body).encode(), key, out_headers)


def _size(value: bytes, *header_maps: Mapping[str, str]) -> int:
    return len(value) + sum(
        len(k.encode()) + len(str(v).encode()) + 8 for h in header_maps for k, v in h.items()
    )


def failure_reason(error: Exception) -> str:
    """Short, bounded label for metrics: the error's own ``reason`` or ``unexpected_error``."""
    return str(getattr(error, "reason", "unexpected_error"))
