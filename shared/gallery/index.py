"""The in-memory matrix of every gallery encoding, kept in sync with the store's change feed.

1:K search is one matrix product (|q|^2 + |g|^2 - 2 q.g) over a contiguous float32 matrix, then a
partial sort; no per-face round trip to Redis. Rows are appended into spare capacity and removed
by moving the last row into the hole, so changes cost O(1) rows, not a rebuild.

The index knows which encoder its queries come from (``encoder``): rows of any other encoder are
never loaded, and their presence makes ``sync`` raise ``EncoderMismatchError`` (the two encoders'
distances mean nothing to each other). A person enrolled from several photos also gets a
*template*, the fused encoding of their photos (shared/face/fusion.py), which search compares
against beside the single photos: the mean of several photos cancels part of each photo's pose
and lighting, so it is often closer to a new view of the person than any one photo.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from shared.face.fusion import fuse_encodings
from shared.gallery.base import (
    EMBEDDING_DIM,
    EncoderMismatchError,
    Encoding,
    Gallery,
    GalleryError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Match:
    person_id: str
    distance: float
    """Distance to the person's closest encoding or template: squared L2, or the index's
    ``metric``."""
    template: bool = False
    """True when the closest was the person's template (fused encoding of several photos)."""


class GalleryIndex:
    def __init__(
        self,
        gallery: Gallery | None = None,
        metric: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        encoder: str | None = None,
        templates: bool = True,
        template_shift: Callable[[int], float] | None = None,
    ) -> None:
        """Follow ``gallery``; without one the index holds only rows given to ``add_local``.

        ``metric(queries, matrix)`` -> (M, N) distances (lower = more alike) replaces the squared
        L2 distance, e.g. a binary head's 1 - P(same) (shared/face/verification.Verifier).
        ``encoder``: the name of the encoder the queries come from (``FaceEncoder.name``); rows
        of other encoders are refused. None accepts any (benchmarks that add rows themselves).
        ``templates``: also match against each multi-photo person's fused encoding, whose
        distances get ``template_shift(photos fused)`` added (shared/face/fusion_calibration.py:
        fused encodings sit closer to everyone; None adds nothing).
        """
        self.gallery = gallery
        self.metric = metric
        self.encoder = encoder
        self.use_templates = templates
        self.template_shift = template_shift
        self._foreign: dict[str, str] = {}
        """Encodings of other encoders in the store (id -> encoder): never loaded."""
        self._person_rows: dict[str, set[str]] = {}
        self._templates: dict[str, tuple[np.ndarray, int]] = {}
        """Person -> (fused encoding of their photos, how many photos)."""
        self._template_block: tuple[np.ndarray, np.ndarray, list[str], np.ndarray] | None = None
        self._lock = threading.RLock()
        self._matrix = np.empty((0, EMBEDDING_DIM), np.float32)
        self._norms = np.empty(0, np.float32)
        self._owners: list[str] = []
        self._rows: dict[str, int] = {}
        self._encoding_ids: list[str] = []
        self._people: Counter[str] = Counter()
        self._cursor: str | None = None

    def __len__(self) -> int:
        return len(self._owners)

    @property
    def loaded(self) -> bool:
        """Whether the index has read its store at least once."""
        return self._cursor is not None

    @property
    def people(self) -> int:
        """Distinct enrolled people: the K of 1:K."""
        return len(self._people)

    def person_ids(self) -> list[str]:
        """The people with at least one indexed encoding."""
        with self._lock:
            return list(self._people)

    def reload(self) -> None:
        """Load every encoding; the cursor is read first so no change is missed in between."""
        assert self.gallery is not None, "only an index that follows a gallery reloads"
        cursor = self.gallery.cursor()
        encodings = self.gallery.encodings()
        with self._lock:
            self._matrix = np.empty((max(16, len(encodings) * 2), EMBEDDING_DIM), np.float32)
            self._norms = np.empty(len(self._matrix), np.float32)
            self._owners, self._rows, self._encoding_ids = [], {}, []
            self._people = Counter()
            self._foreign, self._person_rows, self._templates = {}, {}, {}
            self._template_block = None
            self._add(encodings)
            self._cursor = cursor
        log.info("gallery index: %d encodings loaded", len(self._owners))

    def foreign_encoders(self) -> Counter[str]:
        """Encodings in the store per other encoder (empty when the gallery is consistent)."""
        with self._lock:
            return Counter(self._foreign.values())

    def check_encoder(self) -> None:
        """``EncoderMismatchError`` if the store holds encodings of another encoder."""
        foreign = self.foreign_encoders()
        if foreign:
            raise EncoderMismatchError(self.encoder or "?", foreign)

    def sync(self) -> bool:
        """Apply the changes since the last sync (or reload); False if the store is unreachable.

        Raises ``EncoderMismatchError`` (after applying the changes: the index then holds the
        encodings of its own encoder only) when the store holds encodings of another encoder.
        """
        if self.gallery is None:
            return True
        synced = self._sync()
        self.check_encoder()
        return synced

    def _sync(self) -> bool:
        assert self.gallery is not None, "sync() returns early without a gallery"
        try:
            if self._cursor is None:
                self.reload()
                return True
            result = self.gallery.changes(self._cursor)
            if result is None:
                self.reload()
                return True
            cursor, changes = result
            added = [e for c in changes if c.op == "add" for e in c.encoding_ids]
            removed = [e for c in changes if c.op == "delete" for e in c.encoding_ids]
            new = self.gallery.encodings([e for e in added if e not in removed]) if added else []
        except GalleryError as error:
            log.warning("gallery index: sync failed (%s); serving the last known gallery", error)
            return False
        with self._lock:
            for encoding_id in removed:
                self._remove(encoding_id)
            self._add([e for e in new if e.id not in self._rows])
            self._cursor = cursor
        return True

    def add_local(self, encodings: list[Encoding]) -> None:
        """Add rows directly (benchmarks, evaluations); enrollment goes through the store's feed."""
        with self._lock:
            self._add(encodings)

    def _add(self, encodings: list[Encoding]) -> None:
        if self.encoder is not None:
            for e in encodings:
                if e.encoder != self.encoder:
                    self._foreign[e.id] = e.encoder
            encodings = [e for e in encodings if e.encoder == self.encoder]
        if not encodings:
            return
        size = len(self._owners)
        needed = size + len(encodings)
        if needed > len(self._matrix):
            capacity = max(needed, 2 * len(self._matrix))
            matrix = np.empty((capacity, EMBEDDING_DIM), np.float32)
            matrix[:size] = self._matrix[:size]
            norms = np.empty(capacity, np.float32)
            norms[:size] = self._norms[:size]
            self._matrix, self._norms = matrix, norms
        block = np.stack([e.vector for e in encodings]).astype(np.float32)
        self._matrix[size:needed] = block
        self._norms[size:needed] = np.einsum("ij,ij->i", block, block)
        for offset, encoding in enumerate(encodings):
            self._rows[encoding.id] = size + offset
            self._people[encoding.person_id] += 1
            self._owners.append(encoding.person_id)
            self._encoding_ids.append(encoding.id)
            self._person_rows.setdefault(encoding.person_id, set()).add(encoding.id)
        self._refresh_templates({e.person_id for e in encodings})

    def _refresh_templates(self, people: set[str]) -> None:
        """Re-fuse the templates of the people whose rows changed (two photos or more)."""
        if not self.use_templates:
            return
        for person in people:
            ids = self._person_rows.get(person, ())
            if len(ids) >= 2:
                rows = self._matrix[[self._rows[e] for e in sorted(ids)]]
                self._templates[person] = (fuse_encodings(rows), len(rows))
            else:
                self._templates.pop(person, None)
        self._template_block = None

    def _remove(self, encoding_id: str) -> None:
        self._foreign.pop(encoding_id, None)
        row = self._rows.pop(encoding_id, None)
        if row is None:
            return
        owner = self._owners[row]
        self._person_rows[owner].discard(encoding_id)
        if not self._person_rows[owner]:
            del self._person_rows[owner]
        self._people[owner] -= 1
        if not self._people[owner]:
            del self._people[owner]
        last = len(self._owners) - 1
        if row != last:
            moved = self._encoding_ids[last]
            self._matrix[row] = self._matrix[last]
            self._norms[row] = self._norms[last]
            self._owners[row] = self._owners[last]
            self._encoding_ids[row] = moved
            self._rows[moved] = row
        self._owners.pop()
        self._encoding_ids.pop()
        self._refresh_templates({owner})

    @property
    def templates(self) -> int:
        """People matched through a template (enrolled from two photos or more)."""
        return len(self._templates)

    def _template_rows(self) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray] | None:
        """(matrix, squared norms, owners, distance shifts) of the templates, rebuilt after a
        change."""
        if not self._templates or not self.use_templates:
            return None
        if self._template_block is None:
            owners = sorted(self._templates)
            matrix = np.stack([self._templates[p][0] for p in owners]).astype(np.float32)
            shift = self.template_shift or (lambda _n: 0.0)
            shifts = np.array([shift(self._templates[p][1]) for p in owners], np.float32)
            norms = np.einsum("ij,ij->i", matrix, matrix)
            self._template_block = (matrix, norms, owners, shifts)
        return self._template_block

    def search(
        self, queries: np.ndarray, top_k: int = 1, templates: bool | Sequence[bool] = True
    ) -> list[list[Match]]:
        """For each query, the ``top_k`` closest people (each at their closest encoding, or
        template when that is closer).

        ``templates`` (one flag, or one per query): whether the query is also compared with the
        templates. Pass False for queries that are themselves fused (a track's fused frames): two
        fused vectors have both their noise averaged out, so impostor pairs sit closer than the
        single-vs-single pairs the thresholds were calibrated on (bench.fusion measured a false
        name on the street crowd that way, and none with one side single).
        """
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        flags = np.broadcast_to(np.asarray(templates, bool), (len(queries),))
        with self._lock:
            size = len(self._owners)
            if size == 0:
                return [[] for _ in queries]
            matrix, norms, owners = self._matrix[:size], self._norms[:size], self._owners
            distances = self._distances(queries, matrix, norms)
            block = self._template_rows()
            if block is None or not flags.any():
                return [self._best_people(row, owners, top_k) for row in distances]
            t_distances = self._distances(queries[flags], block[0], block[1]) + block[3][None, :]
            t_rows = iter(t_distances)
            return [
                self._merge(
                    self._best_people(row, owners, top_k, all_candidates=True),
                    self._best_people(next(t_rows), block[2], top_k, all_candidates=True),
                    top_k,
                )
                if flag
                else self._best_people(row, owners, top_k)
                for row, flag in zip(distances, flags, strict=True)
            ]

    def _distances(self, queries: np.ndarray, matrix: np.ndarray, norms: np.ndarray) -> np.ndarray:
        if self.metric is not None:
            return np.asarray(self.metric(queries, matrix))
        distances = np.einsum("ij,ij->i", queries, queries)[:, None] + norms[None, :]
        distances -= 2.0 * (queries @ matrix.T)
        return distances

    @staticmethod
    def _merge(rows: list[Match], templates: list[Match], top_k: int) -> list[Match]:
        best = {m.person_id: m for m in rows}
        for m in templates:
            if m.person_id not in best or m.distance < best[m.person_id].distance:
                best[m.person_id] = Match(m.person_id, m.distance, template=True)
        return sorted(best.values(), key=lambda m: m.distance)[:top_k]

    @staticmethod
    def _best_people(
        distances: np.ndarray, owners: list[str], top_k: int, all_candidates: bool = False
    ) -> list[Match]:
        # People can have several encodings: take enough candidates to find top_k distinct ones.
        take = min(len(distances), max(top_k * 8, 32))
        candidates = (
            np.argpartition(distances, take - 1)[:take]
            if take < len(distances)
            else np.arange(len(distances))
        )
        best: dict[str, float] = {}
        for row in candidates[np.argsort(distances[candidates])]:
            person = owners[row]
            if person not in best:
                best[person] = max(0.0, float(distances[row]))
                if len(best) == top_k and not all_candidates:
                    break
        return [Match(person, distance) for person, distance in best.items()]
