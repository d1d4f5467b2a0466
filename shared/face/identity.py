"""Enroll, verify (1:1), identify (1:K) and delete: the operations the CLI and the API offer.

One-shot by design: enrolling stores the encoding of one photo (or of each photo given) and never
retrains anything; identification compares a probe against every enrolled encoding and answers
"unknown" when even the closest is farther than the calibrated threshold tau.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.errors import ProcessingError
from shared.face.fusion_calibration import load_fusion_calibration
from shared.face.pipeline import AnalyzedFace, FacePipeline
from shared.face.types import box4
from shared.face.verification import Verdict, Verifier, index_metric, verify
from shared.gallery.base import EncoderMismatchError, Gallery, Person, PersonNotFoundError
from shared.gallery.index import GalleryIndex
from shared.images import decode_image

log = logging.getLogger(__name__)

DOMINANT_AREA_RATIO = 4.0
"""A face this many times larger than any other in an enrollment photo is its subject; background
faces do not make the photo ambiguous. Below that ratio the caller must pick the face."""

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class EnrollmentError(ProcessingError):
    """The photo cannot enroll anyone: no face, several faces (pick one), unreadable."""


@dataclass(frozen=True)
class FaceBox:
    x: float
    y: float
    w: float
    h: float

    @classmethod
    def of(cls, face: AnalyzedFace) -> FaceBox:
        return cls(*(round(float(v), 1) for v in face.detection.box))


@dataclass(frozen=True)
class Candidate:
    person_id: str
    name: str
    distance: float
    confidence: float


@dataclass(frozen=True)
class IdentifiedFace:
    box: FaceBox
    person_id: str | None
    """None when the closest enrolled person is farther than tau: unknown."""
    name: str | None
    distance: float | None
    confidence: float | None
    threshold: float
    """The 1:K threshold this answer used (it depends on how many people are enrolled)."""
    candidates: list[Candidate] = field(default_factory=list)


@dataclass(frozen=True)
class PhotoVerification:
    """How 1:1 verification of two photos encodes their faces, and the rule that decides.

    Both faces are fresh, so both can be jittered (shared/face/jitter.py); jittered encodings sit
    closer together than single ones and need a threshold calibrated on jittered encodings.
    """

    jitters: int
    verifier: Verifier


@dataclass(frozen=True)
class Enrolled:
    person: Person
    encoding_id: str
    box: FaceBox


class IdentityService:
    def __init__(
        self,
        pipeline: FacePipeline,
        gallery: Gallery,
        verifier: Verifier,
        identification_far: float = 0.01,
        photo_verification: PhotoVerification | None = None,
    ) -> None:
        """``verifier``: the decision rule (a Calibration for squared L2, or a binary head) for
        everything compared with the gallery; ``photo_verification``: for ``verify`` of two photos
        (default: single encodings and ``verifier``)."""
        self.pipeline = pipeline
        self.gallery = gallery
        self.verifier = verifier
        self.photo_verification = photo_verification or PhotoVerification(0, verifier)
        self.identification_far = identification_far
        fusion = load_fusion_calibration(self.encoder_name, verifier.name)
        self.index = GalleryIndex(
            gallery,
            index_metric(verifier),
            encoder=self.encoder_name,
            templates=fusion is not None,  # multi-photo templates need their distance shift
            template_shift=fusion.shift if fusion else None,
        )

    @property
    def encoder_name(self) -> str:
        """The encoder every encoding this service stores or compares must come from."""
        return self.pipeline.encoder.name

    def check_gallery_encoder(self) -> None:
        """``EncoderMismatchError`` (naming ``facestream people reencode``) if the gallery holds
        encodings of another encoder: loads the index on first use, then trusts its last sync."""
        if not self.index.loaded:
            self.index.sync()
        self.index.check_encoder()

    def enroll(self, name: str, image: bytes, face_index: int | None = None) -> Enrolled:
        """Enroll ``name`` from one photo (adding to the person if already enrolled).

        Refused when the gallery holds another encoder's encodings: mixing them would make a
        gallery no single process can compare against.
        """
        self.check_gallery_encoder()
        face = self._single_face(image, face_index)
        person = self.gallery.find(name) or self.gallery.add_person(name)
        encoding_id = self.gallery.add_encoding(
            person.id,
            face.embedding,
            image,
            encoder=self.encoder_name,
            box=box4(face.detection.box),
        )
        log.info("enrolled an encoding for person %s", person.id)
        return Enrolled(self.gallery.person(person.id), encoding_id, FaceBox.of(face))

    def enroll_folder(self, root: Path) -> tuple[list[Enrolled], list[tuple[Path, str]]]:
        """Bulk enrollment from ``root/NAME/*.jpg``: (enrolled, [(photo, why it was skipped)])."""
        enrolled, skipped = [], []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            for photo in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                try:
                    enrolled.append(self.enroll(folder.name, photo.read_bytes()))
                except (ProcessingError, ValueError) as error:
                    skipped.append((photo, str(error)))
        return enrolled, skipped

    def _single_face(self, image: bytes, face_index: int | None) -> AnalyzedFace:
        faces = self.pipeline.analyze(decode_image(image))
        if not faces:
            raise EnrollmentError("no_face", "no face found in the photo")
        faces = sorted(
            faces, key=lambda f: f.detection.area, reverse=True
        )  # indexes: largest first
        if face_index is not None:
            if not 0 <= face_index < len(faces):
                raise EnrollmentError("bad_face_index", f"face {face_index} of {len(faces)}")
            return faces[face_index]
        if (
            len(faces) > 1
            and faces[0].detection.area < DOMINANT_AREA_RATIO * faces[1].detection.area
        ):
            boxes = "; ".join(
                f"{i}: {b.w:.0f}x{b.h:.0f} at ({b.x:.0f},{b.y:.0f})"
                for i, b in enumerate(FaceBox.of(f) for f in faces)
            )
            raise EnrollmentError(
                "several_faces", f"{len(faces)} faces in the photo; pick one by index ({boxes})"
            )
        return faces[0]

    def encode_one(self, image: bytes, jitters: int = 0) -> AnalyzedFace:
        """The most prominent face of a photo (largest), for verification."""
        face = self.pipeline.analyze_main(decode_image(image), jitters)
        if face is None:
            raise EnrollmentError("no_face", "no face found in the photo")
        return face

    def verify(self, first: bytes, second: bytes) -> Verdict:
        """1:1: are the main faces of two photos the same person?"""
        jitters, verifier = self.photo_verification.jitters, self.photo_verification.verifier
        first_face, second_face = self.encode_one(first, jitters), self.encode_one(second, jitters)
        return verify(first_face.embedding, second_face.embedding, verifier)

    def verify_person(self, image: bytes, person_id: str) -> Verdict:
        """1:1 against a claimed identity: the closest of the person's enrolled encodings (single
        encodings, like the gallery's)."""
        person = self.gallery.person(person_id)
        encodings = self.gallery.encodings(list(person.encoding_ids))
        foreign = Counter(e.encoder for e in encodings if e.encoder != self.encoder_name)
        if foreign:
            raise EncoderMismatchError(self.encoder_name, foreign)
        probe = self.encode_one(image).embedding
        verdicts = [verify(probe, e.vector, self.verifier) for e in encodings]
        if not verdicts:
            raise PersonNotFoundError(person_id)
        return min(verdicts, key=lambda v: v.distance)

    def identify(self, image: bytes, top_k: int = 1) -> list[IdentifiedFace]:
        """1:K for every face of the photo; an image without faces gives an empty list."""
        faces = self.pipeline.analyze(decode_image(image))
        if not faces:
            return []
        self.index.sync()
        names = {p.id: p.name for p in self.gallery.people()}
        threshold = self.identification_threshold()
        matches = self.index.search(np.stack([f.embedding for f in faces]), top_k=max(1, top_k))
        return [
            self._identified(face, found, names, threshold)
            for face, found in zip(faces, matches, strict=True)
        ]

    def identification_threshold(self) -> float:
        """tau for the current gallery size (stricter than 1:1 as the gallery grows)."""
        return self.verifier.identification_threshold(self.index.people, self.identification_far)

    def _identified(
        self, face: AnalyzedFace, matches, names: dict[str, str], threshold: float
    ) -> IdentifiedFace:
        candidates = [
            Candidate(
                m.person_id,
                names.get(m.person_id, "?"),
                m.distance,
                float(self.verifier.confidence(m.distance)),
            )
            for m in matches
        ]
        best = candidates[0] if candidates and candidates[0].distance <= threshold else None
        return IdentifiedFace(
            box=FaceBox.of(face),
            person_id=best.person_id if best else None,
            name=best.name if best else None,
            distance=candidates[0].distance if candidates else None,
            confidence=candidates[0].confidence if candidates else None,
            threshold=threshold,
            candidates=candidates,
        )

    def delete(self, person_id: str) -> bool:
        return self.gallery.delete_person(person_id)

    def resolve(self, name_or_id: str) -> Person:
        """A person by name, or by id."""
        person = self.gallery.find(name_or_id)
        if person is not None:
            return person
        return self.gallery.person(name_or_id)
