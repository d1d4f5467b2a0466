"""Recapture cues (shared/liveness/recapture.py) and the recapture model's file checks."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from shared.liveness import LivenessModelError
from shared.liveness.recapture import CUES, frame_cues, moire_peak
from shared.liveness.recapture_model import (
    RecaptureModel,
    fit_weighted_logistic,
    load_recapture_model,
    window_features,
)
from training.liveness.recapture_training import GROUPS, live_threshold, sample_weights


def _cue(values: np.ndarray, name: str) -> float:
    return float(values[CUES.index(name)])


@pytest.fixture
def frame(shared_data) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The real evaluation video's first frame and its face's box (measured once with MTCNN)."""
    capture = cv2.VideoCapture(str(shared_data / "liveness" / "live_person.mov"))
    ok, image = capture.read()
    capture.release()
    assert ok
    return image, (389.0, 235.6, 168.5, 214.2)


def test_cues_are_finite_and_in_order(frame):
    image, box = frame
    values = frame_cues(image, box)
    assert values.shape == (len(CUES),) and np.isfinite(values).all()
    # a face at the frame's corner, partly outside it, still gives finite numbers
    assert np.isfinite(frame_cues(image, (image.shape[1] - 30, image.shape[0] - 30, 60, 60))).all()


def test_a_pixel_grid_over_the_face_raises_the_spectrum_peak(frame):
    """A screen's grid resampled by the camera aliases into moire bands a few pixels apart: a
    periodic pattern, a peak in the spectrum. (Finer than a 64 px face's sampling, a grid is
    averaged away: what the camera already aliased is what stays.)"""
    image, box = frame
    gridded = image.astype(np.float32)
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    gridded *= (0.8 + 0.2 * np.cos(2 * np.pi * (xs / 9.0 + ys / 13.0)))[..., None]
    before = _cue(frame_cues(image, box), "spectrum_peak")
    after = _cue(frame_cues(np.clip(gridded, 0, 255).astype(np.uint8), box), "spectrum_peak")
    assert after > before + 1.0


def _frame_at(path, index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = capture.read()
    capture.release()
    assert ok
    return image


def test_moire_is_measured_at_the_cameras_own_resolution(frame):
    """Stripes 4 px apart (a screen's grid beating with the sensor's) stand out at native
    resolution, where the 64 px ``spectrum_peak`` has averaged them away; a face with no screen
    shows no such peak, nor does the same face scaled down (nothing periodic to find)."""
    image, box = frame
    xs = np.arange(image.shape[1])
    striped = np.clip(image * (0.9 + 0.1 * np.cos(2 * np.pi * xs / 4.3))[None, :, None], 0, 255)
    plain, beaten = frame_cues(image, box), frame_cues(striped.astype(np.uint8), box)
    assert _cue(plain, "moire") < 2.9  # the live videos' windows: 2.1-2.4 (docs/liveness.md)
    assert _cue(beaten, "moire") > _cue(plain, "moire") + 1.5
    small = cv2.resize(image, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    assert _cue(frame_cues(small, [v * 0.3 for v in box]), "moire") < 2.9


def test_a_real_monitor_replay_shows_moire_its_live_video_does_not(shared_data):
    """``monitor_replay_wolfhuo.mp4`` (the face filmed off a monitor, stripes across it) against
    ``live_wolfhuo.mp4``, the same person live; boxes measured once with MTCNN."""
    folder = shared_data / "liveness-train"
    replay = _frame_at(folder / "monitor_replay_wolfhuo.mp4", 42)
    live = _frame_at(folder / "live_wolfhuo.mp4", 42)
    assert moire_peak(replay, (73.7, 385.7, 320.9, 405.3)) > 3.5
    assert moire_peak(live, (104.4, 290.5, 310.0, 395.9)) < 2.9
    assert moire_peak(replay[:20, :20], (0, 0, 10, 10)) == 0.0  # a frame smaller than a patch


def test_a_hard_recompression_shows_as_blockiness(frame):
    image, box = frame
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 8])
    assert ok
    coarse = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    assert _cue(frame_cues(coarse, box), "blockiness") > _cue(frame_cues(image, box), "blockiness")


def test_glare_counts_as_clipped_and_specular(frame):
    image, box = frame
    glared = image.copy()
    x, y, w, h = (int(v) for v in box)
    glared[y + h // 3 : y + h // 2, x + w // 4 : x + 3 * w // 4] = 255
    plain, shone = frame_cues(image, box), frame_cues(glared, box)
    assert _cue(shone, "clipped_share") > _cue(plain, "clipped_share") + 0.05
    assert _cue(shone, "specular_share") > _cue(plain, "specular_share") + 0.05


def test_a_defocused_face_loses_high_frequencies(frame):
    image, box = frame
    blurred = cv2.GaussianBlur(image, (0, 0), 3)
    assert _cue(frame_cues(blurred, box), "face_highpass") < _cue(
        frame_cues(image, box), "face_highpass"
    )


def test_window_features_are_mean_spread_and_clipped_motion():
    cues = np.zeros((2, 16, len(CUES)))
    cues[1, ::2] = 2.0
    features = window_features(cues, np.array([0.5, -50.0]))
    assert features.shape == (2, 2 * len(CUES) + 1)
    assert features[1, 0] == pytest.approx(1.0) and features[1, len(CUES)] == pytest.approx(1.0)
    assert features[1, -1] == -10.0  # one sure motion window does not swamp the cues


def test_the_weighted_logistic_follows_the_weights():
    x = np.array([[-1.0], [1.0], [1.0]])
    y = np.array([0.0, 1.0, 0.0])
    equal = fit_weighted_logistic(x, y, np.ones(3), l2=0.01)
    towards_live = fit_weighted_logistic(x, y, np.array([1.0, 5.0, 1.0]), l2=0.01)
    assert towards_live[0] > equal[0]


def test_sources_weigh_the_same_within_a_class_and_classes_the_same():
    from training.liveness.recapture_training import Windows

    windows = Windows(np.zeros((7, 1)), ["live"] * 4 + ["screen"] * 3, list("aaabccc"))
    weight = sample_weights(windows)
    assert weight[:3].sum() == pytest.approx(weight[3])  # source a (3 windows) vs b (1 window)
    assert weight[:4].sum() == pytest.approx(weight[4:].sum())
    # source b's one window weighs as much as a's three: rejecting it would reject half the
    # live weight, so at BPCER 30% the threshold stays below it (by windows it is 25%)
    scores = np.array([0.0, 1.0, 2.0, -5.0, 0, 0, 0])
    assert live_threshold(scores, windows, bpcer=0.3) == -5.0
    assert live_threshold(scores, windows, bpcer=0.6) == 0.0


def test_groups_keep_a_recording_and_its_replays_together():
    from training.liveness.dataset import SOURCES

    grouped = [name for members in GROUPS.values() for name in members]
    assert len(grouped) == len(set(grouped))
    assert {s.name for s in SOURCES if s.split != "eval"} == set(grouped)


def test_a_damaged_model_file_is_refused(tmp_path):
    model = RecaptureModel(np.zeros(3), np.ones(3), np.array([1.0, 0, 0, 0.5]), {"note": "t"})
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = load_recapture_model(path)
    features = np.array([[1.0, 2.0, 3.0]])
    assert loaded.probability_live(features) == pytest.approx(model.probability_live(features))
    card = json.loads(path.with_suffix(".json").read_text())
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(LivenessModelError):
        load_recapture_model(path)
    assert card["cues"] == list(CUES)


def test_a_model_on_some_cues_reads_its_columns_from_full_window_features():
    from training.liveness.recapture_training import columns_of

    columns = columns_of(["chroma_spread"])
    assert columns == [CUES.index("chroma_spread"), 2 * len(CUES)]
    model = RecaptureModel(
        np.zeros(2), np.ones(2), np.array([-1.0, 1.0, 0.0]), {"columns": columns}
    )
    full = np.zeros((2, 2 * len(CUES) + 1))
    full[0, columns[0]] = 3.0  # a wide chroma spread: a display's gamut
    full[1, -1] = 3.0  # the motion model says live
    assert model.logits(full).tolist() == [-3.0, 3.0]


def test_the_moire_rule_only_ever_lowers_p_live_and_is_set_on_live_windows(tmp_path):
    """Fitted on live windows whose moire means reach 2.4, the ceiling is 2.4 + the margin; a
    window above it loses MOIRE_SLOPE log-odds per unit whatever the calibration, one below
    loses nothing (a screen filmed from further away shows no moire: no evidence of life)."""
    from shared.liveness.recapture_model import MOIRE_COLUMN, MOIRE_MARGIN, MOIRE_SLOPE

    rng = np.random.default_rng(0)
    features = rng.normal(0, 1, (40, 2 * len(CUES) + 1))
    live = np.arange(40) < 20
    features[:, MOIRE_COLUMN] = 3.5
    features[live, MOIRE_COLUMN] = np.linspace(2.0, 2.4, 20)
    columns = [CUES.index("chroma_spread"), 2 * len(CUES)]
    model = RecaptureModel.fit(features, live, np.ones(40), 1.0, {"columns": columns}, moire=True)
    assert model.moire_ceiling == pytest.approx(2.4 + MOIRE_MARGIN)
    model.calibration = (2.0, 0.5)
    below, above = features[:1].copy(), features[:1].copy()
    above[0, MOIRE_COLUMN] = model.moire_ceiling + 0.5
    logit = lambda p: float(np.log(p / (1 - p)))  # noqa: E731
    plain = logit(model.probability_live(below)[0])
    assert plain == pytest.approx(2.0 * model.linear_logits(below)[0] + 0.5)
    assert logit(model.probability_live(above)[0]) == pytest.approx(plain - 0.5 * MOIRE_SLOPE)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = load_recapture_model(path)
    assert loaded.moire_ceiling == pytest.approx(model.moire_ceiling)
    assert loaded.probability_live(above) == pytest.approx(model.probability_live(above))
    with pytest.raises(ValueError):  # the rule reads the full window features
        model.probability_live(below[:, columns])


def test_the_committed_recapture_model_and_its_card():
    from shared.liveness.pixels import load_any
    from shared.liveness.recapture_model import RECAPTURE_WEIGHTS

    liveness = load_any(RECAPTURE_WEIGHTS)
    assert liveness.needs_cues and liveness.window == 16
    card = liveness.recapture.card
    assert {"command", "loso", "evaluation", "calibration", "sources"} <= set(card)
    assert not any(s.startswith("eval") for s in card["sources"])  # the real pair: never
    assert liveness.recapture.moire_ceiling == pytest.approx(card["moire"]["ceiling"])


def test_the_nested_pick_finds_the_cue_that_separates_in_every_fold():
    """Two cue means: the first separates live from attack in every group, the second is
    noise. Picked inside every fold, the first wins each time and the held-out groups are
    ranked right."""
    from training.liveness.recapture_training import Windows, nested_pick, source_pair_auc

    rng = np.random.default_rng(0)
    rows, labels, sources = [], [], []
    pairs = [("hamilton", "fullview_hamilton"), ("person2", "replay_person2")]
    pairs += [("live_apfol", "phone_apfol"), ("live_wolfhuo", "monitor_wolfhuo")]
    for live_source, attack_source in pairs:
        for source, label, centre in ((live_source, "live", 1.0), (attack_source, "screen", -1.0)):
            for _ in range(20):
                row = np.zeros(2 * len(CUES) + 1)
                row[0] = centre + 0.3 * rng.standard_normal()
                row[1] = rng.standard_normal()
                rows.append(row)
                labels.append(label)
                sources.append(source if source != "person2" else "live_person2")
    windows = Windows(np.stack(rows), labels, sources)
    everything = np.ones(len(labels), bool)
    assert source_pair_auc(windows, everything, 0) > 0.95
    assert abs(source_pair_auc(windows, everything, 1) - 0.5) < 0.2
    report = nested_pick(windows, l2=1.0)
    assert set(report["picks"].values()) == {CUES[0]}
    assert report["auc"]["screen"] > 0.95


@pytest.mark.parametrize("seed", [0, 1])
def test_tracks_out_of_fold_follow_the_cue_and_report_the_motion_model_beside(seed: int):
    """Per track, out of fold: live tracks named and attacks spoofed when a cue separates them,
    each judged by a model fitted without its recording group; the motion model alone cannot
    tell these tracks apart (the same landmarks), so it judges them all alike."""
    from shared.liveness.evidence import EvidencePolicy
    from shared.liveness.model import load_model
    from shared.liveness.pixels import CHIP
    from training.liveness.dataset import Track
    from training.liveness.metrics import LIVE
    from training.liveness.recapture_training import Design, columns_of, out_of_fold_tracks

    rng = np.random.default_rng(seed)
    frames = 56
    base = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], np.float32)
    landmarks = base + rng.normal(0, 1.5, (frames, 5, 2)).astype(np.float32)
    boxes = np.tile(np.array([20, 20, 80, 100], np.float32), (frames, 1))
    contexts = np.full((frames, 96, 96), 128, np.uint8)
    chips = np.zeros((frames, CHIP, CHIP, 3), np.uint8)

    def track(source: str, label: str, chroma: float) -> Track:
        cues = rng.normal(0, 0.3, (frames, len(CUES))).astype(np.float32)
        cues[:, CUES.index("chroma_spread")] += chroma
        return Track(source, label, landmarks, boxes, contexts, chips, cues)

    live = ["live_apfol", "live_wolfhuo", "live_krzysiek"]
    attacks = ["phone_apfol", "monitor_wolfhuo", "monitor_ashish", "phone_nurcan"]
    tracks = [track(s, LIVE, 0.0) for s in live] + [track(s, "screen", 1.0) for s in attacks]
    report = out_of_fold_tracks(
        tracks,
        load_model(),
        Design(columns_of(["chroma_spread"]), 1.0),
        True,
        EvidencePolicy(live_bound=1.0),  # looser than the service's: windows just past 0.5 name
    )
    assert set(report) == set(live) | set(attacks)
    for source in live:
        assert (report[source]["named"], report[source]["spoof"]) == (1, 0), source
    for source in attacks:
        assert (report[source]["named"], report[source]["spoof"]) == (0, 1), source
    motion = {(row["motion_named"], row["motion_spoof"]) for row in report.values()}
    assert len(motion) == 1
