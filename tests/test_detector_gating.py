"""Motion gating and detect-then-track in the detector, on real frames with a real detector.

YuNet (the project's ONNX detector, landmarks included) counts its own calls here: the tests
check which frames the detector ran on, not how fast.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from services.detector.motion import MotionDetector
from services.detector.worker import DetectorWorker
from shared.bus.base import Message
from shared.face.chip_kinds import ARCFACE_112
from shared.face.detection import MtcnnDetector, YuNetDetector
from shared.images import encode_jpeg
from shared.schemas import FacesMessage, FrameMeta, Topics
from shared.settings import DetectorSettings, Settings

pytestmark = pytest.mark.data


class CountingYuNet(YuNetDetector):
    """The real YuNet, remembering how many frames it was asked to detect."""

    frames = 0

    def detect_batch(self, images_bgr):
        self.frames += len(images_bgr)
        return super().detect_batch(images_bgr)


class CountingMtcnn(MtcnnDetector):
    """The real MTCNN, counting full detections and refined faces."""

    frames = 0
    refined = 0

    def detect_batch(self, images_bgr):
        self.frames += len(images_bgr)
        return super().detect_batch(images_bgr)

    def refine(self, image_bgr, boxes):
        self.refined += len(boxes)
        return super().refine(image_bgr, boxes)


@pytest.fixture
def detector() -> CountingYuNet:
    models = Settings().face.models_dir
    if not (models / "face_detection_yunet_2023mar.onnx").is_file():
        pytest.skip(f"YuNet not converted under {models} (facestream models fetch)")
    return CountingYuNet(models_dir=models)


def clip_frames(video: Path, count: int, step: int = 2) -> list[np.ndarray]:
    """``count`` frames of the clip at 15 fps (every other of its 29.97)."""
    capture = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    index = 0
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(image)
        index += 1
    return frames


def still_scene(shared_data: Path) -> np.ndarray:
    """A real photo without people, at the clip's size, with a camera's sensor noise added per
    frame by ``noisy``."""
    image = cv2.imread(str(shared_data / "style" / "content" / "tubingen.jpg"))
    return cv2.resize(image, (640, 360), interpolation=cv2.INTER_AREA)


def noisy(image: np.ndarray, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 2.0, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def run(worker: DetectorWorker, images: list[np.ndarray], start: int = 0) -> list[FacesMessage]:
    """Feed frames of camera ``cam`` one poll each, as the runner would."""
    out = []
    for seq, image in enumerate(images, start):
        meta = FrameMeta(
            camera_id="cam", seq=seq, capture_ts=1000.0 + seq / 15, width=640, height=360
        )
        data = encode_jpeg(image, 90)
        message = Message(Topics.FRAMES, data, "cam", meta.to_headers(), 0, seq)
        (result,) = worker.process_batch([message])
        assert not isinstance(result, Exception), result
        out.append(FacesMessage.model_validate_json(result[0].value))
    return out


def test_a_still_scene_is_not_detected_every_frame(detector, shared_data: Path) -> None:
    settings = DetectorSettings(detect_every=3, full_every=15)
    worker = DetectorWorker(detector, chip=ARCFACE_112, settings=settings)
    scene = still_scene(shared_data)
    run(worker, [noisy(scene, seed) for seed in range(60)])
    # The first frame, then one periodic full detection every 15 frames: 4 of 60.
    assert detector.frames == 4


def test_without_gating_every_frame_is_detected(detector, shared_data: Path) -> None:
    worker = DetectorWorker(detector, chip=ARCFACE_112, settings=DetectorSettings(detect_every=1))
    scene = still_scene(shared_data)
    run(worker, [noisy(scene, seed) for seed in range(20)])
    assert detector.frames == 20


def test_motion_brings_detection_back_within_k_frames(
    detector, shared_data: Path, hamilton: Path
) -> None:
    k = 3
    settings = DetectorSettings(detect_every=k, full_every=1000, settle_frames=0)
    worker = DetectorWorker(detector, chip=ARCFACE_112, settings=settings)
    scene = still_scene(shared_data)
    run(worker, [noisy(scene, seed) for seed in range(30)])
    assert detector.frames == 1  # nothing moved: only the first frame
    people = clip_frames(hamilton, 80)[40:]  # a face on camera throughout
    before = detector.frames
    out = run(worker, people, start=30)
    first_face = next(i for i, message in enumerate(out) if message.faces)
    assert first_face < k, "the cut to a scene with people is motion: detected at once"
    # Faces on camera: a detection every k frames, the frames between carried by optical flow.
    assert detector.frames - before <= len(people) // k + 3
    carried = [f for message in out for f in message.faces if f.tracked]
    assert carried and all(f.chip_jpeg_b64 and len(f.landmarks) == 5 for f in carried)


def test_carried_faces_keep_their_track_and_follow_the_face(detector, hamilton: Path) -> None:
    """Detect every frame (reference) vs detect every 3rd: the carried boxes of a track stay on
    the face the detector finds on the same frame."""
    frames = clip_frames(hamilton, 70)[40:]
    reference = run(
        DetectorWorker(detector, chip=ARCFACE_112, settings=DetectorSettings(detect_every=1)),
        frames,
    )
    settings = DetectorSettings(detect_every=3, settle_frames=0)
    tracked = run(DetectorWorker(detector, chip=ARCFACE_112, settings=settings), frames)
    compared = 0
    for ref, got in zip(reference, tracked, strict=True):
        for face in (f for f in got.faces if f.tracked and ref.faces):
            centre = np.array([face.box.x + face.box.w / 2, face.box.y + face.box.h / 2])
            nearest = min(
                np.linalg.norm(centre - [r.box.x + r.box.w / 2, r.box.y + r.box.h / 2])
                for r in ref.faces
            )
            assert nearest < 0.25 * face.box.w
            compared += 1
    assert compared >= 5
    ids = {f.track_id for message in tracked for f in message.faces}
    ref_ids = {f.track_id for message in reference for f in message.faces}
    assert len(ids) <= len(ref_ids)


@pytest.mark.parametrize("refine_young", [True, False])
def test_young_faces_are_refined_between_detections(hamilton: Path, refine_young: bool) -> None:
    """Lin's close-up, every face young (settle_frames 40): with refinement a full detection
    every 3rd frame, the frames between measured by ONet on the carried boxes (landmarks and
    chips, not ``tracked``: the liveness model takes them); without it, every frame detected."""
    detector = CountingMtcnn()
    settings = DetectorSettings(detect_every=3, settle_frames=40, refine_young=refine_young)
    frames = clip_frames(hamilton, 75)[45:]
    out = run(DetectorWorker(detector, chip=ARCFACE_112, settings=settings), frames)
    faces = [f for message in out for f in message.faces]
    assert not any(f.tracked for f in faces), "young faces are measured, never only carried"
    assert all(f.chip_jpeg_b64 and len(f.landmarks) == 5 for f in faces)
    if refine_young:
        assert detector.frames <= len(frames) // 3 + 3
        assert detector.refined >= len(frames) // 2
    else:
        assert detector.frames == len(frames) and detector.refined == 0
    lin = max({f.track_id for f in faces}, key=lambda t: sum(f.track_id == t for f in faces))
    assert sum(f.track_id == lin for f in faces) >= len(frames) - 3, "one track throughout"


def test_the_motion_detector_ignores_noise_and_sees_a_moving_object(shared_data: Path) -> None:
    motion = MotionDetector()
    scene = still_scene(shared_data)
    grey = cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY)
    assert motion.update(grey).moving  # the first frame: nothing known yet
    for seed in range(10):
        assert not motion.update(cv2.cvtColor(noisy(scene, seed), cv2.COLOR_BGR2GRAY)).moving
    moved = grey.copy()
    moved[100:180, 300:360] = 255 - moved[100:180, 300:360]  # something appears
    seen = motion.update(moved)
    assert seen.moving and seen.region is not None
    x, y, w, h = seen.region
    assert x <= 300 and y <= 100 and x + w >= 360 and y + h >= 180


def test_the_clip_s_shot_cuts_are_cuts_and_nothing_else_is(hamilton: Path, shared_data) -> None:
    """A cut starts new tracks (the old faces are not on the new shot); a phone swung in front
    of the camera in the replay clip changes as many pixels but is no cut."""
    for video, cuts in (
        (hamilton, [10, 41, 106]),
        (shared_data / "liveness" / "replay_attack_same_person.mp4", []),
    ):
        motion = MotionDetector()
        frames = clip_frames(video, 1000, step=2 if video == hamilton else 1)
        found = [
            i
            for i, f in enumerate(frames)
            if motion.update(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)).cut
        ]
        assert found == cuts
