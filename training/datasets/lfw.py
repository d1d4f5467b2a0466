"""LFW (deep-funneled) and its View 1 pairs: the standard verification benchmark.

View 1 is the development split: DevTrain (1,100 same + 1,100 different pairs) to choose
thresholds and train heads, DevTest (500 + 500) to report accuracy, with disjoint people.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    first: Path
    second: Path
    same: bool


def lfw_root(shared_data: Path) -> Path:
    return shared_data / "faces" / "lfw-deepfunneled"


def image_path(root: Path, name: str, number: int) -> Path:
    return root / name / f"{name}_{number:04d}.jpg"


def read_pairs(shared_data: Path, split: str) -> list[Pair]:
    """Pairs of ``pairsDevTrain.txt`` or ``pairsDevTest.txt`` (``split`` = "DevTrain"/"DevTest")."""
    root = lfw_root(shared_data)
    lines = (shared_data / "faces" / "lfw-view1" / f"pairs{split}.txt").read_text().split("\n")
    pairs = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) == 3:
            name, a, b = fields
            pairs.append(Pair(image_path(root, name, int(a)), image_path(root, name, int(b)), True))
        elif len(fields) == 4:
            name_a, a, name_b, b = fields
            pairs.append(
                Pair(image_path(root, name_a, int(a)), image_path(root, name_b, int(b)), False)
            )
    return pairs


def people_in(pairs: list[Pair]) -> set[str]:
    return {p.first.parent.name for p in pairs} | {p.second.parent.name for p in pairs}


def identities(shared_data: Path, min_images: int = 1) -> dict[str, list[Path]]:
    """Every LFW person with at least ``min_images`` images, images sorted."""
    found = {}
    for folder in sorted(lfw_root(shared_data).iterdir()):
        images = sorted(folder.glob("*.jpg"))
        if len(images) >= min_images:
            found[folder.name] = images
    return found
