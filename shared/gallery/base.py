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
NAME_PATTERN = re.compile(r"^[\w][\w .'-]{0,99}$")


class GalleryError(RuntimeError):
    """The store is unreachable or inconsistent; callers retry or report."""


class PersonNotFoundError(KeyError):
    pass


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
    def add_encoding(self, person_id: str, vector: np.ndarray, image: bytes) -> str:
        """Store one encoding with the photo it came from; returns the encoding id."""

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
