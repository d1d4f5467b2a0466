"""Liveness training data from a user's folders, laid out as public anti-spoofing sets are."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from shared.liveness.features import FEATURES
from shared.liveness.model import WINDOW
from training.liveness.commands import folder_windows
from training.liveness.training import read_video


def write_clip(frames: list[np.ndarray], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_a_folder_tree_without_live_or_attack_videos_is_refused(tmp_path: Path) -> None:
    write_clip([np.zeros((64, 64, 3), np.uint8)] * 3, tmp_path / "live" / "a.mp4")
    with pytest.raises(ValueError, match="live/ folder and at least one attack folder"):
        folder_windows(tmp_path, detector=None)


@pytest.mark.data
def test_each_folder_names_the_label_of_its_videos_windows(tmp_path: Path, shared_data) -> None:
    from shared.face.detection import create_detector

    train = shared_data / "liveness-train"
    write_clip(read_video(train / "live_person2.mp4", limit=20), tmp_path / "live" / "a.mp4")
    write_clip(
        read_video(train / "replay_attack_person2.mp4", limit=20), tmp_path / "screen" / "b.mp4"
    )
    (tmp_path / "screen" / "notes.txt").write_text("not a video")
    windows = folder_windows(tmp_path, create_detector("mtcnn", min_face_px=40))
    assert set(windows.labels) == {"live", "screen"}
    assert windows.features.shape[1:] == (WINDOW, FEATURES)
    assert np.isfinite(windows.features).all()
