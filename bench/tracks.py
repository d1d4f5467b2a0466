"""Whole tracks: ``started`` events per real person, and how soon Lin is named, on the two clips.

    .venv/bin/python -m bench.tracks [--clip hamilton|replay|both] [--modes on,off] [--json PATH]

Runs the real detector, liveness and recognizer workers in this process, frame by frame at 15
fps of stream time (each clip's frames as the ingestor publishes them, capture times 15 fps
apart), against a gallery holding lin_manuel_miranda's one photo. ``on`` is the configured
defaults (motion gating, detect-then-track, re-association, sparse encoding); ``off`` is every
frame detected and encoded, no re-association, ``started`` at a track's first frame (the
behaviour before issue 15). For each mode it
prints, against the hand-made ground truth (tests/ground_truth/tracks.json): the tracks started
per subject, ``started`` per subject seen (the target is <= 1.3), tracks matching no subject,
tracks that switched from one subject to another, the frames the face detector ran on, and for the Hamilton clip the stream seconds from Lin's
first frame to his ``identified`` event.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shared.bus.base import Message  # noqa: E402
from shared.images import encode_jpeg  # noqa: E402
from shared.schemas import FacesMessage, FrameMeta, Topics, read_event  # noqa: E402
from shared.settings import Settings  # noqa: E402

GROUND_TRUTH = Path(__file__).parent.parent / "tests" / "ground_truth" / "tracks.json"
CLIPS = {
    "hamilton": ("video", "hamilton_clip_640x360.mp4"),
    "replay": ("liveness", "replay_attack_same_person.mp4"),
}
OFF = {
    "detector": {"motion_gating": False, "detect_every": 1},
    "recognizer": {"reassociate": False, "encode_every": 1, "confirm_frames": 1},
}


@dataclass
class ClipRun:
    """What one pass over a clip produced."""

    events: list = field(default_factory=list)
    boxes: dict[int, list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))
    """Track id (as the recognizer counts it) -> (frame index, box centre x) per frame."""
    detected_frames: int = 0
    refined_faces: int = 0
    frames: int = 0


def clip_frames(path: Path, fps: float = 15.0) -> list:
    """The clip's frames as the ingestor paces them to ``fps`` (by media time)."""
    capture = cv2.VideoCapture(str(path))
    source_fps = capture.get(cv2.CAP_PROP_FPS) or fps
    step = max(1, round(source_fps / fps))
    frames, index = [], 0
    while True:
        ok, image = capture.read()
        if not ok:
            return frames
        if index % step == 0:
            frames.append(image)
        index += 1


def settings_for(mode: str, base: Settings) -> Settings:
    if mode == "on":
        return base
    detector = base.detector.model_copy(update=OFF["detector"])
    recognizer = base.recognizer.model_copy(update=OFF["recognizer"])
    return base.model_copy(update={"detector": detector, "recognizer": recognizer})


class Pipeline:
    """The detector, liveness and recognizer workers chained in this process."""

    def __init__(self, settings: Settings, gallery, detector) -> None:
        from services.detector.worker import DetectorWorker
        from services.liveness.worker import LivenessWorker
        from services.recognizer.worker import RecognizerWorker
        from shared.face.factory import build_verifier, chip_kind_for, load_face_encoder
        from shared.liveness.pixels import load_any

        self.detector = DetectorWorker(
            detector,
            settings.face.min_face_px,
            chip=chip_kind_for(settings.face.encoder),
            settings=settings.detector,
        )
        self.liveness = (
            LivenessWorker(load_any(settings.liveness.weights), settings.liveness)
            if settings.liveness.gate
            else None
        )
        self.recognizer = RecognizerWorker(
            load_face_encoder(settings),
            gallery,
            build_verifier(settings),
            settings.recognizer,
            settings.face.identification_far,
            liveness_gate=settings.liveness.gate,
        )

    def run(self, frames: list, camera: str, fps: float = 15.0) -> ClipRun:
        out = ClipRun(frames=len(frames))
        base = time.time() - 3600.0  # stream time in the past: nothing is ahead of the clock
        calls = self.detector.detector
        before = getattr(calls, "frames_detected", 0)
        refined_before = getattr(calls, "faces_refined", 0)
        for index, image in enumerate(frames):
            meta = FrameMeta(
                camera_id=camera,
                seq=index,
                capture_ts=base + index / fps,
                width=image.shape[1],
                height=image.shape[0],
            )
            frame = Message(Topics.FRAMES, encode_jpeg(image, 85), camera, meta.to_headers())
            (faces_out,) = self.detector.process_batch([frame])
            faces = _message(_only(faces_out))
            batch = [faces]
            if self.liveness is not None:
                (verdicts,) = self.liveness.process_batch([faces])
                batch += [_message(v) for v in _list(verdicts)]
            for result in self.recognizer.process_batch(batch):
                out.events += [read_event(_message(e)) for e in _list(result)]
            out.events += [read_event(_message(e)) for e in self.recognizer.tick(time.time())]
            self._record_boxes(out, index, FacesMessage.from_message(faces))
        out.events += [read_event(_message(e)) for e in self.recognizer.shutdown()]
        out.detected_frames = getattr(calls, "frames_detected", 0) - before
        out.refined_faces = getattr(calls, "faces_refined", 0) - refined_before
        return out

    def _record_boxes(self, out: ClipRun, index: int, faces: FacesMessage) -> None:
        again = self.recognizer.reassociation
        for face in faces.faces:
            if face.track_id is None:
                continue
            track = again.resolve(faces.camera_id, face.track_id) if again else face.track_id
            out.boxes[track].append((index, face.box.x + face.box.w / 2))


def _only(result):
    if isinstance(result, Exception):
        raise result
    (outgoing,) = result
    return outgoing


def _list(result) -> list:
    if isinstance(result, Exception):
        raise result
    return list(result)


def _message(outgoing) -> Message:
    return Message(outgoing.topic, outgoing.value, outgoing.key, dict(outgoing.headers))


def subject_of(track: list[tuple[int, float]], subjects: list[dict]) -> str | None:
    """The ground-truth subject most of a track's frames fall on (frame range and x range)."""
    votes = subject_votes(track, subjects)
    return votes.most_common(1)[0][0] if votes else None


def subject_votes(track: list[tuple[int, float]], subjects: list[dict]) -> Counter[str]:
    """Frames of a track per ground-truth subject they fall on."""
    votes: Counter[str] = Counter()
    for index, x in track:
        for subject in subjects:
            for segment in subject["segments"]:
                (a, b), (x0, x1) = segment["frames"], segment["x"]
                if a <= index <= b and x0 <= x <= x1:
                    votes[subject["id"]] += 1
    return votes


def score(run: ClipRun, truth: dict, fps: float = 15.0) -> dict:
    """Tracks started per subject and (for lin_manuel_miranda) seconds to his identification."""
    started = {e.track_id for e in run.events if e.type == "started"}
    per_subject: Counter[str] = Counter()
    unmatched = 0
    for track in started:
        subject = subject_of(run.boxes.get(track, []), truth["subjects"])
        if subject is None:
            unmatched += 1
        else:
            per_subject[subject] += 1
    seen = len(per_subject)
    switches = sum(  # one track on two subjects (3+ frames each): an identity switch
        1
        for track in started
        if sum(n >= 3 for n in subject_votes(run.boxes.get(track, []), truth["subjects"]).values())
        > 1
    )
    result = {
        "started": len(started),
        "per_subject": dict(per_subject),
        "subjects_seen": seen,
        "started_per_subject": round(sum(per_subject.values()) / seen, 2) if seen else None,
        "unmatched_tracks": unmatched,
        "identity_switches": switches,
        "detected_frames": run.detected_frames,
        "refined_faces": run.refined_faces,
        "frames": run.frames,
        "events": dict(Counter(e.type for e in run.events)),
    }
    lin = next((s for s in truth["subjects"] if s["id"] == "lin_manuel_miranda"), None)
    named = [e for e in run.events if e.type == "identified" and e.person_name]
    if lin is not None:
        start_ts = min((e.first_seen_ts for e in run.events), default=0.0)
        base = start_ts - min(i for t in run.boxes.values() for i, _ in t) / fps
        if named:  # from the first frame of the shot (segment) his named track began in
            began = round((named[0].first_seen_ts - base) * fps)
            first = next(
                (a for a, b in (g["frames"] for g in lin["segments"]) if a <= began <= b), began
            )
            result["lin_identified_after_s"] = round(
                named[0].last_seen_ts - (base + first / fps), 2
            )
        result["named"] = sorted({e.person_name for e in named})
    return result


def lin_enrolled(base: Settings, data_dir: Path):
    """Settings on a file store in ``data_dir`` and the identity service with lin_manuel_miranda
    enrolled from his one photo (the gallery the tracks benchmarks match against)."""
    from shared.face.factory import build_identity

    settings = base.model_copy(update={"store": "file", "data_dir": data_dir})
    identity = build_identity(settings)
    photo = base.shared_data / "faces/people/enroll/lin_manuel_miranda/img1.png"
    identity.enroll("lin_manuel_miranda", photo.read_bytes())
    return settings, identity


class CountingDetector:
    """Wraps the configured detector to count the frames it ran on (the same model)."""

    def __init__(self, detector) -> None:
        self._detector = detector
        self.frames_detected = 0
        self.faces_refined = 0
        self.name = detector.name
        self.can_refine = detector.can_refine

    def detect_batch(self, images):
        self.frames_detected += len(images)
        return self._detector.detect_batch(images)

    def refine(self, image, boxes):
        self.faces_refined += len(boxes)
        return self._detector.refine(image, boxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", choices=["hamilton", "replay", "both"], default="both")
    parser.add_argument("--modes", default="on,off")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from shared.face.detection import create_detector

    base = Settings()
    truth = json.loads(GROUND_TRUTH.read_text())["clips"]
    detector = CountingDetector(
        create_detector(base.face.detector, min_face_px=base.face.min_face_px)
    )
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-tracks-") as tmp:
        settings, identity = lin_enrolled(base, Path(tmp))
        names = ["hamilton", "replay"] if args.clip == "both" else [args.clip]
        for name in names:
            folder, file = CLIPS[name]
            frames = clip_frames(base.shared_data / folder / file)
            for mode in args.modes.split(","):
                started = time.perf_counter()
                pipeline = Pipeline(settings_for(mode, settings), identity.gallery, detector)
                run = pipeline.run(frames, f"{name}-{mode}")
                result = score(run, truth[file])
                result["seconds"] = round(time.perf_counter() - started, 1)
                report[f"{name}/{mode}"] = result
                print(f"{name:9s} {mode:3s} {json.dumps(result)}", flush=True)
                for track, boxes in sorted(run.boxes.items()):
                    frames_seen = [i for i, _ in boxes]
                    xs = [x for _, x in boxes]
                    print(
                        f"    track {track}: frames {min(frames_seen)}-{max(frames_seen)} "
                        f"({len(boxes)}), x {min(xs):.0f}-{max(xs):.0f} -> "
                        f"{subject_of(boxes, truth[file]['subjects'])}"
                    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
