"""The liveness service: when it judges a track, what it publishes, and what it does with bad input."""

from __future__ import annotations

import numpy as np
import pytest

from services.liveness.worker import LivenessWorker
from shared.bus.base import Message
from shared.liveness.context import context_to_b64
from shared.liveness.features import FEATURES
from shared.liveness.model import WINDOW, LivenessModel, build_model
from shared.schemas import Box, DetectedFace, FacesMessage, LivenessVerdict, Topics
from shared.settings import LivenessSettings

RNG = np.random.default_rng(0)
CONTEXT = context_to_b64(RNG.integers(0, 256, (96, 96), dtype=np.uint8))
LANDMARKS = [(40.0, 50.0), (80.0, 50.0), (60.0, 70.0), (45.0, 90.0), (75.0, 90.0)]


class ConstantModel(LivenessModel):
    """The real model's interface with a fixed answer, so a test can say which verdict to expect."""

    def __init__(self, p_live: float) -> None:
        super().__init__(build_model(WINDOW), np.zeros(FEATURES), np.ones(FEATURES), {})
        self.p_live = p_live
        self.windows_seen: list[np.ndarray] = []

    def probability_live(self, windows: np.ndarray) -> np.ndarray:
        self.windows_seen.append(windows)
        return np.full(len(windows), self.p_live, np.float32)


def faces(seq: int, *tracks: int, context: str | None = CONTEXT, camera: str = "cam") -> Message:
    message = FacesMessage(
        camera_id=camera,
        seq=seq,
        capture_ts=1000.0 + seq / 15,
        frame_width=640,
        frame_height=360,
        detector="test",
        faces=[
            DetectedFace(
                box=Box(x=20 + seq, y=20, w=80, h=100),
                score=0.99,
                landmarks=[(x + seq, y) for x, y in LANDMARKS],
                track_id=track,
                context_jpeg_b64=context,
            )
            for track in tracks
        ],
    )
    return Message(Topics.FACES, message.to_bytes(), camera, message.headers())


def verdicts(results) -> list[LivenessVerdict]:
    return [
        LivenessVerdict.from_message(Message(o.topic, o.value, o.key, o.headers))
        for result in results
        for o in result
    ]


def test_a_track_is_judged_every_hop_frames_and_named_only_after_enough_windows() -> None:
    model = ConstantModel(0.9)
    worker = LivenessWorker(model, LivenessSettings(hop=8, min_windows=3))
    results = worker.process_batch([faces(seq, 7) for seq in range(WINDOW + 24)])
    # windows at frames 15, 23, 31, 39, in one model call for the poll
    assert model.windows_seen[0].shape == (4, WINDOW, FEATURES)
    judged_at = [i for i, result in enumerate(results) if result]
    assert judged_at == [WINDOW + 15, WINDOW + 23]  # pending windows publish nothing
    first = verdicts(results)[0]
    assert (first.camera_id, first.track_id, first.live, first.window_frames) == (
        "cam",
        7,
        True,
        16,
    )


def test_attack_windows_make_the_track_an_attack() -> None:
    worker = LivenessWorker(ConstantModel(0.02), LivenessSettings(threshold=0.5))
    judged = verdicts(worker.process_batch([faces(seq, 1) for seq in range(WINDOW + 16)]))
    assert [v.live for v in judged] == [False, False]  # two very sure windows; one is not
    assert judged[0].score < 0.05


def test_a_camera_with_liveness_off_is_not_judged() -> None:
    model = ConstantModel(0.9)
    worker = LivenessWorker(model, LivenessSettings(cameras={"lobby": {"mode": "off"}}))
    batch = [faces(seq, 1, camera="lobby") for seq in range(WINDOW * 4)]
    assert verdicts(worker.process_batch(batch)) == [] and model.windows_seen == []


def test_tracks_are_kept_apart_and_faces_without_context_are_skipped() -> None:
    worker = LivenessWorker(
        ConstantModel(0.9), LivenessSettings(min_windows=1, live_bound=2.0, live_clip=4.0)
    )
    batch = [faces(seq, 1, 2) for seq in range(WINDOW)]
    batch += [faces(WINDOW + seq, 3, context=None) for seq in range(WINDOW)]
    assert sorted(v.track_id for v in verdicts(worker.process_batch(batch))) == [1, 2]


def test_a_damaged_context_fails_that_message_only() -> None:
    worker = LivenessWorker(
        ConstantModel(0.9), LivenessSettings(min_windows=1, live_bound=2.0, live_clip=4.0)
    )
    batch = [faces(seq, 1) for seq in range(WINDOW - 1)] + [faces(WINDOW - 1, 2, context="!!")]
    batch.append(faces(WINDOW, 1))
    results = worker.process_batch(batch)
    assert isinstance(results[WINDOW - 1], ValueError)
    assert [v.track_id for v in verdicts(r for r in results if isinstance(r, list))] == [1]


def test_a_damaged_face_changes_no_track() -> None:
    worker = LivenessWorker(ConstantModel(0.9), LivenessSettings())
    worker.process_batch([faces(seq, 1) for seq in range(3)])
    message = FacesMessage.model_validate_json(faces(3, 1, 2).value)
    damaged = message.model_copy(
        update={
            "faces": [
                message.faces[0],
                message.faces[1].model_copy(update={"context_jpeg_b64": "!!"}),
            ]
        }
    )
    [result] = worker.process_batch(
        [Message(Topics.FACES, damaged.to_bytes(), "cam", damaged.headers())]
    )
    assert isinstance(result, ValueError)
    assert len(worker.tracks[("cam", 1)].rows) == 3 and ("cam", 2) not in worker.tracks


def test_ended_tracks_and_silent_cameras_are_forgotten() -> None:
    worker = LivenessWorker(ConstantModel(0.9), LivenessSettings(track_timeout_s=2.0))
    worker.process_batch([faces(seq, 1) for seq in range(5)])  # track 1 until 1000.27
    worker.process_batch([faces(seq, 2) for seq in range(5, 60)])  # the camera goes on to 1003.9
    worker.tick(now=1004.0)
    assert set(worker.tracks) == {("cam", 2)}
    worker.expire("cam")  # the runner: the camera has been silent for stream.camera_idle_s
    assert worker.tracks == {}


@pytest.mark.data
def test_the_detector_sends_each_face_with_the_crop_of_its_surroundings(
    shared_data, monkeypatch
) -> None:
    import cv2

    from shared.liveness.context import context_crop, context_from_b64
    from tests.helpers import detect_one_frame, obama_jpeg

    jpeg = obama_jpeg(shared_data)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    [face] = detect_one_frame(jpeg, {"FACESTREAM_LIVENESS__RECAPTURE_CUES": "true"}, monkeypatch)
    sent = context_from_b64(face.context_jpeg_b64).astype(int)
    box = (face.box.x, face.box.y, face.box.w, face.box.h)
    expected = context_crop(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), box).astype(int)
    assert np.abs(sent - expected).mean() < 3  # the same crop, up to its JPEG
    from shared.liveness.recapture import CUES, frame_cues

    assert face.recapture == pytest.approx(frame_cues(image, box).tolist(), abs=1e-4)
    assert len(face.recapture) == len(CUES)


def test_the_detector_sends_cues_exactly_when_the_liveness_model_reads_them() -> None:
    """The default model is the recapture model, which skips faces without cues: left unset,
    the cues follow the configured weights, so the two services cannot disagree."""
    from shared.liveness.pixels import load_any
    from shared.settings import LIVENESS_WEIGHTS

    default = LivenessSettings()
    assert getattr(load_any(default.weights), "needs_cues", False)
    assert default.sends_recapture_cues()
    motion_only = LivenessSettings(weights=LIVENESS_WEIGHTS)
    assert not getattr(load_any(motion_only.weights), "needs_cues", False)
    assert not motion_only.sends_recapture_cues()
    assert not LivenessSettings(recapture_cues=False).sends_recapture_cues()
    assert LivenessSettings(weights=LIVENESS_WEIGHTS, recapture_cues=True).sends_recapture_cues()


def test_a_pixel_model_gets_the_chips_of_four_frames_of_each_window() -> None:
    from shared.face.chips import chip_to_b64
    from shared.liveness.pixels import CHIP, PIXEL_FRAMES, PixelLivenessModel, build_pixel_model

    class Recording(PixelLivenessModel):
        seen: list = []

        def probability_live(self, motion, chips):
            self.seen.append((motion.shape, chips.shape, chips[0, :, 0, 0, 0].tolist()))
            return super().probability_live(motion, chips)

    model = Recording(build_pixel_model(), np.zeros(FEATURES), np.ones(FEATURES), {})
    worker = LivenessWorker(model, LivenessSettings())

    def with_chip(seq: int) -> Message:
        message = FacesMessage.from_message(faces(seq, 1))
        chip = np.full((150, 150, 3), seq * 10, np.uint8)  # each frame's chip tells its index
        face = message.faces[0].model_copy(update={"chip_jpeg_b64": chip_to_b64(chip)})
        message = message.model_copy(update={"faces": [face]})
        return Message(Topics.FACES, message.to_bytes(), "cam", message.headers())

    worker.process_batch([with_chip(seq) for seq in range(WINDOW)])
    [(motion, chips, firsts)] = model.seen
    assert motion == (1, WINDOW, FEATURES) and chips == (1, len(PIXEL_FRAMES), CHIP, CHIP, 3)
    assert [round(v / 10) for v in firsts] == list(PIXEL_FRAMES)
    no_chip = worker.process_batch([faces(WINDOW + seq, 2) for seq in range(WINDOW)])
    assert no_chip == [[]] * WINDOW  # a pixel model cannot judge faces without a chip


def test_a_recapture_model_gets_each_frames_cues_and_skips_faces_without_them() -> None:
    from shared.liveness.recapture import CUES
    from shared.liveness.recapture_model import RecaptureLiveness, RecaptureModel

    size = 2 * len(CUES) + 1
    weights = np.zeros(size + 1)
    weights[0] = 1.0  # P(live) rises with the window's mean first cue
    recapture = RecaptureModel(np.zeros(size), np.ones(size), weights, {"sha256": "r"})
    model = RecaptureLiveness(ConstantModel(0.5), recapture)
    worker = LivenessWorker(model, LivenessSettings())

    def with_cues(seq: int, track: int, first_cue: float) -> Message:
        message = FacesMessage.from_message(faces(seq, track))
        cues = [first_cue] + [0.0] * (len(CUES) - 1)
        face = message.faces[0].model_copy(update={"recapture": cues})
        message = message.model_copy(update={"faces": [face]})
        return Message(Topics.FACES, message.to_bytes(), "cam", message.headers())

    live = [with_cues(seq, 1, 5.0) for seq in range(WINDOW + 16)]
    attack = [with_cues(seq, 2, -5.0) for seq in range(WINDOW + 16)]
    judged = verdicts(worker.process_batch(live + attack))
    assert {v.track_id: v.live for v in judged} == {1: True, 2: False}
    no_cues = worker.process_batch([faces(seq, 3) for seq in range(WINDOW)])
    assert no_cues == [[]] * WINDOW  # an older detector's faces: not judged, counted
    assert worker.tracks.get(("cam", 3)) is None

    def with_raw_cues(seq: int, track: int, cues: list[float]) -> Message:
        message = FacesMessage.from_message(faces(seq, track))
        face = message.faces[0].model_copy(update={"recapture": cues})
        message = message.model_copy(update={"faces": [face]})
        return Message(Topics.FACES, message.to_bytes(), "cam", message.headers())

    other_set = [with_raw_cues(seq, 4, [1.0] * (len(CUES) - 1)) for seq in range(WINDOW)]
    assert worker.process_batch(other_set) == [[]] * WINDOW  # another version's cue set
    assert worker.tracks.get(("cam", 4)) is None
    broken = [float("nan")] + [0.0] * (len(CUES) - 1)
    [error, fine] = worker.process_batch(
        [with_raw_cues(0, 5, broken), with_raw_cues(1, 6, [0.0] * len(CUES))]
    )
    assert isinstance(error, ValueError) and fine == []  # dead-lettered alone
    assert worker.tracks.get(("cam", 5)) is None and ("cam", 6) in worker.tracks


def with_eyes(seq: int, ear: float | None, tracked: bool = False, camera: str = "cam") -> Message:
    """Track 1's face in frame ``seq`` with the eye aspect ratio the detector measured."""
    message = FacesMessage.from_message(faces(seq, 1, camera=camera))
    face = message.faces[0].model_copy(update={"eye_aspect_ratio": ear, "tracked": tracked})
    message = message.model_copy(update={"faces": [face]})
    return Message(Topics.FACES, message.to_bytes(), camera, message.headers())


def test_with_require_blink_a_track_is_named_only_after_it_blinks() -> None:
    """Eyes open all along (a print): pending however live the windows; the blink, seen on
    frames the detector carried by optical flow, lets the next window name it."""
    worker = LivenessWorker(ConstantModel(0.9), LivenessSettings(require_blink=True))
    frames = WINDOW + 40
    steady = [with_eyes(seq, 0.30 + 0.01 * (seq % 3)) for seq in range(frames)]
    assert verdicts(worker.process_batch(steady)) == []
    blink = [with_eyes(frames, 0.10, tracked=True), with_eyes(frames + 1, 0.08, tracked=True)]
    after = [with_eyes(frames + 2 + i, 0.31) for i in range(16)]
    judged = verdicts(worker.process_batch(blink + after))
    assert judged and all(v.live for v in judged)


def test_only_cameras_that_require_a_blink_wait_for_one() -> None:
    settings = LivenessSettings(cameras={"door": {"require_blink": True}, "lobby": {"mode": "off"}})
    worker = LivenessWorker(ConstantModel(0.9), settings)
    batch = [
        with_eyes(seq, 0.3, camera=camera)
        for camera in ("door", "hall", "lobby")
        for seq in range(WINDOW + 24)
    ]
    assert {v.camera_id for v in verdicts(worker.process_batch(batch))} == {"hall"}
    assert ("door", 1) in worker.tracks and ("lobby", 1) not in worker.tracks


@pytest.mark.parametrize("ear", [-0.1, 6.0, float("nan")])
def test_an_impossible_eye_ratio_dead_letters_that_message_only(ear: float) -> None:
    import json

    worker = LivenessWorker(ConstantModel(0.9), LivenessSettings(require_blink=True))
    good = with_eyes(0, 0.3)
    body = json.loads(good.value)
    body["faces"][0]["eye_aspect_ratio"] = ear
    bad = Message(Topics.FACES, json.dumps(body).encode(), "cam", good.headers)
    results = worker.process_batch([bad, with_eyes(1, 0.3)])
    assert isinstance(results[0], Exception) and results[1] == []
    assert len(worker.tracks[("cam", 1)].rows) == 1  # the bad face changed no track


def test_a_detector_that_sends_no_eye_ratio_leaves_the_track_unnamed_and_counted() -> None:
    from tests.helpers import sample

    name = "facestream_liveness_faces_skipped_total"
    before = sample(name, reason="no_eye_ratio")
    worker = LivenessWorker(ConstantModel(0.9), LivenessSettings(require_blink=True))
    assert verdicts(worker.process_batch([faces(seq, 1) for seq in range(WINDOW + 24)])) == []
    assert sample(name, reason="no_eye_ratio") - before == WINDOW + 24
