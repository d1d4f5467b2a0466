"""Gallery in a folder: one sub-folder per person, so deleting a person is deleting one folder.

    <root>/people/<person_id>/person.json        name, created
    <root>/people/<person_id>/<encoding_id>.npy  the encoding
    <root>/people/<person_id>/<encoding_id>.json {"encoder", "box"[, "replaces"]} (absent in
                                                 records older than it: dlib's, see LEGACY_ENCODER)
    <root>/people/<person_id>/<encoding_id>.img  the enrollment photo as uploaded
    <root>/version                               bumped on every change (the change feed)

For one machine (the embedded default). Its change feed is coarse: any change makes followers
reload, which is cheap at the sizes one machine holds. Writers hold an exclusive lock on
``<root>/.lock``, readers of encodings a shared one, so a reader never sees an encoding without
its record (the ``.npy`` is written last and removed first).
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
    LEGACY_ENCODER,
    Change,
    Encoding,
    Gallery,
    Person,
    PersonNotFoundError,
    new_id,
    now,
    validate_box,
    validate_encoder,
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

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Shared with other readers, excluded while a writer is half-way through a change."""
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            yield

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

    def add_encoding(
        self,
        person_id: str,
        vector: np.ndarray,
        image: bytes,
        *,
        encoder: str,
        box: tuple[float, float, float, float] | None = None,
    ) -> str:
        vector = validate_vector(vector)
        record = {"encoder": validate_encoder(encoder), "box": validate_box(box)}
        folder = self._folder(person_id)
        encoding_id = new_id()
        with self._writing():
            self._write_encoding(folder, encoding_id, vector, image, record)
        return encoding_id

    def replace_encoding(
        self,
        encoding_id: str,
        vector: np.ndarray,
        *,
        encoder: str,
        box: tuple[float, float, float, float] | None = None,
    ) -> str:
        """New files first, then the old ones go: a crash in between leaves both, and the new
        record's ``replaces`` lets the next call finish the job instead of adding a duplicate."""
        vector = validate_vector(vector)
        record = {"encoder": validate_encoder(encoder), "box": validate_box(box)}
        with self._writing():
            old = self._encoding_path(encoding_id)
            folder = old.parent
            done = self._replacement_of(folder, encoding_id)
            if done is None:
                done = new_id()
                image = (folder / f"{encoding_id}.img").read_bytes()
                record["replaces"] = encoding_id
                self._write_encoding(folder, done, vector, image, record)
            self._remove_encoding_files(folder, encoding_id)
        return done

    def _write_encoding(
        self, folder: Path, encoding_id: str, vector: np.ndarray, image: bytes, record: dict
    ) -> None:
        """Photo, record, then the vector (the file that makes the encoding exist), each atomic."""
        self._write(folder / f"{encoding_id}.img", image)
        self._write(folder / f"{encoding_id}.json", json.dumps(record).encode())
        with open(folder / f".{encoding_id}.npy.tmp", "wb") as out:
            np.save(out, vector)
        os.replace(folder / f".{encoding_id}.npy.tmp", folder / f"{encoding_id}.npy")

    @staticmethod
    def _remove_encoding_files(folder: Path, encoding_id: str) -> None:
        for suffix in (".npy", ".json", ".img"):  # the vector first: it makes the encoding exist
            (folder / f"{encoding_id}{suffix}").unlink(missing_ok=True)

    @staticmethod
    def _replacement_of(folder: Path, encoding_id: str) -> str | None:
        """The encoding already written to replace ``encoding_id`` (an interrupted replace)."""
        for path in folder.glob("*.json"):
            if path.name == "person.json" or not (folder / f"{path.stem}.npy").is_file():
                continue
            if json.loads(path.read_text()).get("replaces") == encoding_id:
                return path.stem
        return None

    def _encoding_path(self, encoding_id: str) -> Path:
        if _is_id(encoding_id):
            for path in self._people_dir.glob(f"*/{encoding_id}.npy"):
                return path
        raise KeyError(encoding_id)

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
        with self._reading():
            for path in self._people_dir.glob("*/*.npy"):
                if wanted is None or path.stem in wanted:
                    found.append(_read_encoding(path))
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


def _read_encoding(path: Path) -> Encoding:
    record_path = path.with_suffix(".json")
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    box = record.get("box")
    return Encoding(
        path.stem,
        path.parent.name,
        np.load(path),
        record.get("encoder", LEGACY_ENCODER),
        tuple(box) if box is not None else None,
    )


def _is_id(value: str) -> bool:
    """Ids are uuid4 hex: refusing anything else keeps paths inside the gallery folder."""
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)
