"""Choose the gallery store from settings."""

from __future__ import annotations

from shared.gallery.base import Gallery
from shared.settings import Settings


def create_gallery(settings: Settings) -> Gallery:
    """Redis when ``FACESTREAM_STORE=redis``, else files under ``data_dir/gallery``."""
    if settings.store == "redis":
        from shared.gallery.redis_store import RedisGallery
        from shared.redis_client import create_redis

        return RedisGallery(create_redis(settings.redis), settings.redis.key_prefix)
    from shared.gallery.file_store import FileGallery

    return FileGallery(settings.data_dir / "gallery")
