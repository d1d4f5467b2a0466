"""The ``facestream`` command as a user runs it: clear errors, and the embedded main job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def facestream(*args: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "FACESTREAM_DATA_DIR": str(tmp_path / "data"),
        "FACESTREAM_METRICS_PORT": "0",
        "FACESTREAM_BUS": "memory",
        "FACESTREAM_STORE": "file",
    }
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_adding_a_file_that_is_not_a_video_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "door.mp4"
    bogus.write_text("not a video")
    result = facestream("cameras", "add", "door", str(bogus), tmp_path=tmp_path)
    assert result.returncode == 2
    assert "not a readable video" in result.stderr
    assert "Traceback" not in result.stderr
    listed = facestream("cameras", "list", tmp_path=tmp_path)
    assert "door" not in listed.stdout


def test_adding_an_unreachable_camera_is_refused(tmp_path: Path) -> None:
    result = facestream("cameras", "add", "gate", "rtsp://127.0.0.1:9/x", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "unreachable" in result.stderr


def test_cameras_add_list_remove(tmp_path: Path, hamilton: Path) -> None:
    assert (
        facestream(
            "cameras", "add", "ham", str(hamilton), "--fps", "10", tmp_path=tmp_path
        ).returncode
        == 0
    )
    assert "ham\t" in facestream("cameras", "list", tmp_path=tmp_path).stdout
    assert facestream("cameras", "remove", "ham", tmp_path=tmp_path).returncode == 0
    assert facestream("cameras", "remove", "ham", tmp_path=tmp_path).returncode == 2


def test_an_invalid_camera_id_is_a_clear_error(tmp_path: Path) -> None:
    result = facestream("cameras", "add", "bad id", "0", "--no-check", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "camera id" in result.stderr.lower()


def test_a_cameras_max_width_is_kept_and_checked(tmp_path: Path) -> None:
    added = facestream(
        "cameras", "add", "door", "0", "--no-check", "--max-width", "960", tmp_path=tmp_path
    )
    assert added.returncode == 0
    assert "max_width=960" in facestream("cameras", "list", tmp_path=tmp_path).stdout
    refused = facestream(
        "cameras", "add", "hall", "0", "--no-check", "--max-width", "10", tmp_path=tmp_path
    )
    assert refused.returncode == 2 and "max_width" in refused.stderr


def test_a_cameras_style_is_switched_by_name(tmp_path: Path) -> None:
    assert (
        facestream("cameras", "add", "door", "0", "--no-check", tmp_path=tmp_path).returncode == 0
    )
    refused = facestream("cameras", "style", "door", "monet", tmp_path=tmp_path)
    assert refused.returncode == 2 and "no style network 'monet'" in refused.stderr
    assert "starry_night" in refused.stderr  # the message lists what exists
    assert facestream("cameras", "style", "door", "starry_night", tmp_path=tmp_path).returncode == 0
    assert "style=starry_night" in facestream("cameras", "list", tmp_path=tmp_path).stdout
    assert facestream("cameras", "style", "door", "none", tmp_path=tmp_path).returncode == 0
    assert "style=none" in facestream("cameras", "list", tmp_path=tmp_path).stdout
    assert facestream("cameras", "style", "nodoor", "none", tmp_path=tmp_path).returncode == 2


@pytest.mark.data
def test_the_embedded_pipeline_runs_the_sample_video(tmp_path: Path, hamilton: Path) -> None:
    args = ("run", "--fast", "--style", "great_wave", str(hamilton))
    result = facestream(*args, tmp_path=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = result.stdout.split("summary:")[1]
    assert "hamilton_clip_640x360: 138 frames through the detector" in summary
    faces = int(summary.split("frames through the detector, ")[1].split(" faces")[0])
    assert faces > 100  # the clip shows a face in most frames
    styled = int(summary.split("hamilton_clip_640x360: ")[2].split(" styled frames")[0])
    assert styled > 0  # read as fast as possible: frames over max_lag_s old are skipped
    import cv2

    latest = cv2.imread(str(tmp_path / "data" / "styled" / "hamilton_clip_640x360.jpg"))
    assert latest.shape == (360, 640, 3)


@pytest.mark.data
def test_stylize_writes_the_painted_image(tmp_path: Path, shared_data: Path) -> None:
    content = shared_data / "style" / "content" / "golden_gate.jpg"
    painting = shared_data / "style" / "paintings" / "great_wave.jpg"
    out = tmp_path / "styled.png"
    args = (
        "stylize",
        str(content),
        str(painting),
        "-o",
        str(out),
        "--size",
        "64",
        "--iterations",
        "5",
    )
    result = facestream(*args, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "5/5" in result.stdout and "J=" in result.stdout  # the progress bar reached the end
    import cv2

    image = cv2.imread(str(out))
    assert max(image.shape[:2]) == 64 and image.std() > 5  # a real picture, not a blank


@pytest.mark.data
def test_layers_draws_the_top_patches_of_vgg16_units(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "grid.png"
    args = ("layers", "--model", "vgg16", "--layer", "block1_conv1", "--units", "1", "8")
    result = facestream(
        *args, "--images", str(shared_data / "style"), "-o", str(out), tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    import cv2

    grid = cv2.imread(str(out))
    assert grid is not None and grid.shape[0] > 2 * 64  # a title line and two rows of patches
