"""The open-set benchmark's distractor identities (bench/distractors.py): every available person
first, then one distinct look per copy, never the same copy twice."""

from __future__ import annotations

import numpy as np
import pytest

from bench.distractors import LOOKS, Source, compose


def photos(counts: dict[str, int]) -> dict[str, list[str]]:
    return {name: [f"{name}/{name}_{i:04d}.jpg" for i in range(n)] for name, n in counts.items()}


def test_every_person_comes_first_then_other_photos_then_looks() -> None:
    people = photos({"a": 1, "b": 3, "c": 1})
    chosen = compose(people, 9)
    assert chosen[:3] == [
        Source("a/a_0000.jpg", -1),
        Source("b/b_0000.jpg", -1),
        Source("c/c_0000.jpg", -1),
    ]
    # round 1: a and c have one photo, so their first look; b its second photo
    assert chosen[3:6] == [
        Source("a/a_0000.jpg", 0),
        Source("b/b_0001.jpg", -1),
        Source("c/c_0000.jpg", 0),
    ]
    assert chosen[6:] == [
        Source("a/a_0000.jpg", 1),
        Source("b/b_0002.jpg", -1),
        Source("c/c_0000.jpg", 1),
    ]
    assert len(set(chosen)) == len(chosen)


def test_no_person_gets_the_same_look_twice_and_too_many_is_refused() -> None:
    people = photos({"a": 1, "b": 2})
    most = (1 + len(LOOKS)) + (2 + len(LOOKS))  # a: its photo and every look; b: 2 and every look
    chosen = compose(people, most)
    assert len(set(chosen)) == most
    for name in people:
        looks = [s.look for s in chosen if s.key.startswith(name) and s.look >= 0]
        assert len(looks) == len(set(looks))
    with pytest.raises(ValueError, match="distinct distractors"):
        compose(people, most + 1)


def test_each_look_changes_the_chip_and_keeps_its_shape() -> None:
    rng = np.random.default_rng(0)
    chip = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    outputs = [look(chip) for look in LOOKS]
    for out in outputs:
        assert out.shape == chip.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - chip).mean() > 10
    for i, first in enumerate(outputs):
        for second in outputs[i + 1 :]:
            assert np.abs(first.astype(int) - second).mean() > 10  # looks differ from each other
