"""The parts every worker of frame-derived messages repeated, now in one place (the worker
contract's helpers, ``shared/worker.py``):

* **the per-message guard**: ``each`` applies a step to every message (or item) of a poll; one
  that raises becomes that message's result (the runner dead-letters it) and the rest go on;
* **decoding a frame** with its size checks: the header alone is checked against the per-frame
  pixel limit before any pixel is decoded (``frame_size``), and the decoded image must be the size
  the message's headers declare (``decode_frame``);
* **where a message sits in its camera's stream** (``STAMPS``, by topic): what the runner's
  replay detection by (camera, seq, capture time) and clock checks read (``shared/stream.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from shared.bus.base import Message, Outgoing
from shared.errors import ProcessingError
from shared.images import check_size, decode_image
from shared.schemas import FacesMessage, FrameMeta, LivenessVerdict, Topics
from shared.stream import StreamStamp

Item = TypeVar("Item")
Value = TypeVar("Value")
Result = list[Outgoing] | Exception


def each(
    items: Sequence[Item], step: Callable[[Item], Value | None]
) -> tuple[list[Result], list[tuple[int, Value]]]:
    """``step`` on every item, guarded: (a result per item, the (position, value) of those that
    gave one). An item whose step raises gets the exception as its result (the runner
    dead-letters it); an item whose step returns None has nothing to publish (``[]``)."""
    results: list[Result] = [[] for _ in items]
    values: list[tuple[int, Value]] = []
    for i, item in enumerate(items):
        try:
            value = step(item)
        except Exception as error:  # noqa: BLE001 - dead-lettered by the runner, per message
            results[i] = error
            continue
        if value is not None:
            values.append((i, value))
    return results, values


def guarded(step: Callable[..., Value], *args: object) -> Value | Exception:
    """``step(*args)``, or the exception it raised (the per-message guard for one step)."""
    try:
        return step(*args)
    except Exception as error:  # noqa: BLE001 - dead-lettered by the runner, per message
        return error


def frame_size(message: Message, max_pixels: int) -> tuple[FrameMeta, int]:
    """The frame's metadata and pixel count, from its image header only: ``image_too_large`` (or
    a header that disagrees with the message's) is refused before any pixel is decoded."""
    meta = FrameMeta.from_message(message)
    width, height = check_size(message.value, max_pixels, (meta.width, meta.height))
    return meta, width * height


def decode_frame(
    message: Message, max_pixels: int, meta: FrameMeta | None = None
) -> tuple[FrameMeta, np.ndarray]:
    """The frame's metadata and BGR pixels; the image must be the size its headers declare."""
    meta = meta or FrameMeta.from_message(message)
    image = decode_image(message.value, max_pixels, (meta.width, meta.height))
    if (image.shape[1], image.shape[0]) != (meta.width, meta.height):
        raise ProcessingError(
            "corrupt_image",
            f"decoded {image.shape[1]}x{image.shape[0]}, headers say {meta.width}x{meta.height}",
        )
    return meta, image


def frame_stamp(message: Message) -> StreamStamp:
    meta = FrameMeta.from_message(message)
    return StreamStamp(meta.camera_id, meta.capture_ts, meta.seq)


def faces_stamp(message: Message) -> StreamStamp:
    faces = FacesMessage.from_message(message)
    return StreamStamp(faces.camera_id, faces.capture_ts, faces.seq)


def verdict_stamp(message: Message) -> StreamStamp:
    """Verdicts are not one per frame: the clock check only, never skipped as replays."""
    verdict = LivenessVerdict.from_message(message)
    return StreamStamp(verdict.camera_id, verdict.ts, dedupe=False)


STAMPS: dict[str, Callable[[Message], StreamStamp]] = {
    Topics.FRAMES: frame_stamp,
    Topics.FACES: faces_stamp,
    Topics.LIVENESS: verdict_stamp,
}
"""Where a message of each frame-derived topic sits in its camera's stream."""
