"""A redis-server of a test's own, so that it can be killed and restarted without disturbing the
shared local Redis (deploy/local/infra.sh) other tests use."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.redis_client import create_redis
from shared.settings import RedisSettings
from tests.helpers import free_port, wait_for


class PrivateRedis:
    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (deploy/local/install.sh)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.command += ["--dir", str(folder), "--appendonly", "no"]
        self.process: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL)
        client = create_redis(RedisSettings(url=self.url, socket_timeout_s=1))
        wait_for(lambda: _pings(client), 10, "the private redis-server")
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


def running(folder: Path) -> Iterator[PrivateRedis]:
    """For a fixture: ``yield from running(tmp_path)``."""
    redis_server = PrivateRedis(folder).start()
    try:
        yield redis_server
    finally:
        redis_server.kill()
