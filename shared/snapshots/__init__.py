"""Event snapshots (see base.py): the store interface, a file store and a Redis store."""

from shared.snapshots.base import Snapshot, SnapshotError, SnapshotStore

__all__ = ["Snapshot", "SnapshotError", "SnapshotStore", "create_snapshot_store"]


def create_snapshot_store(settings) -> SnapshotStore:
    """Redis when ``FACESTREAM_STORE=redis``, else files under ``data_dir/snapshots``."""
    retention = settings.snapshots.retention_h
    if settings.store == "redis":
        from shared.redis_client import create_redis
        from shared.snapshots.redis_store import RedisSnapshotStore

        return RedisSnapshotStore(
            create_redis(settings.redis), settings.redis.key_prefix, retention
        )
    from shared.snapshots.file_store import FileSnapshotStore

    return FileSnapshotStore(settings.data_dir / "snapshots", retention)
