"""The recognizer service: faces in, recognition events per track out.

The chips of a whole poll are encoded in one batch, matched against the in-memory gallery index (kept in
sync with the store's change feed from ``tick``), and fed to the track voter, which turns a
stream of per-frame matches into a few events per track. With the liveness gate on, the recognizer
also consumes the liveness service's verdicts: a track is named only once judged live, and a
track judged an attack gets a ``spoof`` event instead.

With track fusion (``fusion_frames`` > 0, services/recognizer/fusion.py) each frame is matched as
the fused encoding of its track's best frames so far rather than alone. The gallery must hold the
encodings of this recognizer's encoder only: otherwise it refuses to start
(``EncoderMismatchError``, naming ``facestream people reencode``), and a later mismatch (someone
enrolled with another encoder meanwhile) is logged as an error while those encodings are ignored.

Over 400 lines for a reason: the per-track parts (voter, fusion, re-association, journal,
snapshots) each live in a module beside this one, but the batch contract snapshots and restores
them together and every face passes through them in one order, which this class owns.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import cast

import numpy as np

from services.recognizer.fusion import TrackFusion
from services.recognizer.journal import MemoryJournal, TrackJournal
from services.recognizer.reassociation import Reassociator, track_timeout
from services.recognizer.snapshots import SnapshotKeeper
from services.recognizer.voting import TrackVoter, face_weight
from shared import metrics
from shared.bus.base import Message
from shared.face.chip_kinds import check_chip_kind, chip_kind
from shared.face.chips import chip_from_b64
from shared.face.encoder import FaceEncoder
from shared.face.fusion_calibration import load_fusion_calibration
from shared.face.verification import Verifier, index_metric
from shared.frames import each
from shared.gallery.base import (
    EncoderMismatchError,
    Gallery,
    GalleryError,
    PersonNotFoundError,
)
from shared.gallery.index import GalleryIndex
from shared.schemas import (
    DetectedFace,
    EmbeddingsMessage,
    FaceEmbedding,
    FacesMessage,
    LivenessVerdict,
    RecognitionEvent,
    Topics,
    parse_event,
)
from shared.settings import RecognizerSettings
from shared.stream import StreamStamp
from shared.worker import BatchWorker, Outgoing

log = logging.getLogger(__name__)

JOURNAL_REFRESH_S = 2.0  # s between journal writes of the open tracks' latest frame times


class RecognizerWorker(BatchWorker):
    name = "recognizer"
    stream_checks = True

    def __init__(
        self,
        encoder: FaceEncoder,
        gallery: Gallery,
        verifier: Verifier,
        settings: RecognizerSettings,
        identification_far: float = 0.01,
        liveness_gate: bool = False,
        journal: TrackJournal | None = None,
        live_required: Callable[[str], bool] | None = None,
        snapshots: SnapshotKeeper | None = None,
    ) -> None:
        """``verifier``: the decision rule (shared/face/factory.build_verifier); ``journal``: where
        open tracks outlive a crash (services/recognizer/journal.py; default: this process only);
        ``live_required(camera_id)``: whether the gate applies to a camera (liveness not off);
        ``snapshots``: keeps each track's best face for its events (it also reads the frames)."""
        self.topics = (Topics.FACES, Topics.LIVENESS) if liveness_gate else (Topics.FACES,)
        self.snapshots = snapshots
        if snapshots is not None:
            self.topics = (*self.topics, Topics.FRAMES)
        self.encoder = encoder
        self.gallery = gallery
        self.fusion_calibration = load_fusion_calibration(encoder.name, verifier.name)
        shift = self.fusion_calibration.shift if self.fusion_calibration else None
        self.index = GalleryIndex(
            gallery,
            index_metric(verifier),
            encoder=encoder.name,
            templates=shift is not None,
            template_shift=shift,
        )
        self.index.sync()  # at start-up: EncoderMismatchError stops a recognizer of the wrong encoder
        self._mismatch_logged: dict[str, int] = {}
        self.fusion = None
        if settings.fusion_frames > 0 and shift is not None:
            self.fusion = TrackFusion(settings.fusion_frames)
        elif settings.fusion_frames > 0:
            message = "no fusion calibration for %s with the %s verifier (python -m bench.fusion "
            log.warning(
                message + "--calibrate): frames are matched alone", encoder.name, verifier.name
            )
        self.settings = settings
        self.verifier = verifier
        self.identification_far = identification_far
        self._next_sync = 0.0
        self._names: dict[str, str] = {}
        self.voter = TrackVoter(
            verifier.threshold,
            verifier.confidence,
            self._name,
            min_frames=settings.min_frames,
            track_timeout_s=track_timeout(settings),
            require_live=liveness_gate,
            silence_timeout_s=settings.camera_silence_s,
            live_required=live_required,
            confirm_frames=min(settings.confirm_frames, settings.min_frames),
        )
        self.reassociation = (
            Reassociator(verifier, track_timeout(settings)) if settings.reassociate else None
        )
        self.journal = journal if journal is not None else MemoryJournal()
        self._journaled: dict[tuple[str, int], float] = {}
        """Tracks whose ``started`` is acknowledged, with the last frame time journaled."""
        self._journal_loaded = False
        self._next_refresh = 0.0
        self._load_journal()

    def stamp(self, message: Message) -> StreamStamp | None:
        """As every worker's, but a frame (read for snapshots) has the same (seq, capture time)
        as its faces message: it must never make that one look like a replay."""
        stamp = super().stamp(message)
        if stamp is not None and message.topic == Topics.FRAMES:
            return dataclasses.replace(stamp, dedupe=False)
        return stamp

    def snapshot(self) -> object:
        """The voter's state (tracks, early verdicts, camera clocks) and the tracks' fused frames,
        to undo a failed batch."""
        voter = {k: copy.deepcopy(v) for k, v in vars(self.voter).items() if not callable(v)}
        fusion = copy.deepcopy(vars(self.fusion)) if self.fusion is not None else None
        tracks = self.reassociation.snapshot() if self.reassociation else None
        return voter, fusion, tracks

    def restore(self, state: object) -> None:
        voter, fusion, tracks = cast(tuple[dict, dict, object], state)  # what snapshot returned
        vars(self.voter).update(voter)
        if self.fusion is not None:
            vars(self.fusion).update(fusion)
        if self.reassociation is not None:
            self.reassociation.restore(tracks)

    def expire(self, camera_id: str) -> Iterable[Outgoing]:
        ended = self.voter.end_camera(camera_id)
        self._forget_fused(ended)
        if self.snapshots is not None:
            self.snapshots.forget_camera(camera_id)
        return self._pictured([_outgoing(e) for e in ended])

    def _pictured(self, outputs: list[Outgoing]) -> list[Outgoing]:
        """The outputs with their snapshot events, when snapshots are on."""
        return outputs if self.snapshots is None else self.snapshots.on_events(outputs)

    def _forget_fused(self, ended: list[RecognitionEvent]) -> None:
        for event in ended:
            if self.fusion is not None:
                self.fusion.forget(event.camera_id, event.track_id)
            if self.reassociation is not None:
                self.reassociation.forget(event.camera_id, event.track_id)

    def published(self, outputs: list[Outgoing]) -> None:
        """Journal the tracks whose events the bus acknowledged (see journal.py)."""
        try:
            self._journal_events(outputs)
        except Exception:  # noqa: BLE001 - the journal must never stop the recognizer
            metrics.ERRORS.labels(self.name, "track_journal").inc()
            log.exception("recognizer: journaling open tracks failed")

    def _journal_events(self, outputs: list[Outgoing]) -> None:
        for out in outputs:
            if out.topic != Topics.EVENTS:
                continue
            event = parse_event(out.value)
            key = (event.camera_id, event.track_id)
            if event.type == "ended":
                self.journal.delete(*key)
                self._journaled.pop(key, None)
            elif (track := self.voter.tracks.get(key)) is not None:
                self.journal.save(track)
                self._journaled[key] = track.last_seen_ts
        self.journal.flush()

    def shutdown(self) -> Iterable[Outgoing]:
        """A journal that outlives the process keeps the open tracks for the next instance;
        otherwise they end here, so that every ``started`` has its ``ended``."""
        if self.journal.persistent:
            self.journal.flush()
            return ()
        return self._pictured([_outgoing(e) for e in self.voter.end_camera(None)])

    def _load_journal(self) -> None:
        """Take back the open tracks of a previous instance (retried from ``tick`` until loaded)."""
        tracks = self.journal.load()
        if tracks is None:
            return
        self._journal_loaded = True
        for track in tracks:
            key = (track.camera_id, track.track_id)
            if key not in self.voter.tracks:
                self.voter.restore(track)
                self._journaled[key] = track.last_seen_ts
        if tracks:
            log.info("recognizer: %d open track(s) taken back from the journal", len(tracks))

    def _refresh_journal(self) -> None:
        """Write the open tracks' progress now and then, so a restart ends them at the right time."""
        if time.monotonic() < self._next_refresh:
            return
        self._next_refresh = time.monotonic() + JOURNAL_REFRESH_S
        for key, saved_ts in list(self._journaled.items()):
            track = self.voter.tracks.get(key)
            if track is not None and track.last_seen_ts > saved_ts:
                self.journal.save(track)
                self._journaled[key] = track.last_seen_ts
        self.journal.flush()

    def process_batch(self, messages: list[Message]) -> list[list[Outgoing] | Exception]:
        """Decode every chip of the poll, encode them in one call, then vote frame by frame."""
        results, read = each(messages, self._read)
        frames = [(i, *frame) for i, frame in read if isinstance(frame, tuple)]
        for i, outputs in read:
            if isinstance(outputs, list):  # a liveness verdict: its events, nothing to encode
                results[i] = self._pictured(outputs)
        if not frames:
            return results
        self.update_config()
        embeddings = self.encoder.encode(np.concatenate([chips for *_, chips in frames]))
        start = 0
        for i, faces, usable, _chips in frames:
            vectors = embeddings[start : start + len(usable)]
            start += len(usable)
            results[i] = self._pictured(self._vote(faces, usable, vectors))
        return results

    def _read(
        self, message: Message
    ) -> list[Outgoing] | tuple[FacesMessage, list[DetectedFace], np.ndarray] | None:
        """A verdict's events, or a frame's usable faces with their chips (None: none to encode)."""
        if message.topic == Topics.LIVENESS:
            return self._judged(message)
        if message.topic == Topics.FRAMES:  # read for snapshots only
            if self.snapshots is not None:
                self.snapshots.keep_frame(message)
            return None
        return self._usable_faces(message)

    def _judged(self, message: Message) -> list[Outgoing]:
        verdict = LivenessVerdict.from_message(message)
        track_id = self._resolve(verdict.camera_id, verdict.track_id)
        events = self.voter.judged(verdict.camera_id, track_id, verdict.live)
        return [_outgoing(e) for e in events]

    def _usable_faces(
        self, message: Message
    ) -> tuple[FacesMessage, list[DetectedFace], np.ndarray] | None:
        """The frame's faces that carry a chip and a track, with the chips decoded; None to skip.

        Every chip is checked before a settled track's face is skipped: a face that would be
        refused when encoded is refused (dead-lettered) when skipped too, so a malformed message
        cannot keep a track open or move its camera's clock."""
        faces = FacesMessage.from_message(message)
        usable = [f for f in faces.faces if f.chip_jpeg_b64 and f.track_id is not None]
        for face in usable:  # a chip cut for another encoder would give a meaningless encoding
            check_chip_kind(face.chip_kind, self.encoder.chip_kind)
        chips = [
            chip_from_b64(cast(str, f.chip_jpeg_b64), chip_kind(f.chip_kind).size) for f in usable
        ]
        kept = [i for i, face in enumerate(usable) if not self._skipped(faces, face)]
        if not kept:
            return None
        return faces, [usable[i] for i in kept], np.stack([chips[i] for i in kept])

    def _resolve(self, camera_id: str, track_id: int) -> int:
        again = self.reassociation
        return track_id if again is None else again.resolve(camera_id, track_id)

    def _skipped(self, faces: FacesMessage, face: DetectedFace) -> bool:
        """A settled track's face between its periodic encodings: it keeps the track open."""
        track_id = self._resolve(faces.camera_id, cast(int, face.track_id))  # usable: has one
        every = self.settings.encode_every
        if not self.voter.skip(faces.camera_id, track_id, faces.capture_ts, face.box, every):
            return False
        metrics.RECOGNIZER_FACES.labels("skipped").inc()
        return True

    def _track_ids(
        self, faces: FacesMessage, usable: list[DetectedFace], embeddings: np.ndarray
    ) -> tuple[list[int], list[Outgoing]]:
        """The track each face counts for (a re-associated new track: the one it continues), and
        a ``continued`` event for each new track id re-associated on this frame."""
        camera, ids = faces.camera_id, [cast(int, f.track_id) for f in usable]  # usable: have one
        if self.reassociation is None:
            return ids, []
        open_tracks = {t: v.last_seen_ts for (c, t), v in self.voter.tracks.items() if c == camera}
        ids, continued = self.reassociation.track_ids(
            camera, faces.capture_ts, ids, embeddings, open_tracks
        )
        events = [
            _outgoing(e) for new, old in continued for e in self.voter.continued(camera, old, new)
        ]
        return ids, events

    def _vote(
        self, faces: FacesMessage, usable: list[DetectedFace], embeddings: np.ndarray
    ) -> list[Outgoing]:
        outputs = (
            [self._embeddings(faces, usable, embeddings)]
            if self.settings.publish_embeddings
            else []
        )
        metrics.RECOGNIZER_FACES.labels("encoded").inc(len(usable))
        weights = [face_weight(face.box, face.score) for face in usable]
        track_ids, continued = self._track_ids(faces, usable, embeddings)
        outputs.extend(continued)
        if self.reassociation is not None:
            for track_id, e, w in zip(track_ids, embeddings, weights, strict=True):
                self.reassociation.remember(faces.camera_id, track_id, e, w)
        if self.snapshots is not None:
            self.snapshots.observe(faces, usable, track_ids, weights)
        queries, single, shifts = embeddings, [True] * len(usable), [0.0] * len(usable)
        calibration = self.fusion_calibration
        if self.fusion is not None and calibration is not None:  # match the fused best frames
            fused = [
                self.fusion.add(faces.camera_id, t, e, w)
                for t, e, w in zip(track_ids, embeddings, weights, strict=True)
            ]
            queries = np.stack([f.encoding for f in fused])
            weights = [f.weight for f in fused]
            single = [f.frames == 1 for f in fused]
            shifts = [calibration.shift(f.frames) for f in fused]
        found = self.index.search(queries, templates=single)  # fused vs fused: not calibrated
        for face, track_id, weight, shift, matches in zip(
            usable, track_ids, weights, shifts, found, strict=True
        ):
            best = matches[0] if matches else None
            events = self.voter.observe(
                faces.camera_id,
                track_id,
                faces.capture_ts,
                face.box,
                weight,
                best.person_id if best else None,
                best.distance + shift if best else None,  # on the single encodings' scale
            )
            outputs.extend(_outgoing(e) for e in events)
        return outputs

    def _embeddings(
        self, faces: FacesMessage, usable: list[DetectedFace], embeddings: np.ndarray
    ) -> Outgoing:
        message = EmbeddingsMessage(
            camera_id=faces.camera_id,
            seq=faces.seq,
            capture_ts=faces.capture_ts,
            model=self.encoder.name,
            faces=[
                FaceEmbedding(track_id=f.track_id, box=f.box, quality=f.score, embedding=e.tolist())
                for f, e in zip(usable, embeddings, strict=True)
            ],
        )
        return Outgoing(Topics.EMBEDDINGS, message.to_bytes(), faces.camera_id, message.headers())

    def tick(self, now: float) -> Iterable[Outgoing]:
        self.update_config()
        if not self._journal_loaded:
            self._load_journal()
        self._refresh_journal()
        ended = self.voter.expire(now)
        self._forget_fused(ended)
        if self.snapshots is not None:
            self.snapshots.tick()
        return self._pictured([_outgoing(e) for e in ended])

    def update_config(self) -> None:
        """Sync the gallery index (and the 1:K threshold) every ``gallery_sync_s``."""
        if time.monotonic() >= self._next_sync:
            self._next_sync = time.monotonic() + self.settings.gallery_sync_s
            self._sync_index()
            self._cache_names()
            self.voter.threshold = self.verifier.identification_threshold(
                self.index.people, self.identification_far
            )

    def _cache_names(self) -> None:
        """Names of every indexed person, read while the store is up, so that a Redis outage
        never turns an identification into ``person_name: null``."""
        if all(p in self._names for p in self.index.person_ids()):
            return
        try:
            self._names.update({p.id: p.name for p in self.gallery.people()})
        except Exception:  # noqa: BLE001 - the store is down: read again at the next sync
            log.debug("person names unavailable; kept the cached ones", exc_info=True)

    def _sync_index(self) -> None:
        """Sync; a mismatch that appears while running is logged (once per change) and the other
        encoder's encodings stay out of the index, rather than dead-lettering every frame."""
        try:
            self.index.sync()
        except EncoderMismatchError as error:
            if self._mismatch_logged != error.found:
                self._mismatch_logged = error.found
                log.error("%s; those encodings are ignored until then", error)
        else:
            self._mismatch_logged = {}

    def _name(self, person_id: str) -> str | None:
        if person_id not in self._names:
            try:
                self._names[person_id] = self.gallery.person(person_id).name
            except (PersonNotFoundError, GalleryError):
                return None  # deleted meanwhile, or the store is down: no name this time
        return self._names[person_id]


def _outgoing(event: RecognitionEvent) -> Outgoing:
    metrics.EVENTS.labels(event.type).inc()
    return Outgoing(Topics.EVENTS, event.to_bytes(), event.camera_id, event.headers())
