"""The in-memory matrix of every gallery encoding, kept in sync with the store's change feed.

1:K search is one matrix product (|q|^2 + |g|^2 - 2 q.g) over a contiguous float32 matrix, then a
partial sort; no per-face round trip to Redis. Rows are appended into spare capacity and removed
by moving the last row into the hole, so changes cost O(1) rows, not a rebuild.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shared.gallery.base import EMBEDDING_DIM, Encoding, Gallery, GalleryError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Match:
    person_id: str
    distance: float
    """Distance to the person's closest encoding: squared L2, or the index's ``metric``."""


class GalleryIndex:
    def __init__(
        self,
        gallery: Gallery | None = None,
        metric: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> None:
        """Follow ``gallery``; without one the index holds only rows given to ``add_local``.

        ``metric(queries, matrix)`` -> (M, N) distances (lower = more alike) replaces the squared
        L2 distance, e.g. a binary head's 1 - P(same) (shared/face/verification.Verifier).
        """
        self.gallery = gallery
        self.metric = metric
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
    def people(self) -> int:
        """Distinct enrolled people: the K of 1:K."""
        return len(self._people)

    def person_ids(self) -> list[str]:
        """The people with at least one indexed encoding."""
        with self._lock:
            return list(self._people)

    def reload(self) -> None:
        """Load every encoding; the cursor is read first so no change is missed in between."""
        cursor = self.gallery.cursor()
        encodings = self.gallery.encodings()
        with self._lock:
            self._matrix = np.empty((max(16, len(encodings) * 2), EMBEDDING_DIM), np.float32)
            self._norms = np.empty(len(self._matrix), np.float32)
            self._owners, self._rows, self._encoding_ids = [], {}, []
            self._people = Counter()
            self._add(encodings)
            self._cursor = cursor
        log.info("gallery index: %d encodings loaded", len(encodings))

    def sync(self) -> bool:
        """Apply the changes since the last sync (or reload); False if the store is unreachable."""
        if self.gallery is None:
            return True
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

    def _remove(self, encoding_id: str) -> None:
        row = self._rows.pop(encoding_id, None)
        if row is None:
            return
        owner = self._owners[row]
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

    def search(self, queries: np.ndarray, top_k: int = 1) -> list[list[Match]]:
        """For each query, the ``top_k`` closest people (each at their closest encoding)."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        with self._lock:
            size = len(self._owners)
            if size == 0:
                return [[] for _ in queries]
            matrix, norms, owners = self._matrix[:size], self._norms[:size], self._owners
            if self.metric is not None:
                distances = np.asarray(self.metric(queries, matrix))
            else:
                distances = np.einsum("ij,ij->i", queries, queries)[:, None] + norms[None, :]
                distances -= 2.0 * (queries @ matrix.T)
            return [self._best_people(row, owners, top_k) for row in distances]

    @staticmethod
    def _best_people(distances: np.ndarray, owners: list[str], top_k: int) -> list[Match]:
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
                if len(best) == top_k:
                    break
        return [Match(person, distance) for person, distance in best.items()]
