"""The recognizer service: faces in, recognition events per track out.

The chips of a whole poll are encoded in one batch, matched against the in-memory gallery index (kept in
sync with the store's change feed from ``tick``), and fed to the track voter, which turns a
stream of per-frame matches into a few events per track. With the liveness gate on, the recognizer
also consumes the liveness service's verdicts: a track is named only once judged live, and a
track judged an attack gets a ``spoof`` event instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np

from services.recognizer.voting import TrackVoter, face_weight
from shared import metrics
from shared.bus.base import Message
from shared.face.chip_kinds import check_chip_kind
from shared.face.chips import chip_from_b64
from shared.face.encoder import FaceEncoder
from shared.face.verification import Verifier, index_metric
from shared.gallery.base import Gallery, GalleryError, PersonNotFoundError
from shared.gallery.index import GalleryIndex
from shared.schemas import (
    DetectedFace,
    EmbeddingsMessage,
    FaceEmbedding,
    FacesMessage,
    LivenessVerdict,
    RecognitionEvent,
    Topics,
)
from shared.settings import RecognizerSettings
from shared.worker import BatchWorker, Outgoing


class RecognizerWorker(BatchWorker):
    name = "recognizer"

    def __init__(
        self,
        encoder: FaceEncoder,
        gallery: Gallery,
        verifier: Verifier,
        settings: RecognizerSettings,
        identification_far: float = 0.01,
        liveness_gate: bool = False,
    ) -> None:
        """``verifier``: the decision rule (shared/face/factory.build_verifier)."""
        self.topics = (Topics.FACES, Topics.LIVENESS) if liveness_gate else (Topics.FACES,)
        self.encoder = encoder
        self.gallery = gallery
        self.index = GalleryIndex(gallery, index_metric(verifier))
        self.settings = settings
        self.verifier = verifier
        self.identification_far = identification_far
        self._next_sync = 0.0
        self._names: dict[str, str] = {}
        self._latest_capture: dict[str, float] = {}
        self.voter = TrackVoter(
            verifier.threshold,
            verifier.confidence,
            self._name,
            min_frames=settings.min_frames,
            track_timeout_s=settings.track_timeout_s,
            require_live=liveness_gate,
        )

    def process_batch(self, messages: list[Message]) -> list[list[Outgoing] | Exception]:
        """Decode every chip of the poll, encode them in one call, then vote frame by frame."""
        results: list[list[Outgoing] | Exception] = [[] for _ in messages]
        frames: list[tuple[int, FacesMessage, list[DetectedFace], np.ndarray]] = []
        for i, message in enumerate(messages):
            try:
                if message.topic == Topics.LIVENESS:
                    results[i] = self._judged(message)
                    continue
                frame = self._usable_faces(message)
            except Exception as error:  # noqa: BLE001 - dead-lettered by the runner
                results[i] = error
                continue
            if frame is not None:
                frames.append((i, *frame))
        if not frames:
            return results
        self._sync_if_due()
        embeddings = self.encoder.encode(np.concatenate([chips for *_, chips in frames]))
        start = 0
        for i, faces, usable, _chips in frames:
            vectors = embeddings[start : start + len(usable)]
            start += len(usable)
            results[i] = self._vote(faces, usable, vectors)
        return results

    def _judged(self, message: Message) -> list[Outgoing]:
        verdict = LivenessVerdict.from_message(message)
        events = self.voter.judged(verdict.camera_id, verdict.track_id, verdict.live)
        return [_outgoing(e) for e in events]

    def _usable_faces(
        self, message: Message
    ) -> tuple[FacesMessage, list[DetectedFace], np.ndarray] | None:
        """The frame's faces that carry a chip and a track, with the chips decoded; None to skip."""
        faces = FacesMessage.from_message(message)
        if faces.capture_ts <= self._latest_capture.get(faces.camera_id, float("-inf")):
            return None  # a replay after a restart (at-least-once): already counted
        self._latest_capture[faces.camera_id] = faces.capture_ts
        usable = [f for f in faces.faces if f.chip_jpeg_b64 and f.track_id is not None]
        if not usable:
            return None
        for face in usable:  # a chip cut for another encoder would give a meaningless encoding
            check_chip_kind(face.chip_kind, self.encoder.chip_kind)
        return faces, usable, np.stack([chip_from_b64(f.chip_jpeg_b64) for f in usable])

    def _vote(
        self, faces: FacesMessage, usable: list[DetectedFace], embeddings: np.ndarray
    ) -> list[Outgoing]:
        outputs = (
            [self._embeddings(faces, usable, embeddings)]
            if self.settings.publish_embeddings
            else []
        )
        for face, matches in zip(usable, self.index.search(embeddings), strict=True):
            best = matches[0] if matches else None
            events = self.voter.observe(
                faces.camera_id,
                face.track_id,
                faces.capture_ts,
                face.box,
                face_weight(face.box, face.score),
                best.person_id if best else None,
                best.distance if best else None,
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
        self._sync_if_due()
        return [_outgoing(e) for e in self.voter.expire(now)]

    def _sync_if_due(self) -> None:
        if time.monotonic() >= self._next_sync:
            self._next_sync = time.monotonic() + self.settings.gallery_sync_s
            self.index.sync()
            self.voter.threshold = self.verifier.identification_threshold(
                self.index.people, self.identification_far
            )

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
