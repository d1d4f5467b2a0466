"""Camera registry contract: the same tests against Redis and the file store."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import redis

from shared.cameras import (
    CameraRegistry,
    CameraSpec,
    FileCameraRegistry,
    RedisCameraRegistry,
    RegistryError,
)
from shared.redis_client import create_redis


@pytest.fixture(params=["file", "redis"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> CameraRegistry:
    if request.param == "file":
        return FileCameraRegistry(tmp_path / "cameras.json")
    settings = request.getfixturevalue("redis_settings")
    return RedisCameraRegistry(create_redis(settings), settings.key_prefix)


def test_put_list_replace_remove(registry: CameraRegistry) -> None:
    assert registry.list() == []
    registry.put(CameraSpec(id="door", url="rtsp://127.0.0.1/door", fps=10))
    registry.put(CameraSpec(id="lobby", url="/videos/lobby.mp4"))
    assert [c.id for c in registry.list()] == ["door", "lobby"]
    registry.put(CameraSpec(id="door", url="rtsp://127.0.0.1/door", fps=5))
    assert registry.get("door").fps == 5
    assert registry.remove("door")
    assert not registry.remove("door")
    assert [c.id for c in registry.list()] == ["lobby"]


@pytest.mark.parametrize("camera_id", ["", "has space", "../etc", "x" * 65])
def test_camera_ids_are_validated(camera_id: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        CameraSpec(id=camera_id, url="0")


def test_an_unreachable_redis_is_a_registry_error() -> None:
    client = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5)
    with pytest.raises(RegistryError, match="unavailable"):
        RedisCameraRegistry(client).list()


def test_redis_requires_the_configured_password(redis_settings) -> None:
    wrong = redis_settings.model_copy(update={"password": pydantic.SecretStr("wrong")})
    with pytest.raises(RegistryError):
        RedisCameraRegistry(create_redis(wrong), wrong.key_prefix).list()


def test_a_change_of_style_alone_keeps_the_capture() -> None:
    camera = CameraSpec(id="door", url="rtsp://127.0.0.1/cam", fps=10)
    assert camera.same_capture(camera.model_copy(update={"style": "great_wave"}))
    assert not camera.same_capture(camera.model_copy(update={"fps": 12}))
    assert not camera.same_capture(None)
