"""ISO/IEC 30107-3 error rates by hand, and synthetic attacks that a liveness model can learn from."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from training.liveness import attacks
from training.liveness.attacks import Motion, print_attack, screen_replay, smooth_trajectory
from training.liveness.metrics import error_rates


def test_error_rates_by_hand() -> None:
    labels = ["live"] * 4 + ["print"] * 2 + ["screen"] * 4
    judged_live = [True, True, True, False] + [True, False] + [False, False, True, False]
    rates = error_rates(labels, judged_live)
    assert rates.apcer == {"print": 0.5, "screen": 0.25}
    assert rates.bpcer == 0.25
    assert rates.acer == pytest.approx((0.5 + 0.25) / 2)  # the worst attack type counts
    assert rates.counts == {"live": 4, "print": 2, "screen": 4}


def test_error_rates_refuse_what_they_cannot_measure() -> None:
    with pytest.raises(ValueError, match="live presentation"):
        error_rates(["print"], [True])
    with pytest.raises(ValueError, match="attack presentation"):
        error_rates(["live"], [True])
    with pytest.raises(ValueError, match="2 labels but 1 decisions"):
        error_rates(["live", "print"], [True])


def test_the_hand_moves_smoothly_and_boundedly() -> None:
    width, height = 300, 400
    path = smooth_trajectory(90, (width, height), np.random.default_rng(0), Motion())
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], float).T
    projected = np.einsum("tij,jk->tik", path, corners)
    projected = projected[:, :2] / projected[:, 2:]
    steps = np.linalg.norm(np.diff(projected, axis=0), axis=1)
    assert steps.max() < 0.03 * width  # no jumps from one frame to the next
    travel = np.linalg.norm(projected - projected[:1], axis=1).max()
    assert 0.02 * width < travel < 0.5 * width  # it does move, like a hand, not across the room
    again = smooth_trajectory(90, (width, height), np.random.default_rng(0), Motion())
    np.testing.assert_array_equal(path, again)


def _centre_track(frames: list[np.ndarray], pipeline) -> np.ndarray:
    centres = []
    for frame in frames:
        faces = pipeline.detect(frame)
        assert len(faces) == 1, f"{len(faces)} faces in a synthetic attack frame"
        x, y, w, h = faces[0].box
        centres.append((x + w / 2, y + h / 2, w))
    return np.array(centres)


@pytest.mark.data
def test_a_printed_photo_keeps_a_detectable_face_that_drifts_smoothly(
    face_pipeline, people_data: Path, shared_data: Path
) -> None:
    photo = cv2.imread(str(people_data / "enroll" / "obama" / "obama.jpg"))
    backgrounds = [cv2.imread(str(shared_data / "style" / "content" / "tubingen.jpg"))] * 12
    backgrounds = [cv2.resize(b, (640, 480)) for b in backgrounds]
    frames = print_attack(photo, backgrounds, np.random.default_rng(4), fill=0.8)
    assert len(frames) == 12 and frames[0].shape == (480, 640, 3)
    track = _centre_track(frames, face_pipeline)
    assert np.abs(np.diff(track[:, :2], axis=0)).max() < 0.25 * track[:, 2].mean()
    same = print_attack(photo, backgrounds, np.random.default_rng(4), fill=0.8)
    assert all(np.array_equal(a, b) for a, b in zip(frames, same, strict=True))


@pytest.mark.data
def test_a_replayed_clip_plays_on_the_phone_frame_for_frame(
    face_pipeline, shared_data: Path
) -> None:
    """Training data only: liveness-train/, never liveness/ (evaluation)."""
    capture = cv2.VideoCapture(str(shared_data / "liveness-train" / "live_person2.mp4"))
    clip = [capture.read()[1] for _ in range(8)]
    backgrounds = [cv2.resize(f, (640, 360)) for f in clip[::-1]]
    frames = screen_replay(clip, backgrounds, np.random.default_rng(1), fill=0.85)
    track = _centre_track(frames, face_pipeline)
    assert track[:, 2].min() >= 40  # big enough for the pipeline's minimum face size
    assert not np.array_equal(frames[0], frames[1])


def test_a_replayed_selfie_video_is_zoomed_on_the_face_and_stays_in_the_frame() -> None:
    rng = np.random.default_rng(3)
    for box in ((300.0, 100.0, 60.0, 70.0), (5.0, 5.0, 90.0, 100.0), (560.0, 250.0, 70.0, 80.0)):
        x, y, w, h = attacks.selfie_region(box, (640, 360), rng)
        assert x >= 0 and y >= 0 and x + w <= 640 and y + h <= 360
        assert 0.35 <= max(box[2], box[3]) / w <= 1.0  # the face fills much of the screen


def test_a_screen_filling_the_view_shows_moire_and_no_border() -> None:
    """A flat grey clip replayed full-view: bands appear (the pixel grid aliasing), there is no
    bezel or background (the picture reaches every edge), and the clip is re-encoded as video."""
    rng = np.random.default_rng(3)
    clip = [np.full((120, 160, 3), 128, np.uint8)] * 6
    frames = attacks.fullview_replay(clip, rng)
    assert len(frames) == 6 and frames[0].shape == (120, 160, 3)
    grey = frames[3].astype(np.float32).mean(axis=2)
    assert grey.std() > 3.0  # flat on the screen, banded once filmed
    assert min(grey[:4].mean(), grey[-4:].mean(), grey[:, :4].mean(), grey[:, -4:].mean()) > 40
    spectrum = np.abs(np.fft.fft2(grey - grey.mean()))
    assert spectrum.max() > 8 * np.median(spectrum)  # a few strong periodic components


def test_display_gamma_and_white_point_change_the_colours() -> None:
    display = attacks.Display(gamma=0.7, white=(1.1, 1.0, 0.9), black=0.05, pitch=2.0, angle_deg=0)
    shown = display.show(np.full((4, 4, 3), 100, np.uint8))
    b, g, r = shown[0, 0]
    assert b > g > r and g > 100 / 255  # bluer, brighter mid-tones


def test_video_recompression_keeps_every_frame_and_costs_detail() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(5)]
    again = attacks.recompress_video(frames, 20)
    assert len(again) == 5 and again[0].shape == frames[0].shape
    assert np.abs(again[2].astype(int) - frames[2]).mean() > 10  # noise does not survive


def test_paper_is_textured_and_bends() -> None:
    rng = np.random.default_rng(1)
    texture = attacks.paper_texture(60, 80, rng)
    assert 0.005 < texture.std() < 0.1 and abs(texture.mean() - 1) < 0.02
    sheet = np.zeros((80, 100, 3), np.uint8)
    sheet[:, 10] = 255  # a vertical line near the left edge
    bent = attacks.bend(sheet, 0.3)
    columns = bent[..., 0].argmax(axis=1)
    assert columns.min() != 10 or columns.max() != 10  # it moved: the side fell away
    assert attacks.bend(sheet, 0.0)[:, 10, 0].mean() > 200  # no bend, no change


def test_a_textured_print_in_a_trembling_hand_is_a_clip_of_the_backgrounds_size() -> None:
    rng = np.random.default_rng(2)
    photo = rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)
    backgrounds = [np.full((120, 160, 3), 90, np.uint8)] * 8
    frames = attacks.textured_print_attack(photo, backgrounds, rng)
    assert len(frames) == 8 and frames[0].shape == (120, 160, 3)
    assert np.abs(frames[0].astype(int) - frames[7]).mean() > 1  # the hand moves
