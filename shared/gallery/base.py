"""The gallery interface, shared by the Redis store and the file store (the embedded default).

A person has a unique name, one or more encodings (one per enrollment photo: one-shot enrollment
is simply a person with one), and the photo each encoding came from. Deleting a person deletes all
of it. Recognizers do not query the store per face: they hold every encoding in memory
(``GalleryIndex``) and follow the store's change feed.
"""

from __future__ import annotations

import re
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

EMBEDDING_DIM = 128
LEGACY_ENCODER = "dlib_face_recognition_resnet_model_v1"
"""The encoder of records written before encodings carried their encoder's name: until then the
project had only dlib's ResNet, so an untagged encoding is one of dlib's."""
NAME_PATTERN = re.compile(r"^[\w][\w .'-]{0,99}$")


class GalleryError(RuntimeError):
    """The store is unreachable or inconsistent; callers retry or report."""


class PersonNotFoundError(KeyError):
    pass


class EncoderMismatchError(GalleryError):
    """The gallery holds encodings of another encoder than the one this process encodes with.

    Distances between two encoders' vectors mean nothing (different spaces), so comparing them
    would name people at random: refused, with the command that fixes it.
    """

    def __init__(self, expected: str, found: dict[str, int]) -> None:
        self.expected = expected
        self.found = dict(found)
        others = ", ".join(f"{n} encoding(s) of {name}" for name, n in sorted(found.items()))
        super().__init__(
            f"the gallery holds {others}, but this process encodes faces with {expected}: "
            f"encodings of different encoders cannot be compared. Run `facestream people "
            f"reencode` with the encoder you want (FACESTREAM_FACE__ENCODER) to rebuild every "
            f"encoding from the stored enrollment photos, or configure the gallery's encoder."
        )


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    created_ts: float
    encoding_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Encoding:
    id: str
    person_id: str
    vector: np.ndarray = field(repr=False)
    """(128,) float32."""
    encoder: str = LEGACY_ENCODER
    """Name (with version) of the encoder that made ``vector``; only its own encodings compare."""
    box: tuple[float, float, float, float] | None = None
    """(x, y, w, h) of the encoded face in the enrollment photo, so that ``people reencode`` picks
    the same face again; None for records written before it was kept."""


@dataclass(frozen=True)
class Change:
    """One entry of the change feed: only ids, never biometric data."""

    op: Literal["add", "delete"]
    person_id: str
    encoding_ids: tuple[str, ...]


def validate_name(name: str) -> str:
    name = name.strip()
    if not NAME_PATTERN.match(name):
        raise ValueError(f"invalid person name {name!r}: 1-100 letters, digits, spaces, . ' - _")
    return name


def validate_encoder(name: str) -> str:
    if not isinstance(name, str) or not re.match(r"^[\w.+-]{1,100}$", name):
        raise ValueError(f"invalid encoder name {name!r}")
    return name


def validate_box(box) -> tuple[float, float, float, float] | None:
    if box is None:
        return None
    values = tuple(float(v) for v in box)
    if len(values) != 4 or not all(np.isfinite(values)):
        raise ValueError("a face box is 4 finite numbers (x, y, w, h)")
    return values


def validate_vector(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vector.shape != (EMBEDDING_DIM,) or not np.all(np.isfinite(vector)):
        raise ValueError(f"an encoding must be {EMBEDDING_DIM} finite numbers")
    return vector


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


class Gallery(ABC):
    @abstractmethod
    def add_person(self, name: str) -> Person:
        """Create a person; ``ValueError`` if the name is taken or invalid."""

    @abstractmethod
    def add_encoding(
        self,
        person_id: str,
        vector: np.ndarray,
        image: bytes,
        *,
        encoder: str = LEGACY_ENCODER,
        box: tuple[float, float, float, float] | None = None,
    ) -> str:
        """Store one encoding with the photo it came from and the encoder that made it (and where
        the face is in the photo); returns the encoding id."""

    @abstractmethod
    def replace_encoding(
        self,
        encoding_id: str,
        vector: np.ndarray,
        *,
        encoder: str,
        box: tuple[float, float, float, float] | None = None,
    ) -> str:
        """Swap one encoding for a new one of the same photo (``people reencode``); returns the
        new id. Atomic as far as the store allows: the new encoding is written before the old
        one goes, so an interruption never loses a photo. The change feed reports the old id as
        deleted and the new one as added, so followers see the change like any other.
        ``KeyError`` if the encoding no longer exists."""

    @abstractmethod
    def delete_person(self, person_id: str) -> bool:
        """Delete the person, every encoding and every stored image; False if unknown."""

    @abstractmethod
    def people(self) -> list[Person]: ...

    @abstractmethod
    def person(self, person_id: str) -> Person:
        """The person, or ``PersonNotFoundError``."""

    @abstractmethod
    def encodings(self, encoding_ids: list[str] | None = None) -> list[Encoding]:
        """The given encodings (those that still exist), or all of them."""

    @abstractmethod
    def image(self, encoding_id: str) -> bytes:
        """The enrollment photo an encoding came from."""

    @abstractmethod
    def cursor(self) -> str:
        """Position of the latest change; ``changes(cursor)`` returns what came after it."""

    @abstractmethod
    def changes(self, cursor: str) -> tuple[str, list[Change]] | None:
        """(new cursor, changes after ``cursor``), or None when the caller must reload everything."""

    def find(self, name: str) -> Person | None:
        return next((p for p in self.people() if p.name == name), None)
