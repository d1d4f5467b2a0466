"""``facestream people reencode``: rebuild every stored encoding with the configured encoder.

Why: encodings of two encoders live in different spaces, so after switching encoder
(``FACESTREAM_FACE__ENCODER``) the gallery must be re-encoded before anything compares against it
(the index refuses a mixed gallery). The enrollment photos are stored with their encodings, so no
one has to enroll again: each photo is detected and encoded anew, and the face that was enrolled
is found again by its recorded box (or, for records older than the box, by the enrollment rule:
the only face, or one 4x larger than any other).

Safe to interrupt and to run again: each photo is replaced on its own, atomically (the new
encoding is written before the old one is removed, in one Redis transaction), and a run only
touches encodings that are not yet the configured encoder's, so a second run resumes where the
first stopped. A photo where the face is not found again is reported and kept as it is, never
deleted. Followers (recognizers) see the replacements through the store's change feed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.errors import ProcessingError
from shared.face.identity import DOMINANT_AREA_RATIO
from shared.face.pipeline import AnalyzedFace, FacePipeline
from shared.face.types import box4, box_iou
from shared.gallery.base import Encoding, Gallery, PersonNotFoundError
from shared.images import decode_image

log = logging.getLogger(__name__)

MIN_BOX_IOU = 0.3
"""A detection overlapping the recorded box at least this much is the enrolled face."""


@dataclass(frozen=True)
class Kept:
    person: str
    encoding_id: str
    encoder: str
    why: str


@dataclass
class ReencodeReport:
    encoder: str
    people: int = 0
    photos: int = 0
    """Photos in the gallery."""
    reencoded: int = 0
    already: int = 0
    """Photos already encoded by ``encoder`` (left alone: what makes a second run resume)."""
    kept: list[Kept] = field(default_factory=list)
    """Photos whose face was not found again: left with their old encoding."""


Progress = Callable[[int, int, str], None]
"""progress(done, total, person name) after each photo to re-encode."""


def reencode_gallery(
    gallery: Gallery, pipeline: FacePipeline, progress: Progress | None = None
) -> ReencodeReport:
    """Re-encode every photo not yet encoded by ``pipeline.encoder``; see the module docstring."""
    target = pipeline.encoder.name
    report = ReencodeReport(target)
    people = gallery.people()
    stale: list[tuple[str, Encoding]] = []
    for person in people:
        for encoding in gallery.encodings(list(person.encoding_ids)):
            report.photos += 1
            if encoding.encoder == target:
                report.already += 1
            else:
                stale.append((person.name, encoding))
    report.people = len(people)
    for done, (name, encoding) in enumerate(stale, start=1):
        why = _reencode_one(gallery, pipeline, encoding)
        if why is None:
            report.reencoded += 1
        else:
            report.kept.append(Kept(name, encoding.id, encoding.encoder, why))
            log.warning("reencode: kept photo %s of %s: %s", encoding.id, name, why)
        if progress is not None:
            progress(done, len(stale), name)
    return report


def _reencode_one(gallery: Gallery, pipeline: FacePipeline, encoding: Encoding) -> str | None:
    """Replace one encoding; None when done, else why the photo was kept as it is."""
    try:
        image = decode_image(gallery.image(encoding.id))
    except KeyError:
        return "the photo is gone (deleted meanwhile)"
    except ProcessingError as error:
        return f"the stored photo does not decode: {error}"
    face, why = enrolled_face(pipeline.analyze(image), encoding.box)
    if face is None:
        return why
    try:
        gallery.replace_encoding(
            encoding.id,
            face.embedding,
            encoder=pipeline.encoder.name,
            box=box4(face.detection.box),
        )
    except (KeyError, PersonNotFoundError):
        return "deleted meanwhile"
    return None


def enrolled_face(
    faces: list[AnalyzedFace], box: tuple[float, float, float, float] | None
) -> tuple[AnalyzedFace | None, str]:
    """The face of a photo that was enrolled: the one at ``box``, else by the enrollment rule."""
    if not faces:
        return None, "no face found in the photo by the configured pipeline"
    if box is not None:
        best = max(faces, key=lambda f: box_iou(f.detection.box, box))
        if box_iou(best.detection.box, box) >= MIN_BOX_IOU:
            return best, ""
        return None, "the enrolled face was not found again at its recorded place"
    faces = sorted(faces, key=lambda f: f.detection.area, reverse=True)
    if len(faces) > 1 and faces[0].detection.area < DOMINANT_AREA_RATIO * faces[1].detection.area:
        return None, (
            f"{len(faces)} faces and no record of which was enrolled (enrolled before boxes were "
            "kept): delete and re-enroll this person with --face N"
        )
    return faces[0], ""
