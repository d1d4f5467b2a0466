"""Per-track identity votes and the events they produce: one per state change, never per frame.

Each frame of a track casts a weighted vote: for the closest enrolled person when the distance is
within tau, else for "unknown". Weights favour large, confidently detected faces, whose encodings
are the most reliable. A track is decided once it has ``min_frames`` frames and one side holds a
majority of the weight; it is re-decided only if another side takes the majority, so a track
produces started, identified/unknown (rarely twice), and ended.

With ``require_live`` (the liveness gate) a track is named only once the liveness service judged
it live; a track judged an attack gets a ``spoof`` event and is never named after it. A track
judged an attack after it was named gets a ``withdrawn`` event (event/2) taking the name back,
then its ``spoof``. ``live_required(camera_id)`` turns the gate off per camera (liveness ``off``).
Verdicts can arrive before the recognizer has seen the track's frames (the two services consume
the faces topic independently), so an early verdict is kept until its track appears.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from shared.schemas import Box, RecognitionEvent, RecognitionEventV2, RecognitionEventV4

UNKNOWN = ""
MAX_EARLY_VERDICTS = 10_000
"""Verdicts for tracks that never show up (their faces were dropped) must not pile up."""


@dataclass
class TrackVotes:
    camera_id: str
    track_id: int
    first_seen_ts: float
    last_seen_ts: float
    box: Box
    frames: int = 0
    weights: dict[str, float] = field(default_factory=dict)
    """Vote weight per person id (``UNKNOWN`` for frames matching nobody)."""
    distances: dict[str, list[float]] = field(default_factory=dict)
    decided: str | None = None
    spoof: bool = False
    live: bool = False
    identified_event_id: str | None = None
    """The last ``identified`` event's id, which a ``withdrawn`` event refers to."""
    announced: bool = True
    """Its ``started`` is out. A track is announced at its ``confirm_frames``-th frame, so a
    detector's one- or two-frame flicker (a duplicate box, a false face) makes no events."""

    def leader(self) -> tuple[str, float]:
        person = max(self.weights, key=lambda p: self.weights[p])
        return person, self.weights[person] / sum(self.weights.values())


def face_weight(box: Box, score: float, full_weight_px: float = 112.0) -> float:
    """Vote weight of one face: its detector score, scaled down for faces smaller than ``full_weight_px``."""
    return max(1e-3, score) * min(1.0, min(box.w, box.h) / full_weight_px)


class TrackVoter:
    def __init__(
        self,
        threshold: float,
        confidence: Callable[[float], Any],
        names: Callable[[str], str | None],
        min_frames: int = 3,
        track_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        require_live: bool = False,
        silence_timeout_s: float = 30.0,
        live_required: Callable[[str], bool] | None = None,
        confirm_frames: int = 1,
    ) -> None:
        self.threshold = threshold
        self.confirm_frames = confirm_frames
        self.confidence = confidence
        self.names = names
        self.min_frames = min_frames
        self.track_timeout_s = track_timeout_s
        self.clock = clock
        self.require_live = require_live
        self.silence_timeout_s = silence_timeout_s
        self.live_required = live_required
        """Per camera, whether the gate applies (default: every camera, with ``require_live``)."""
        self.tracks: dict[tuple[str, int], TrackVotes] = {}
        self._early_verdicts: dict[tuple[str, int], bool] = {}
        """Liveness verdicts (live?) of tracks not seen yet."""
        self._camera_clock: dict[str, tuple[float, float]] = {}
        """Per camera: (latest capture time seen, never ahead of the clock; wall time it was seen)."""

    def observe(
        self,
        camera_id: str,
        track_id: int,
        ts: float,
        box: Box,
        weight: float,
        person_id: str | None,
        distance: float | None,
    ) -> list[RecognitionEvent]:
        """Record one frame of a track; return the events it causes."""
        events: list[RecognitionEvent] = []
        self._tick_camera(camera_id, ts)
        track = self.tracks.get((camera_id, track_id))
        if track is None:
            track = TrackVotes(camera_id, track_id, ts, ts, box, announced=False)
            self.tracks[(camera_id, track_id)] = track
        track.frames += 1
        track.last_seen_ts, track.box = max(track.last_seen_ts, ts), box
        if not track.announced and track.frames >= self.confirm_frames:
            track.announced = True
            events.append(self._event("started", track))
            early = self._early_verdicts.pop((camera_id, track_id), None)
            if early is not None:
                events.extend(self._judged(track, early))
        matched = (
            person_id
            if person_id is not None and distance is not None and distance <= self.threshold
            else UNKNOWN
        )
        track.weights[matched] = track.weights.get(matched, 0.0) + weight
        if matched != UNKNOWN and distance is not None:  # matched: the distance is there
            track.distances.setdefault(matched, []).append(float(distance))
        events.extend(self._decide(track))
        return events

    def skip(self, camera_id: str, track_id: int, ts: float, box: Box, every: int) -> bool:
        """Whether a frame of a settled track (``_settled``) can go without an encoding: all but
        every ``every``-th do. A skipped frame casts no vote but keeps the track open."""
        track = self.tracks.get((camera_id, track_id))
        if (
            every <= 1
            or track is None
            or not self._settled(track)
            or (track.frames + 1) % every == 0
        ):
            return False
        self._tick_camera(camera_id, ts)
        track.frames += 1
        track.last_seen_ts, track.box = max(track.last_seen_ts, ts), box
        return True

    def _settled(self, track: TrackVotes) -> bool:
        """Decided as far as votes go: a spoof (an attack stays an attack), unknown, named, or
        named by a majority and waiting only for the liveness verdict (about 2 s, 30 frames):
        encoding its every frame would not bring the verdict sooner."""
        if track.spoof or track.decided is not None:
            return True
        leader, share = track.leader()
        waiting = self._gated(track.camera_id) and not track.live  # (_decide's reason to wait)
        return waiting and track.frames >= self.min_frames and leader != UNKNOWN and share > 0.5

    def _tick_camera(self, camera_id: str, ts: float) -> None:
        wall = self.clock()
        latest = max(min(ts, wall), self._camera_clock.get(camera_id, (float("-inf"), 0.0))[0])
        self._camera_clock[camera_id] = (latest, wall)

    def _decide(self, track: TrackVotes) -> list[RecognitionEvent]:
        if track.frames < self.min_frames or track.spoof or not track.announced:
            return []
        leader, share = track.leader()
        if share <= 0.5 or leader == track.decided:
            return []
        if leader != UNKNOWN and self._gated(track.camera_id) and not track.live:
            return []  # named once liveness says live
        if leader != UNKNOWN and self.names(leader) is None:
            return []  # the name is unknown right now (store down): decide on a later frame
        track.decided = leader
        event = self._event("unknown" if leader == UNKNOWN else "identified", track)
        if leader != UNKNOWN:
            track.identified_event_id = event.event_id
        return [event]

    def _gated(self, camera_id: str) -> bool:
        return self.require_live and (self.live_required is None or self.live_required(camera_id))

    def judged(self, camera_id: str, track_id: int, live: bool) -> list[RecognitionEvent]:
        """A liveness verdict for a track: release its name if live, a spoof event if not."""
        track = self.tracks.get((camera_id, track_id))
        if track is None or not track.announced:
            self._early_verdicts[(camera_id, track_id)] = live
            while len(self._early_verdicts) > MAX_EARLY_VERDICTS:
                del self._early_verdicts[next(iter(self._early_verdicts))]
            return []
        return self._judged(track, live)

    def _judged(self, track: TrackVotes, live: bool) -> list[RecognitionEvent]:
        if track.spoof:
            return []  # an attack stays an attack
        if live:
            track.live = True
            return self._decide(track)
        track.spoof = True
        events = []
        if track.decided not in (None, UNKNOWN):  # named before the attack was found: take it back
            events.append(self._withdrawal(track))
            track.decided = None
        return [*events, self._event("spoof", track)]

    def continued(self, camera_id: str, track_id: int, new_id: int) -> list[RecognitionEvent]:
        """The detector's track ``new_id`` was re-associated with the open track ``track_id``."""
        track = self.tracks.get((camera_id, track_id))
        if track is None:
            return []
        base = cast(RecognitionEventV4, self._event("continued", track, RecognitionEventV4))
        return [base.model_copy(update={"continued_as": new_id})]

    def _withdrawal(self, track: TrackVotes) -> RecognitionEventV2:
        base = cast(RecognitionEventV2, self._event("withdrawn", track, RecognitionEventV2))
        return base.model_copy(update={"withdraws": track.identified_event_id, "reason": "spoof"})

    def expire(self, now: float) -> list[RecognitionEvent]:
        """End tracks not seen for ``track_timeout_s`` of their camera's stream time.

        Stream (capture) time, not processing time: a recognizer working through a backlog, or
        waiting out a broker restart, must not end the tracks it is behind on (they would start
        again when their frames arrive). A camera that sends nothing at all any more ends its
        tracks once it has been silent for ``silence_timeout_s`` by the wall clock ``now``.
        """
        ended = []
        for track in self.tracks.values():
            latest, seen_at = self._camera_clock.get(track.camera_id, (track.last_seen_ts, now))
            if (
                latest - track.last_seen_ts > self.track_timeout_s
                or now - seen_at > self.silence_timeout_s
            ):
                ended.append(track)
        return self._end(ended)

    def end_camera(self, camera_id: str | None = None) -> list[RecognitionEvent]:
        """End every open track of ``camera_id`` (of every camera with None) now."""
        if camera_id is not None:
            self._camera_clock.pop(camera_id, None)
        return self._end([t for t in self.tracks.values() if camera_id in (None, t.camera_id)])

    def restore(self, track: TrackVotes) -> None:
        """Take back an open track after a restart (its ``started`` is already out)."""
        self.tracks[(track.camera_id, track.track_id)] = track
        if track.camera_id not in self._camera_clock:
            self._camera_clock[track.camera_id] = (track.last_seen_ts, self.clock())

    def _end(self, ended: list[TrackVotes]) -> list[RecognitionEvent]:
        for track in ended:
            del self.tracks[(track.camera_id, track.track_id)]
        return [self._event("ended", track) for track in ended if track.announced]

    def _event(
        self, kind: str, track: TrackVotes, schema: type[RecognitionEvent] = RecognitionEvent
    ) -> RecognitionEvent:
        person = track.decided if track.decided not in (None, UNKNOWN) else None
        distance = min(track.distances[person]) if person else None
        return schema(
            type=kind,  # type: ignore[arg-type]  # one of the event types, by the callers
            camera_id=track.camera_id,
            track_id=track.track_id,
            person_id=person,
            person_name=self.names(person) if person else None,
            distance=distance,
            threshold=self.threshold,
            confidence=float(self.confidence(distance)) if distance is not None else None,
            box=track.box,
            first_seen_ts=track.first_seen_ts,
            last_seen_ts=track.last_seen_ts,
            frames=track.frames,
        )
