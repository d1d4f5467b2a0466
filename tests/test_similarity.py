"""Binary heads, their weights files, evaluation metrics, and the verifier choice end to end.

The service-level tests use the committed head weights and hand-made encodings chosen so that the
head and the squared L2 threshold disagree; a stand-in pipeline and encoder hand those encodings
to the real IdentityService and RecognizerWorker, so what is tested is which rule they apply.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.recognizer.worker import RecognizerWorker
from shared.face.factory import build_verifier
from shared.face.identity import IdentityService
from shared.face.model_files import ModelFileError
from shared.face.pipeline import AnalyzedFace
from shared.face.types import Detection
from shared.face.verification import Calibration
from shared.gallery.file_store import FileGallery
from shared.schemas import Box, DetectedFace, FacesMessage
from shared.settings import FaceSettings, RecognizerSettings, Settings
from shared.similarity.heads import BinaryHead, HeadVerifier, load_head, pair_features
from shared.similarity.weights import WeightsFileError
from training.similarity.evaluation import auc, roc_curve, tar_at_far
from training.similarity.heads import hard_negative_pairs, save_head


def test_pair_features_by_hand() -> None:
    a = np.array([1.0, -2.0, 0.5, 0.0])
    b = np.array([0.5, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(pair_features("l1", a, b), [0.5, 3.0, 0.0, 0.0])
    # (f_i - f_j)^2 / (|f_i| + |f_j|): .25/1.5, 9/3, 0/1, 0/eps
    np.testing.assert_allclose(pair_features("chi2", a, b), [0.25 / 1.5, 3.0, 0.0, 0.0], rtol=1e-5)


def test_head_probability_by_hand() -> None:
    weights = np.zeros(128)
    weights[:2] = [-2.0, -4.0]
    head = BinaryHead("l1", weights, 1.0)
    a, b = np.zeros(128), np.zeros(128)
    b[:2] = [0.5, -0.25]  # w . |a - b| + bias = -1 - 1 + 1 = -1
    assert float(head.probability(a, b)) == pytest.approx(1 / (1 + np.exp(1.0)))
    sigmoid_1 = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(head.distances(a, np.stack([a, b])), [[1 - sigmoid_1, sigmoid_1]])


def test_roc_auc_and_tar_by_hand() -> None:
    distances = np.array([0.1, 0.2, 0.3, 0.4, np.inf])
    same = np.array([True, False, True, False, True])  # the inf pair: a face was missed
    roc = roc_curve(distances, same)
    np.testing.assert_allclose(roc.true_accept, [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(roc.false_accept, [0, 0, 0.5, 0.5, 1])
    # area: 0.5 * 1/3 + 0.5 * 2/3
    assert auc(roc) == pytest.approx(0.5)
    assert tar_at_far(roc, 1e-3) == pytest.approx(1 / 3)


def _head_file(tmp_path: Path, kind: str = "l1") -> Path:
    path = tmp_path / f"{kind}.npz"
    calibration = Calibration(0.5, -10.0, 5.0, "test", "hand-made", 1.0, [(1e-3, 0.1), (1e-2, 0.3)])
    save_head(path, BinaryHead(kind, np.full(128, -1.0), 2.0), calibration, {})
    return path


def test_head_file_round_trip(tmp_path: Path) -> None:
    verifier = load_head("l1", _head_file(tmp_path))
    assert verifier.threshold == 0.5 and verifier.head.bias == 2.0
    # per-pair rate 1 - 0.99 ** (1 / 10) = 1.005e-3: just above the (1e-3, 0.1) quantile
    assert verifier.identification_threshold(10, 0.01) == pytest.approx(0.1, abs=0.001)


def test_missing_corrupt_or_wrong_head_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsFileError, match="does not exist.*train-head --kind l1"):
        load_head("l1", tmp_path / "nowhere.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(WeightsFileError, match="unreadable"):
        load_head("l1", garbage)
    with pytest.raises(WeightsFileError, match="expected 'binary-head-chi2'"):
        load_head("chi2", _head_file(tmp_path, "l1"))
    flipped = _head_file(tmp_path)
    data = bytearray(flipped.read_bytes())
    at = data.index(np.float64(-1.0).tobytes())
    data[at : at + 8] = np.float64(-3.0).tobytes()  # one weight changed on disk
    flipped.write_bytes(bytes(data))
    with pytest.raises(WeightsFileError, match="unreadable.*CRC"):
        load_head("l1", flipped)
    with np.load(_head_file(tmp_path)) as original:
        arrays = {name: original[name] for name in original.files}
    arrays["weights"] = arrays["weights"] * 3  # re-saved consistently, but not what was trained
    edited = tmp_path / "edited.npz"
    np.savez(edited, **arrays)
    with pytest.raises(WeightsFileError, match="damaged: content hash mismatch"):
        load_head("l1", edited)


def settings_with(**face) -> Settings:
    """The heads are dlib-resnet's: every setting here selects that encoder."""
    return Settings(face=FaceSettings(**{"encoder": "dlib-resnet", **face}))


def test_factory_builds_the_configured_verifier(tmp_path: Path) -> None:
    assert isinstance(build_verifier(settings_with()), Calibration)
    for kind in ("l1", "chi2"):
        verifier = build_verifier(settings_with(verifier=f"head-{kind}"))  # the committed weights
        assert isinstance(verifier, HeadVerifier) and verifier.name == f"head-{kind}"
        assert 0 < verifier.threshold < 1
    with pytest.raises(WeightsFileError, match="does not exist"):
        build_verifier(settings_with(verifier="head-l1", verifier_weights=tmp_path / "missing.npz"))


def test_heads_with_sface_are_a_start_up_error_naming_the_fix() -> None:
    with pytest.raises(ModelFileError, match="FACESTREAM_FACE__VERIFIER=l2"):
        build_verifier(settings_with(encoder="sface", verifier="head-l1"))


# --- the choice changes what the services decide -------------------------------------------

HEAD = load_head("l1")
L2 = Calibration.load()
BASE = np.linspace(-0.2, 0.2, 128).astype(np.float32)


def _disagreeing_encodings() -> tuple[np.ndarray, np.ndarray]:
    """(spread, focused): probes that L2 and the committed l1 head judge oppositely vs BASE.

    ``spread`` differs from BASE a little in every dimension: squared L2 well inside tau, but a
    large L1 mass, which the head's (negative) weights read as "different". ``focused`` differs
    in the one dimension the head weighs least: beyond tau for L2, "same" for the head.
    """
    spread = BASE + np.float32(np.sqrt(0.8 * L2.threshold / 128))
    focused = BASE.copy()
    focused[int(np.argmin(np.abs(HEAD.head.weights)))] += np.float32(np.sqrt(1.5 * L2.threshold))
    return spread, focused


def test_the_chosen_encodings_really_split_l2_and_the_head() -> None:
    spread, focused = _disagreeing_encodings()
    l2 = L2.distances(BASE, np.stack([spread, focused]))[0]
    head = HEAD.distances(BASE, np.stack([spread, focused]))[0]
    assert l2[0] <= L2.threshold < l2[1]
    assert head[0] > HEAD.threshold >= head[1]


class StandInPipeline:
    """Maps a photo to a fixed encoding by its height (the test's code for 'which face')."""

    def __init__(self, encodings: list[np.ndarray]) -> None:
        self.encodings = encodings
        self.encoder = StandInEncoder(encodings[0])

    def analyze(self, image: np.ndarray) -> list[AnalyzedFace]:
        detection = Detection((0.0, 0.0, 100.0, 100.0), 0.99, np.zeros((5, 2), np.float32))
        chip = np.zeros((150, 150, 3), np.uint8)
        return [AnalyzedFace(detection, chip, self.encodings[image.shape[0] - 10])]

    def analyze_main(self, image: np.ndarray, jitters: int = 0) -> AnalyzedFace:
        return self.analyze(image)[0]


def photo(code: int) -> bytes:
    return cv2.imencode(".png", np.full((10 + code, 12, 3), 128, np.uint8))[1].tobytes()


@pytest.mark.parametrize("choice", ["l2", "head-l1"])
def test_identity_service_follows_the_configured_verifier(choice: str, tmp_path: Path) -> None:
    spread, focused = _disagreeing_encodings()
    verifier = build_verifier(settings_with(verifier=choice))
    identity = IdentityService(
        StandInPipeline([BASE, spread, focused]), FileGallery(tmp_path), verifier
    )
    enrolled = identity.enroll("ada", photo(0))
    expect_spread = choice == "l2"  # L2 accepts the spread probe, the head the focused one
    assert identity.verify(photo(0), photo(1)).same is expect_spread
    assert identity.verify(photo(0), photo(2)).same is not expect_spread
    assert identity.verify_person(photo(1), enrolled.person.id).same is expect_spread
    named = [identity.identify(photo(code))[0].name for code in (1, 2)]
    assert named == (["ada", None] if expect_spread else [None, "ada"])
    verdict = identity.verify(photo(0), photo(2))
    assert verdict.threshold == verifier.threshold  # same response fields, the head's threshold


class StandInEncoder:
    name = "stand-in"
    chip_kind = "dlib150"

    def __init__(self, vector: np.ndarray) -> None:
        self.vector = vector

    def encode(self, chips: np.ndarray) -> np.ndarray:
        return np.repeat(self.vector[None], len(chips), axis=0)


@pytest.mark.parametrize("choice", ["l2", "head-l1"])
def test_recognizer_follows_the_configured_verifier(choice: str, tmp_path: Path) -> None:
    spread, focused = _disagreeing_encodings()
    gallery = FileGallery(tmp_path)
    ada = gallery.add_person("ada")
    gallery.add_encoding(ada.id, BASE, b"", encoder=StandInEncoder.name)
    verifier = build_verifier(settings_with(verifier=choice))
    decided = {}
    for label, probe in (("spread", spread), ("focused", focused)):
        worker = RecognizerWorker(
            StandInEncoder(probe), gallery, verifier, RecognizerSettings(min_frames=1)
        )
        worker.tick(0.0)  # syncs the index and sets the 1:K threshold
        face = DetectedFace(box=Box(x=0, y=0, w=100, h=100), score=0.99, track_id=1)
        frame = FacesMessage(
            camera_id="cam",
            seq=1,
            capture_ts=1.0,
            frame_width=640,
            frame_height=480,
            detector="test",
            faces=[face],
        )
        events = worker._vote(frame, [face], probe[None])
        decisions = [json.loads(e.value) for e in events]
        decided[label] = [
            d["person_name"] for d in decisions if d["type"] in ("identified", "unknown")
        ]
    if choice == "l2":
        assert decided == {"spread": ["ada"], "focused": [None]}
    else:
        assert decided == {"spread": [None], "focused": ["ada"]}


def test_committed_fine_tuned_layer_loads_and_refuses_another_base(tmp_path: Path) -> None:
    from training.similarity import finetuned

    kernel = finetuned.load_fc_kernel()
    assert kernel.shape == (256, 128) and kernel.dtype == np.float32
    other = tmp_path / "other.npz"
    finetuned.save_fc_kernel(other, kernel, {"base_content_sha256": "0" * 64})
    with pytest.raises(WeightsFileError, match="other pretrained weights"):
        finetuned.load_fc_kernel(other)


def test_hard_negatives_are_each_rows_nearest_rows_of_other_people() -> None:
    # On a line: 0 and 1 are ada, 2 and 3 bob, 4 cy. Nearest other-person rows, by hand.
    encodings = np.array([[0.0], [1.0], [1.5], [5.0], [5.2]], np.float32)
    labels = np.array([0, 0, 1, 1, 2])
    first, second = hard_negative_pairs(encodings, labels, per_image=2, block=2)
    chosen = {(int(a), int(b)) for a, b in zip(first, second, strict=True)}
    assert len(first) == 10
    assert chosen == {
        (0, 2),
        (0, 3),
        (1, 2),
        (1, 3),
        (2, 1),
        (2, 0),
        (3, 4),
        (3, 1),
        (4, 3),
        (4, 2),
    }
    assert all(labels[a] != labels[b] for a, b in chosen)
