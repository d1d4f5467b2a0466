"""Fusing several encodings of one face: the arithmetic, the per-track buffer, and real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.recognizer.fusion import TrackFusion
from shared.face.fusion import fuse_encodings


def unit(seed: int, dim: int = 128) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_weights_are_respected() -> None:
    a, b = unit(1), unit(2)
    even = fuse_encodings(np.stack([a, b]))
    leaning = fuse_encodings(np.stack([a, b]), np.array([3.0, 1.0]))
    assert float(leaning @ a) > float(even @ a) > float(leaning @ b)
    only_a = fuse_encodings(np.stack([a, b]), np.array([1.0, 0.0]))
    np.testing.assert_allclose(only_a, a, atol=1e-6)
    # the weighted mean of the unit directions, nothing else
    expected = 0.75 * a + 0.25 * b
    np.testing.assert_allclose(leaning, expected / np.linalg.norm(expected), atol=1e-6)


def test_the_order_of_the_encodings_does_not_matter() -> None:
    vectors = np.stack([unit(i) * (1.2 + 0.1 * i) for i in range(5)])
    weights = np.array([0.5, 1.0, 0.2, 0.9, 0.7])
    order = np.array([3, 0, 4, 1, 2])
    np.testing.assert_allclose(
        fuse_encodings(vectors, weights), fuse_encodings(vectors[order], weights[order]), atol=1e-6
    )


def test_unit_inputs_stay_unit_and_lengths_come_back() -> None:
    fused = fuse_encodings(np.stack([unit(i) for i in range(6)]))
    assert np.linalg.norm(fused) == pytest.approx(1.0, abs=1e-6)
    long = fuse_encodings(np.stack([unit(1) * 1.2, unit(2) * 1.6]), np.array([1.0, 3.0]))
    assert np.linalg.norm(long) == pytest.approx(0.25 * 1.2 + 0.75 * 1.6, abs=1e-5)
    assert fuse_encodings(unit(4)[None] * 1.4).dtype == np.float32


@pytest.mark.parametrize(
    ("encodings", "weights", "message"),
    [
        (np.zeros((0, 128)), None, "non-empty"),
        (np.ones(128), None, "non-empty"),
        (np.stack([unit(1), unit(2)]), np.array([1.0]), "weights"),
        (np.stack([unit(1), unit(2)]), np.array([1.0, -1.0]), "weights"),
        (np.stack([unit(1), unit(2)]), np.array([0.0, 0.0]), "weights"),
        (np.stack([unit(1), unit(2)]), np.array([1.0, np.nan]), "weights"),
        (np.stack([unit(1), np.zeros(128)]), None, "non-zero"),
        (np.stack([unit(1), np.full(128, np.inf)]), None, "finite"),
        (np.stack([unit(1), -unit(1)]), None, "cancel"),
    ],
)
def test_bad_input_is_refused(encodings, weights, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fuse_encodings(encodings, weights)


def test_a_track_fuses_its_best_frames_only() -> None:
    fusion = TrackFusion(frames=2)
    first = fusion.add("cam", 1, unit(1), 0.5)
    np.testing.assert_allclose(first.encoding, unit(1), atol=1e-6)
    assert (first.frames, first.weight) == (1, 0.5)
    fusion.add("cam", 1, unit(2), 0.9)
    third = fusion.add("cam", 1, unit(3), 0.1)  # worse than both kept: changes nothing
    np.testing.assert_allclose(
        third.encoding, fuse_encodings(np.stack([unit(2), unit(1)]), np.array([0.9, 0.5]))
    )
    assert (third.frames, third.weight) == (2, pytest.approx(1.4))
    other = fusion.add("cam", 2, unit(9), 1.0)  # tracks do not mix
    np.testing.assert_allclose(other.encoding, unit(9), atol=1e-6)
    fusion.forget("cam", 1)
    assert len(fusion) == 1
    with pytest.raises(ValueError):
        TrackFusion(frames=0)


def test_forgotten_tracks_do_not_pile_up() -> None:
    fusion = TrackFusion(frames=3, max_tracks=10)
    for track in range(50):
        fusion.add("cam", track, unit(track), 1.0)
    assert len(fusion) == 10


@pytest.mark.data
def test_fusing_real_faces_brings_them_closer_to_other_photos_of_the_person(
    face_pipeline, shared_data: Path
) -> None:
    """LFW people with 8+ photos: 3 photos fused vs each of them alone, against photos 4-8.

    Genuine distances must fall with fusion while distances to other people stay as far.
    """
    root = shared_data / "faces" / "lfw-deepfunneled"
    people = [p for p in sorted(root.iterdir()) if len(list(p.iterdir())) >= 8][:5]
    encodings = {}
    for person in people:
        faces = [face_pipeline.analyze_main(_read(photo)) for photo in sorted(person.iterdir())[:8]]
        encodings[person.name] = np.stack([f.embedding for f in faces if f is not None])
    single_genuine, fused_genuine, single_impostor, fused_impostor = [], [], [], []
    for name, vectors in encodings.items():
        probes, targets = vectors[:3], vectors[3:]
        fused = fuse_encodings(probes)
        others = np.concatenate([v for n, v in encodings.items() if n != name])
        single_genuine += [_d(p, targets).mean() for p in probes]
        fused_genuine.append(_d(fused, targets).mean())
        single_impostor += [_d(p, others).mean() for p in probes]
        fused_impostor.append(_d(fused, others).mean())
        norms = np.linalg.norm(probes, axis=1)
        assert norms.min() - 1e-5 <= np.linalg.norm(fused) <= norms.max() + 1e-5
    assert np.mean(fused_genuine) < 0.9 * np.mean(single_genuine)
    assert np.mean(fused_impostor) > 0.8 * np.mean(single_impostor)
    margin_single = np.mean(single_impostor) - np.mean(single_genuine)
    margin_fused = np.mean(fused_impostor) - np.mean(fused_genuine)
    assert margin_fused > margin_single


def _d(query: np.ndarray, references: np.ndarray) -> np.ndarray:
    return ((references - query) ** 2).sum(axis=1)


def _read(path: Path) -> np.ndarray:
    import cv2

    return cv2.imread(str(path))


def test_fusion_calibration_round_trip_and_shift(tmp_path: Path) -> None:
    from shared.face.fusion_calibration import (
        FusionCalibration,
        load_fusion_calibration,
        save_fusion_calibration,
    )

    path = tmp_path / "calibration_fusion.json"
    assert load_fusion_calibration("enc", "l2", path) is None
    save_fusion_calibration(FusionCalibration("enc", "l2", {2: 0.01, 3: 0.02}, "test"), path)
    save_fusion_calibration(FusionCalibration("other", "l2", {2: 0.5}, "test"), path)
    save_fusion_calibration(FusionCalibration("enc", "l2", {2: 0.03, 3: 0.04}, "again"), path)
    loaded = load_fusion_calibration("enc", "l2", path)
    assert loaded.source == "again" and loaded.shifts == {2: 0.03, 3: 0.04}
    assert [loaded.shift(n) for n in (1, 2, 3, 9)] == [0.0, 0.03, 0.04, 0.04]
    assert load_fusion_calibration("other", "l2", path).shift(2) == 0.5
    assert load_fusion_calibration("enc", "head-l1", path) is None


def test_template_distances_get_the_shift_of_their_photo_count() -> None:
    from shared.gallery.base import Encoding
    from shared.gallery.index import GalleryIndex

    photos = [unit(1), unit(2), unit(3)]
    template = fuse_encodings(np.stack(photos))
    index = GalleryIndex(template_shift=lambda n: 0.1 * n)
    index.add_local([Encoding(f"e{i}", "p", v) for i, v in enumerate(photos)])
    [match] = index.search(template)[0]
    assert match.template and match.distance == pytest.approx(0.3, abs=1e-5)


def test_the_committed_fusion_calibration_covers_the_default_encoder() -> None:
    """Without it the recognizer would match frames alone: the default must ship one."""
    from shared.face.encoder import FaceEncoder
    from shared.face.fusion_calibration import load_fusion_calibration

    calibration = load_fusion_calibration(FaceEncoder.name, "l2")
    assert calibration is not None
    shifts = [calibration.shift(n) for n in range(2, 6)]
    assert all(s > 0 for s in shifts) and shifts == sorted(shifts)  # more frames, more shift


class NamedEncoder:
    """Only the name matters here: which fusion calibration the recognizer finds."""

    def __init__(self, name: str) -> None:
        self.name = name


def test_without_a_fusion_calibration_the_recognizer_matches_frames_alone(tmp_path: Path) -> None:
    from services.recognizer.worker import RecognizerWorker
    from shared.face.verification import Calibration
    from shared.gallery.file_store import FileGallery
    from shared.settings import RecognizerSettings

    gallery = FileGallery(tmp_path)
    unknown = RecognizerWorker(
        NamedEncoder("never_calibrated_v0"), gallery, Calibration.load(), RecognizerSettings()
    )
    assert unknown.fusion is None and not unknown.index.use_templates
    off = RecognizerWorker(
        NamedEncoder("dlib_face_recognition_resnet_model_v1"),
        gallery,
        Calibration.load(),
        RecognizerSettings(fusion_frames=0),
    )
    assert off.fusion is None


@pytest.mark.data
def test_the_recognizer_names_a_track_by_its_fused_real_frames(
    calibration, face_pipeline, shared_data: Path, tmp_path: Path
) -> None:
    """An LFW person enrolled from one photo; a track of five other photos of them is named,
    a track of a stranger's photos is not."""
    import json

    import cv2

    from services.recognizer.worker import RecognizerWorker
    from shared.face.identity import IdentityService
    from shared.gallery.file_store import FileGallery
    from shared.schemas import Box, DetectedFace, FacesMessage
    from shared.settings import RecognizerSettings

    root = shared_data / "faces" / "lfw-deepfunneled"
    person, stranger = (root / "Kofi_Annan", root / "Hugo_Chavez")  # outside View 1
    gallery = FileGallery(tmp_path / "g")
    identity = IdentityService(face_pipeline, gallery, calibration)
    identity.enroll("kofi", sorted(person.iterdir())[0].read_bytes())
    worker = RecognizerWorker(
        face_pipeline.encoder, gallery, calibration, RecognizerSettings(fusion_frames=5)
    )
    assert worker.fusion is not None
    worker.tick(0.0)
    decided = {}
    for track, folder in ((1, person), (2, stranger)):
        photos = sorted(folder.iterdir())[1:6]
        chips = np.stack([face_pipeline.analyze_main(cv2.imread(str(p))).chip for p in photos])
        embeddings = face_pipeline.encoder.encode(chips)
        events = []
        for i, embedding in enumerate(embeddings):
            face = DetectedFace(box=Box(x=0, y=0, w=120, h=120), score=0.99, track_id=track)
            frame = FacesMessage(
                camera_id="cam",
                seq=i,
                capture_ts=100.0 * track + i,
                frame_width=250,
                frame_height=250,
                detector="mtcnn",
                faces=[face],
            )
            events += [json.loads(o.value) for o in worker._vote(frame, [face], embedding[None])]
        decided[track] = [e["person_name"] for e in events if e["type"] != "started"]
        assert len(events) <= 3  # started and at most two decisions, never one per frame
    assert decided[1][-1] == "kofi"
    assert decided[2] == [None]
