"""The recognizer's open tracks, kept outside the process so that every ``started`` gets an ``ended``.

A track's ``ended`` is due only after its last frame, by a timeout. Frames are committed as they are
processed, so a recognizer killed in between comes back with the frames done and the track
forgotten: nothing would ever end it (issue 13: 5 of 26 tracks). The journal records each open
track once its events are acknowledged by the bus (``Worker.published``): a ``started`` adds it,
``identified``/``unknown``/``spoof`` update it, ``ended`` removes it. A restarted recognizer takes
the open tracks back; tracks whose camera goes on continue without a second ``started``, and the
others end by the usual rules (stream time, or the camera's silence).

Under at-least-once delivery a crash between publishing and journaling replays the frames, which
then start the track again: a duplicate ``started``, never a missing ``ended``. Writes that fail
(Redis down) are kept and retried on the next tick, the newest state of a track winning.

One recognizer replica per consumer group is assumed to own the journal: with several, a replica
restarting takes back every open track, and the tracks of cameras it no longer owns end by
silence (an extra ``ended``; documented in docs/architecture.md).
"""

from __future__ import annotations

import json
import logging

from services.recognizer.voting import TrackVotes
from shared import metrics
from shared.schemas import Box

log = logging.getLogger(__name__)


def track_key(camera_id: str, track_id: int) -> str:
    return f"{camera_id}\x1f{track_id}"


FIELDS = (
    "camera_id",
    "track_id",
    "first_seen_ts",
    "last_seen_ts",
    "frames",
    "weights",
    "decided",
    "spoof",
    "live",
)
"""What a track needs to go on and to end correctly; fields added later keep their defaults."""


def to_json(track: TrackVotes) -> str:
    record = {name: getattr(track, name) for name in FIELDS}
    record["box"] = track.box.model_dump()
    record["distances"] = {p: [min(d)] for p, d in track.distances.items() if d}  # bounded
    return json.dumps(record)


def from_json(text: str | bytes) -> TrackVotes:
    record = json.loads(text)
    known = {name: record[name] for name in FIELDS if name in record}
    return TrackVotes(
        **known, box=Box.model_validate(record["box"]), distances=record.get("distances", {})
    )


class TrackJournal:
    """Open tracks by ``camera\\x1ftrack``; subclasses say where they live."""

    persistent = False
    """Whether the tracks outlive the process (else ``shutdown`` ends them)."""

    def __init__(self) -> None:
        self._dirty: dict[str, str | None] = {}
        """Writes not yet stored: the track's JSON, or None to delete it."""

    def save(self, track: TrackVotes) -> None:
        self._dirty[track_key(track.camera_id, track.track_id)] = to_json(track)

    def delete(self, camera_id: str, track_id: int) -> None:
        self._dirty[track_key(camera_id, track_id)] = None

    def flush(self) -> bool:
        """Store the pending writes; False (keeping them) if the store is unreachable."""
        if not self._dirty:
            return True
        dirty, self._dirty = self._dirty, {}
        try:
            self._write(dirty)
            return True
        except Exception as error:  # noqa: BLE001 - an outage: keep the writes for the next tick
            metrics.ERRORS.labels("recognizer", "track_journal").inc()
            log.warning("track journal unavailable (%s); %d write(s) kept", error, len(dirty))
            self._dirty = {**dirty, **self._dirty}
            return False

    def load(self) -> list[TrackVotes] | None:
        """The open tracks stored; None if the store is unreachable (try again later)."""
        try:
            records = self._read()
        except Exception as error:  # noqa: BLE001 - an outage: the caller retries
            metrics.ERRORS.labels("recognizer", "track_journal").inc()
            log.warning("track journal unavailable (%s); open tracks not loaded yet", error)
            return None
        tracks = []
        for text in records:
            try:
                tracks.append(from_json(text))
            except (ValueError, TypeError, KeyError) as error:
                log.warning("track journal: unreadable record skipped (%s)", error)
        return tracks

    def _write(self, dirty: dict[str, str | None]) -> None:
        raise NotImplementedError

    def _read(self) -> list[str | bytes]:
        raise NotImplementedError


class MemoryJournal(TrackJournal):
    """The embedded pipeline's journal: the process is everything, so nothing outlives it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, str] = {}

    def _write(self, dirty: dict[str, str | None]) -> None:
        for key, value in dirty.items():
            if value is None:
                self.records.pop(key, None)
            else:
                self.records[key] = value

    def _read(self) -> list[str | bytes]:
        return list(self.records.values())


class RedisJournal(TrackJournal):
    """One Redis hash, ``<prefix>:recognizer:open-tracks``; a few writes per track, not per frame."""

    persistent = True

    def __init__(self, client, prefix: str) -> None:
        super().__init__()
        self.client = client
        self.key = f"{prefix}:recognizer:open-tracks"

    def _write(self, dirty: dict[str, str | None]) -> None:
        pipe = self.client.pipeline(transaction=True)
        gone = [k for k, v in dirty.items() if v is None]
        kept = {k: v for k, v in dirty.items() if v is not None}
        if gone:
            pipe.hdel(self.key, *gone)
        if kept:
            pipe.hset(self.key, mapping=kept)
        pipe.execute()

    def _read(self) -> list[str | bytes]:
        return list(self.client.hgetall(self.key).values())
