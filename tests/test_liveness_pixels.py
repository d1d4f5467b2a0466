"""The committed pixel liveness model: it loads, its card matches, and it judges real clips.

Real data, small: 40 frames (15 fps) of each real evaluation video, which the model never saw
in training or calibration (docs/liveness.md), detected with MTCNN as the detector service does.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.liveness import LivenessModelError
from shared.liveness.pixels import PIXEL_WEIGHTS, load_any, load_pixel_model

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def model():
    return load_pixel_model()


def _windows(shared_data, name: str, mode: str):
    from shared.face.detection import create_detector
    from training.liveness.dataset import detect_tracks
    from training.liveness.pixel_training import track_windows
    from training.liveness.training import read_video

    frames = read_video(shared_data / "liveness" / name, limit=40)
    detector = create_detector("mtcnn", min_face_px=40)
    [track] = detect_tracks(frames, detector, name, "?", mode)
    return track_windows([track], hop_ends=True)


def test_the_card_names_the_data_and_the_weights_are_checked(tmp_path) -> None:
    card = json.loads(PIXEL_WEIGHTS.with_suffix(".json").read_text())
    assert card["chip"] == 48 and "sources" in card and "calibration" in card
    assert not {"eval_live_person", "eval_replay"} & set(card["sources"])
    damaged = tmp_path / "liveness_pixels.npz"
    damaged.write_bytes(PIXEL_WEIGHTS.read_bytes()[:-10] + b"0123456789")
    damaged.with_suffix(".json").write_text(PIXEL_WEIGHTS.with_suffix(".json").read_text())
    with pytest.raises(LivenessModelError, match="sha256"):
        load_pixel_model(damaged)
    assert getattr(load_any(PIXEL_WEIGHTS), "needs_chips", False)


def test_the_replay_is_an_attack_and_ranks_below_the_live_person(model, shared_data) -> None:
    """What the pixel model does on this unseen camera: the phone replay is an attack in every
    window, and the live person scores above it. It does NOT judge this live person live at
    P = 0.5 (docs/liveness.md: 18% of windows), which is why it is not the default model."""
    live = _windows(shared_data, "live_person.mov", "largest")
    replay = _windows(shared_data, "replay_attack_same_person.mp4", "smallest")
    p_live = model.probability_live(live.motion, live.chips)
    p_replay = model.probability_live(replay.motion, replay.chips)
    assert len(p_live) >= 3 and len(p_replay) >= 3
    assert np.mean(p_replay < 0.5) >= 0.8, p_replay
    assert np.median(p_live) > np.median(p_replay), (p_live, p_replay)
