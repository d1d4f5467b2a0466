"""The camera registry: which cameras the ingestor reads, changeable at run time.

Two stores behind one interface: Redis (a hash of camera id -> JSON, shared by every ingestor and
the CLI) and a JSON file (the embedded default). The ingestor re-reads the registry every
``registry_poll_s`` and starts or stops readers to match, so adding or removing a camera needs no
restart.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.redis_client import redis_errors
from shared.settings import Settings

log = logging.getLogger(__name__)


class RegistryError(RuntimeError):
    """The registry's store is unreachable; callers keep their last known cameras and retry."""


class CameraSpec(BaseModel):
    """One camera: an ``rtsp://``/``http://`` URL, a video file path, or a device index."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    url: str = Field(min_length=1)
    fps: float | None = Field(default=None, gt=0, le=120)
    """Target frames per second; ``None`` uses the ingest default."""
    max_width: int | None = Field(default=None, ge=64, le=16384)
    """Frames wider than this are scaled down before they are published; ``None`` uses the
    ingest default (``FACESTREAM_INGEST__MAX_WIDTH``). Set it to the camera's width to keep its
    full resolution."""
    loop: bool = False
    """Video files only: start again at the end instead of finishing."""
    style: str | None = None
    """Name of the style the stylizer renders this camera in; ``None`` leaves it unstyled."""

    def same_capture(self, other: CameraSpec | None) -> bool:
        """True when ``other`` reads the same source the same way (the style may differ)."""
        return other is not None and self.model_copy(update={"style": other.style}) == other


class CameraRegistry(ABC):
    @abstractmethod
    def put(self, camera: CameraSpec) -> None:
        """Add a camera, or replace the one with the same id."""

    @abstractmethod
    def remove(self, camera_id: str) -> bool:
        """Remove a camera; False if there was none with that id."""

    @abstractmethod
    def list(self) -> list[CameraSpec]: ...

    def get(self, camera_id: str) -> CameraSpec | None:
        return next((c for c in self.list() if c.id == camera_id), None)


class RedisCameraRegistry(CameraRegistry):
    def __init__(self, client: redis.Redis, key_prefix: str = "facestream") -> None:
        self._client = client
        self._key = f"{key_prefix}:cameras"

    def put(self, camera: CameraSpec) -> None:
        with redis_errors(RegistryError, "camera registry"):
            self._client.hset(self._key, camera.id, camera.model_dump_json())

    def remove(self, camera_id: str) -> bool:
        with redis_errors(RegistryError, "camera registry"):
            return bool(self._client.hdel(self._key, camera_id))

    def list(self) -> list[CameraSpec]:
        """The valid cameras; an entry written by hand that does not validate is skipped (and
        logged), so one bad entry cannot stop the ingestor or turn the API's list into a 500."""
        with redis_errors(RegistryError, "camera registry"):
            raw = self._client.hgetall(self._key)
        cameras = []
        for camera_id, value in raw.items():
            try:
                cameras.append(CameraSpec.model_validate_json(value))
            except ValidationError:
                log.warning("camera registry: skipping invalid entry %r", camera_id[:64])
        return sorted(cameras, key=lambda c: c.id)


class FileCameraRegistry(CameraRegistry):
    """A JSON file, locked while changed and replaced atomically, so readers never see half a write."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def put(self, camera: CameraSpec) -> None:
        with self._locked() as cameras:
            cameras[camera.id] = camera

    def remove(self, camera_id: str) -> bool:
        with self._locked() as cameras:
            return cameras.pop(camera_id, None) is not None

    def list(self) -> list[CameraSpec]:
        return sorted(self._read().values(), key=lambda c: c.id)

    def _read(self) -> dict[str, CameraSpec]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {c["id"]: CameraSpec.model_validate(c) for c in data}

    @contextmanager
    def _locked(self) -> Iterator[dict[str, CameraSpec]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            cameras = self._read()
            yield cameras
            body = json.dumps([c.model_dump() for c in cameras.values()], indent=2)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".cameras.")
            with os.fdopen(fd, "w") as out:
                out.write(body)
            os.replace(tmp, self.path)


def create_camera_registry(settings: Settings) -> CameraRegistry:
    """The registry in Redis when ``FACESTREAM_STORE=redis``, else ``data_dir/cameras.json``."""
    if settings.store == "redis":
        from shared.redis_client import create_redis

        return RedisCameraRegistry(create_redis(settings.redis), settings.redis.key_prefix)
    return FileCameraRegistry(settings.data_dir / "cameras.json")
