"""Uploaded paintings: checked once, stored by content hash, named ``painting:<id>`` as a style.

A user uploads a painting (API ``POST /v1/paintings``, CLI ``facestream paintings add``); it is
checked like every image that enters the system (shared/images.py: the header's size before any
pixel is decoded, then a full decode) and stored under the first 16 hex digits of its SHA-256.
The style name ``painting:<id>`` can then be given to any camera (``facestream cameras style CAM
painting:<id>``); the stylizer fetches the bytes, checks their hash again, and computes the style
bottleneck once (shared/style/arbitrary.py). The same painting uploaded twice is one entry.

Two stores behind one interface, as for the camera registry: Redis (shared by the API, the CLI
and every stylizer) and a folder (the embedded default, ``data_dir/paintings``).
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TypeGuard

import numpy as np
import redis

from shared.errors import ProcessingError
from shared.images import decode_image
from shared.model_cache import write_atomically
from shared.redis_client import redis_errors
from shared.settings import Settings
from shared.style.vgg import StyleModelError

PREFIX = "painting:"
ID_LENGTH = 16
MIN_SIDE = 32
MAX_BYTES = 20 * 1024 * 1024
"""A painting file larger than this is refused before anything else is looked at."""
_NAME = re.compile(rf"^{PREFIX}([0-9a-f]{{{ID_LENGTH}}})$")


class PaintingError(StyleModelError):
    """A painting style that is unknown, unreadable, or whose bytes do not match its name."""


def content_hash(data: bytes) -> str:
    """The key a painting is stored and its bottleneck cached under: SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def is_painting(style: str | None) -> TypeGuard[str]:
    return style is not None and style.startswith(PREFIX)


def painting_id(style: str) -> str:
    """The id inside a ``painting:<id>`` style name; ``PaintingError`` for a malformed one."""
    match = _NAME.match(style)
    if match is None:
        raise PaintingError(f"{style!r} is not a painting style (painting:<16 hex digits>)")
    return match.group(1)


def check_painting(data: bytes, max_pixels: int) -> np.ndarray:
    """RGB uint8 pixels of an uploaded painting, or ``ProcessingError`` saying what is wrong:
    ``image_too_large`` (bytes or header's pixels over the limits, checked before decoding),
    ``corrupt_image`` (not a JPEG/PNG/WebP/BMP, or does not decode), ``image_too_small``."""
    if len(data) > MAX_BYTES:
        raise ProcessingError(
            "image_too_large", f"{len(data)} bytes; a painting may have at most {MAX_BYTES}"
        )
    bgr = decode_image(data, max_pixels)
    if min(bgr.shape[:2]) < MIN_SIDE:
        raise ProcessingError(
            "image_too_small",
            f"{bgr.shape[1]}x{bgr.shape[0]} pixels; both sides need at least {MIN_SIDE}",
        )
    return np.ascontiguousarray(bgr[..., ::-1])


class PaintingStore(ABC):
    def add(self, data: bytes, max_pixels: int) -> str:
        """Check and store a painting; its style name ``painting:<id>``."""
        check_painting(data, max_pixels)
        key = content_hash(data)[:ID_LENGTH]
        self._put(key, data)
        return PREFIX + key

    def get(self, style: str) -> bytes:
        """The painting's bytes, checked against its name; ``PaintingError`` when unknown."""
        key = painting_id(style)
        data = self._get(key)
        if data is None:
            raise PaintingError(f"no painting {style!r} has been uploaded")
        if content_hash(data)[:ID_LENGTH] != key:
            raise PaintingError(f"the stored bytes of {style!r} do not match its hash")
        return data

    def exists(self, style: str) -> bool:
        try:
            return self._get(painting_id(style)) is not None
        except PaintingError:
            return False

    @abstractmethod
    def _put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def _get(self, key: str) -> bytes | None: ...


class RedisPaintingStore(PaintingStore):
    def __init__(self, client: redis.Redis, key_prefix: str = "facestream") -> None:
        self._client = client
        self._key = f"{key_prefix}:paintings"

    def _put(self, key: str, data: bytes) -> None:
        with redis_errors(PaintingError, "painting store"):
            self._client.hset(self._key, key, data)

    def _get(self, key: str) -> bytes | None:
        with redis_errors(PaintingError, "painting store"):
            value = self._client.hget(self._key, key)
        return value if value is None or isinstance(value, bytes) else value.encode("latin-1")


class FolderPaintingStore(PaintingStore):
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _put(self, key: str, data: bytes) -> None:
        write_atomically(self.folder / key, data)

    def _get(self, key: str) -> bytes | None:
        path = self.folder / key
        return path.read_bytes() if path.is_file() else None


def create_painting_store(settings: Settings) -> PaintingStore:
    """Redis when ``FACESTREAM_STORE=redis``, else ``data_dir/paintings``."""
    if settings.store == "redis":
        from shared.redis_client import create_redis

        return RedisPaintingStore(create_redis(settings.redis), settings.redis.key_prefix)
    return FolderPaintingStore(settings.data_dir / "paintings")
