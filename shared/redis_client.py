"""A Redis client built from settings: credentials, TLS (``rediss://``) and timeouts in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from shared.settings import RedisSettings


def create_redis(settings: RedisSettings) -> redis.Redis:
    """A client that reconnects by itself and retries once, so a Redis restart costs one error."""
    options: dict[str, object] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.socket_timeout_s,
        "health_check_interval": 15,
        "retry_on_timeout": True,
    }
    if settings.username:
        options["username"] = settings.username
    if settings.password is not None:
        options["password"] = settings.password.get_secret_value()
    if settings.ssl_ca_certs is not None:
        options["ssl_ca_certs"] = str(settings.ssl_ca_certs)
    return redis.Redis.from_url(settings.url, **options)


@contextmanager
def redis_errors(error_type: type[Exception], what: str) -> Iterator[None]:
    """Re-raise Redis outages as ``error_type`` ("<what> unavailable: ..."), for callers to retry."""
    try:
        yield
    except redis.RedisError as error:
        raise error_type(f"{what} unavailable: {error}") from error
