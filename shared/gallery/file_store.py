"""Gallery in a folder: one sub-folder per person, so deleting a person is deleting one folder.

    <root>/people/<person_id>/person.json        name, created
    <root>/people/<person_id>/<encoding_id>.npy  the encoding
    <root>/people/<person_id>/<encoding_id>.img  the enrollment photo as uploaded
    <root>/version                               bumped on every change (the change feed)

For one machine (the embedded default). Its change feed is coarse: any change makes followers
reload, which is cheap at the sizes one machine holds.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from shared.gallery.base import (
    Change,
    Encoding,
    Gallery,
    Person,
    PersonNotFoundError,
    new_id,
    now,
    validate_name,
    validate_vector,
)


class FileGallery(Gallery):
    def __init__(self, root: Path) -> None:
        self.root = root
        self._people_dir = root / "people"
        self._people_dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One writer at a time (CLI and services may share the folder); bump the version after."""
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
            self._write(self.root / "version", new_id().encode())

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def add_person(self, name: str) -> Person:
        name = validate_name(name)
        with self._writing():
            if self.find(name) is not None:
                raise ValueError(f"a person named {name!r} is already enrolled")
            person = Person(new_id(), name, now())
            folder = self._people_dir / person.id
            folder.mkdir()
            self._write(
                folder / "person.json",
                json.dumps({"name": name, "created_ts": person.created_ts}).encode(),
            )
        return person

    def add_encoding(self, person_id: str, vector: np.ndarray, image: bytes) -> str:
        vector = validate_vector(vector)
        folder = self._folder(person_id)
        encoding_id = new_id()
        with self._writing():
            self._write(folder / f"{encoding_id}.img", image)
            with open(folder / f".{encoding_id}.npy.tmp", "wb") as out:
                np.save(out, vector)
            os.replace(folder / f".{encoding_id}.npy.tmp", folder / f"{encoding_id}.npy")
        return encoding_id

    def delete_person(self, person_id: str) -> bool:
        folder = self._people_dir / person_id
        if not _is_id(person_id) or not folder.is_dir():
            return False
        with self._writing():
            shutil.rmtree(folder)
        return True

    def people(self) -> list[Person]:
        return sorted(
            (self._read_person(folder) for folder in self._people_dir.iterdir() if folder.is_dir()),
            key=lambda p: p.name,
        )

    def person(self, person_id: str) -> Person:
        return self._read_person(self._folder(person_id))

    def encodings(self, encoding_ids: list[str] | None = None) -> list[Encoding]:
        wanted = set(encoding_ids) if encoding_ids is not None else None
        found = []
        for path in self._people_dir.glob("*/*.npy"):
            if wanted is None or path.stem in wanted:
                found.append(Encoding(path.stem, path.parent.name, np.load(path)))
        return found

    def image(self, encoding_id: str) -> bytes:
        for path in self._people_dir.glob(f"*/{encoding_id}.img"):
            return path.read_bytes()
        raise KeyError(encoding_id)

    def cursor(self) -> str:
        try:
            return (self.root / "version").read_text()
        except FileNotFoundError:
            return ""

    def changes(self, cursor: str) -> tuple[str, list[Change]] | None:
        current = self.cursor()
        return (current, []) if current == cursor else None

    def _folder(self, person_id: str) -> Path:
        folder = self._people_dir / person_id
        if not _is_id(person_id) or not (folder / "person.json").is_file():
            raise PersonNotFoundError(person_id)
        return folder

    @staticmethod
    def _read_person(folder: Path) -> Person:
        meta = json.loads((folder / "person.json").read_text())
        encodings = tuple(sorted(p.stem for p in folder.glob("*.npy")))
        return Person(folder.name, meta["name"], meta["created_ts"], encodings)


def _is_id(value: str) -> bool:
    """Ids are uuid4 hex: refusing anything else keeps paths inside the gallery folder."""
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)
