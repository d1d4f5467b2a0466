"""1:K search time of the in-memory gallery index at K = 10^3, 10^5 and 10^6 encodings.

    .venv/bin/python -m bench.search [--sizes 1000 100000 1000000] [--queries 50]

Encodings are random unit vectors (search time does not depend on their values). The reference
in the same run is a brute-force numpy computation of every ||q - g||^2 by subtraction, which is
what a naive implementation does; the ratio shows what the matrix-product formulation buys.
Target: one query at 10^6 encodings in <= 50 ms on the 2-core machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from shared.gallery.base import Encoding
from shared.gallery.index import GalleryIndex


def unit_vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.standard_normal((count, 128), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def build_index(size: int, rng: np.random.Generator) -> tuple[GalleryIndex, np.ndarray]:
    # The rows alone: with templates on (the default), each multi-photo person adds one more
    # row to every search (here 1/3 more work), which the figures below do not include.
    index = GalleryIndex(templates=False)
    vectors = unit_vectors(size, rng)
    chunk = 100_000
    for start in range(0, size, chunk):
        block = vectors[start : start + chunk]
        # Three encodings per person, as a gallery with a few photos per person has.
        index.add_local(
            [Encoding(str(start + i), str((start + i) // 3), v) for i, v in enumerate(block)]
        )
    return index, vectors


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"{'K':>10} {'p50 ms':>9} {'p99 ms':>9} {'brute p50 ms':>13} {'ratio':>7} {'batch 8, ms/query':>18}"
    )
    for size in args.sizes:
        print(measure(size, args.queries, rng), flush=True)


def measure(size: int, query_count: int, rng: np.random.Generator) -> str:
    """One row of the report: search times at ``size`` encodings against brute force."""
    index, vectors = build_index(size, rng)
    queries = unit_vectors(query_count, rng)
    position = iter(range(10**9))
    ours = timed(lambda: index.search(queries[next(position) % len(queries)]), query_count)
    brute = timed(
        lambda: int(np.argmin(((vectors - queries[0]) ** 2).sum(axis=1))), max(3, query_count // 10)
    )
    batch = timed(lambda: index.search(queries[:8]), 5)
    # The matrix-product form must find what brute force finds.
    nearest = int(np.argmin(((vectors - queries[0]) ** 2).sum(1)))
    assert index.search(queries[0])[0][0].person_id == str(nearest // 3)
    p50, p99 = np.percentile(ours, [50, 99])
    return (
        f"{size:>10,} {p50:>9.2f} {p99:>9.2f} {np.median(brute):>13.2f} "
        f"{np.median(brute) / p50:>7.1f} {np.median(batch) / 8:>18.2f}"
    )


if __name__ == "__main__":
    main()
