"""Track-level fusion and multi-photo templates in the recognizer, measured on the sample videos.

    python -m bench.fusion [--distractors 0 1000] [--fps 15] [--json bench/out/fusion.json]

The videos go through the real detector (MTCNN, tracker, aligned chips) once, paced to ``--fps``
on media time like the ingestor; the resulting faces messages are then fed to the real
``RecognizerWorker`` in polls of 16, once per variant:

- ``per-frame``: every frame matched alone and voted (the recognizer before fusion);
- ``templates``: per-frame, plus the fused template of each person enrolled from several photos;
- ``fusion N``: each frame matched as the fused encoding of its track's best N frames;
- ``fusion N + templates``: both (the default: ``FACESTREAM_RECOGNIZER__FUSION_FRAMES=5``).

The gallery: the six people of faces/people/enroll from all their photos (four have two), plus
``--distractors`` LFW people from one photo each (strangers to both videos), which makes the 1:K
threshold as strict as a real gallery's. The liveness gate is off, so the figures show matching
alone (with the gate a name also waits for the track's first liveness verdict, ~1 s).

Figures: Hamilton clip (lin_manuel_miranda appears in it): per track later identified as him
by any variant, stream seconds and frames from the track's first frame to ``identified``, and
wrong names; street crowd (none of the enrolled people appear): identified events (all false).
Also the per-frame share of a track's frames that fell within the threshold of someone.

Over 400 lines for a reason: one benchmark whose runs (videos, open set, calibration) share
the cached encodings and the report.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from services.ingestor.pacer import Pacer  # noqa: E402
from shared.bus.base import Message  # noqa: E402
from shared.images import encode_jpeg  # noqa: E402
from shared.schemas import FrameMeta, RecognitionEvent, parse_event  # noqa: E402
from shared.settings import RecognizerSettings, Settings  # noqa: E402

HAMILTON = "hamilton_clip_640x360.mp4"
CROWD = "street_crowd_1080p.mp4"
SUBJECT = "lin_manuel_miranda"
ENROLLED_LFW_NAMES = ("Obama", "Biden", "Miranda", "Harington", "Leslie", "Lacamoire")
POLL = 16
TAIL_Q = 1e-3
"""The deepest impostor quantile the calibration pairs resolve (~160 of ~160,000 pairs below)."""


@dataclass
class Variant:
    label: str
    fusion_frames: int
    templates: bool


VARIANTS = [
    Variant("per-frame", 0, False),
    Variant("templates", 0, True),
    Variant("fusion 3", 3, False),
    Variant("fusion 5", 5, False),
    Variant("fusion 5 + templates", 5, True),
]


@dataclass
class Run:
    events: list[RecognitionEvent] = field(default_factory=list)
    within: dict[int, list[bool]] = field(default_factory=lambda: defaultdict(list))
    """Per track: for each frame, whether its match was within the threshold of someone."""
    threshold: float = 0.0
    people: int = 0


def faces_messages(detector_worker, video: Path, fps: float) -> list[Message]:
    """The detector's faces/1 messages for ``video`` paced to ``fps`` on media time."""
    capture = cv2.VideoCapture(str(video))
    pacer, batch, out, seq = Pacer(fps), [], [], 0
    base = 1_800_000_000.0  # a fixed capture clock: stream time is what matters
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        ts = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if not pacer.admit(ts):
            continue
        meta = FrameMeta(
            camera_id=video.stem,
            seq=seq,
            capture_ts=base + ts,
            width=frame.shape[1],
            height=frame.shape[0],
        )
        seq += 1
        batch.append(
            Message("facestream.frames", encode_jpeg(frame), video.stem, meta.to_headers())
        )
        if len(batch) == 8:
            out += _detect(detector_worker, batch)
            batch = []
    capture.release()
    return out + (_detect(detector_worker, batch) if batch else [])


def _detect(worker, batch: list[Message]) -> list[Message]:
    found = []
    for result in worker.process_batch(batch):
        if isinstance(result, Exception):
            raise result
        found += [Message(o.topic, o.value, o.key, o.headers) for o in result]
    return found


def enroll_people(identity, shared_data: Path) -> int:
    """The six people of faces/people/enroll, every photo."""
    enrolled, skipped = identity.enroll_folder(shared_data / "faces" / "people" / "enroll")
    assert not skipped, skipped
    return len(enrolled)


def add_distractors(identity, shared_data: Path, total: int) -> None:
    """LFW people (one photo each, none of the six) until ``total`` of them are enrolled."""
    lfw = shared_data / "faces" / "lfw-deepfunneled"
    have = {p.name for p in identity.gallery.people()}
    added = sum(1 for folder in lfw.iterdir() if folder.name.replace("_", " ") in have)
    for folder in sorted(lfw.iterdir()):
        if added >= total:
            break
        name = folder.name.replace("_", " ")
        if name in have or any(part in folder.name for part in ENROLLED_LFW_NAMES):
            continue
        photo = sorted(folder.iterdir())[0]
        face = identity.pipeline.analyze_main(cv2.imread(str(photo)))
        if face is None:
            continue
        person = identity.gallery.add_person(name)
        identity.gallery.add_encoding(
            person.id,
            face.embedding,
            photo.read_bytes(),
            encoder=identity.encoder_name,
            box=tuple(float(v) for v in face.detection.box),
        )
        added += 1


def run_variant(variant: Variant, messages: list[Message], encoder, gallery, verifier) -> Run:
    from services.recognizer.worker import RecognizerWorker

    worker = RecognizerWorker(
        encoder,
        gallery,
        verifier,
        RecognizerSettings(fusion_frames=variant.fusion_frames, gallery_sync_s=3600),
    )
    worker.index.use_templates = variant.templates
    worker.index.reload()
    run = Run()
    observe = worker.voter.observe

    def recording(camera_id, track_id, ts, box, weight, person_id, distance):
        within = distance is not None and distance <= worker.voter.threshold
        run.within[track_id].append(within)
        return observe(camera_id, track_id, ts, box, weight, person_id, distance)

    worker.voter.observe = recording
    for start in range(0, len(messages), POLL):
        for result in worker.process_batch(messages[start : start + POLL]):
            if isinstance(result, Exception):
                raise result
            run.events += [parse_event(o.value) for o in result]
    run.events += [parse_event(o.value) for o in worker.tick(4e9)]
    run.threshold, run.people = worker.voter.threshold, worker.index.people
    return run


def subject_tracks(runs: list[Run]) -> list[int]:
    """The tracks any variant with any gallery named the subject (the detector runs once, so
    track ids are the same in every run)."""
    return sorted(
        {
            e.track_id
            for run in runs
            for e in run.events
            if e.type == "identified" and e.person_name == SUBJECT
        }
    )


def hamilton_figures(runs: dict[str, Run], subject_tracks: list[int]) -> dict:
    """Per variant: time and frames to 'identified' on each of the subject's tracks, wrong names."""
    first_seen = {
        e.track_id: e.first_seen_ts
        for run in runs.values()
        for e in run.events
        if e.type == "started"
    }
    first_appearance = min((first_seen[t] for t in subject_tracks), default=None)
    figures = {}
    for label, run in runs.items():
        named = [e for e in run.events if e.type == "identified"]
        per_track = {}
        for track in subject_tracks:
            hit = next((e for e in named if e.track_id == track and e.person_name == SUBJECT), None)
            per_track[track] = (
                {"seconds": round(hit.last_seen_ts - hit.first_seen_ts, 3), "frames": hit.frames}
                if hit
                else None
            )
        first = min((e.last_seen_ts for e in named if e.person_name == SUBJECT), default=None)
        frames_within = [w for t in subject_tracks for w in run.within.get(t, [])]
        figures[label] = {
            "subject_tracks": per_track,
            "seconds_from_first_appearance": (
                round(first - first_appearance, 3) if first is not None else None
            ),
            "wrong_names": sorted({e.person_name for e in named if e.person_name != SUBJECT}),
            "events_per_track_max": _max_events(run),
            "subject_frames_within_threshold": _share(frames_within),
            "threshold": round(run.threshold, 4),
            "people": run.people,
        }
    return figures


def crowd_figures(runs: dict[str, Run], _subject_tracks: list[int]) -> dict:
    figures = {}
    for label, run in runs.items():
        named = [e for e in run.events if e.type == "identified"]
        frames_within = [w for ws in run.within.values() for w in ws]
        figures[label] = {
            "tracks": len({e.track_id for e in run.events if e.type == "started"}),
            "false_names": len(named),
            "falsely_named": sorted(
                {f"{e.person_name} (track {e.track_id}, face {e.box.w:.0f} px)" for e in named}
            ),
            "frames_within_threshold": _share(frames_within),
            "events_per_track_max": _max_events(run),
        }
    return figures


def _share(flags: list[bool]) -> str:
    return f"{sum(flags)}/{len(flags)}" if flags else "0/0"


def _max_events(run: Run) -> int:
    counts = defaultdict(int)
    for e in run.events:
        counts[e.track_id] += 1
    return max(counts.values(), default=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--distractors",
        type=int,
        nargs="+",
        default=[0, 1000],
        help="gallery sizes to run: LFW people added to the six (one photo each)",
    )
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument(
        "--open-set",
        type=int,
        default=0,
        metavar="K",
        help="also the LFW open set with K enrolled people and K strangers (outside DevTest)",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="first measure the fusion shifts on LFW people outside DevTest and the open set, "
        "and write shared/face/calibration_fusion.json",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from services.detector.worker import DetectorWorker
    from shared.face.factory import build_pipeline, build_verifier
    from shared.face.identity import IdentityService
    from shared.gallery.file_store import FileGallery

    settings = Settings()
    started = time.perf_counter()
    pipeline = build_pipeline(settings)
    verifier = build_verifier(settings)
    videos = settings.shared_data / "video"
    detected = {}
    for name in (HAMILTON, CROWD):
        detected[name] = faces_messages(
            DetectorWorker(
                pipeline.detector, settings.face.min_face_px, chip=pipeline.encoder.chip_kind
            ),
            videos / name,
            args.fps,
        )
    print(
        f"encoder {pipeline.encoder.name}, detector {pipeline.detector.name}, {args.fps:g} fps, "
        f"liveness gate off; detection {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    if args.calibrate:
        calibrate(pipeline, verifier, settings.shared_data, args.open_set or 200)
    report: dict = {"encoder": pipeline.encoder.name, "fps": args.fps, "galleries": []}
    with tempfile.TemporaryDirectory(prefix="bench-fusion-") as tmp:
        gallery = FileGallery(Path(tmp) / "gallery")
        identity = IdentityService(pipeline, gallery, verifier, settings.face.identification_far)
        enroll_people(identity, settings.shared_data)
        all_runs = []
        for distractors in sorted(args.distractors):
            add_distractors(identity, settings.shared_data, distractors)
            photos = sum(len(p.encoding_ids) for p in gallery.people())
            print(f"gallery: {len(gallery.people())} people, {photos} photos", flush=True)
            runs = {
                name: {
                    v.label: run_variant(v, detected[name], pipeline.encoder, gallery, verifier)
                    for v in VARIANTS
                }
                for name in (HAMILTON, CROWD)
            }
            all_runs.append((distractors, runs))
        tracks = subject_tracks([r for _, runs in all_runs for r in runs[HAMILTON].values()])
        for distractors, runs in all_runs:
            result = {
                "distractors": distractors,
                HAMILTON: hamilton_figures(runs[HAMILTON], tracks),
                CROWD: crowd_figures(runs[CROWD], tracks),
            }
            print_report(result)
            report["galleries"].append(result)
    if args.open_set:
        far = settings.face.identification_far
        figures = lfw_open_set(pipeline, verifier, settings.shared_data, args.open_set, far)
        print(
            f"\nLFW open set outside DevTest: K = {figures['K']} enrolled, "
            f"{figures['strangers']} strangers, 1:K threshold {figures['threshold']} at FAR {far}"
        )
        for label, f in figures.items():
            if isinstance(f, dict):
                print(
                    f"{label:36s} identified {f['identified']:18s}  "
                    f"strangers named {f['strangers_named']}"
                )
        report["lfw_open_set"] = figures
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))


def open_set_people(shared_data: Path, people: int) -> tuple[dict[str, list[Path]], list, list]:
    """LFW outside DevTest: (photos by name, enrolled names with 5+ photos, stranger names)."""
    from training.datasets.lfw import identities, people_in, read_pairs

    devtest = people_in(read_pairs(shared_data, "DevTest"))
    everyone = {n: p for n, p in identities(shared_data, 1).items() if n not in devtest}
    candidates = [n for n, p in everyone.items() if len(p) >= 3]
    enrolled = [n for n in candidates if len(everyone[n]) >= 5][:people]
    strangers = [n for n in candidates if n not in set(enrolled)][:people]
    return everyone, enrolled, strangers


def _encode(pipeline, paths: list[Path]) -> np.ndarray | None:
    faces = [pipeline.analyze_main(cv2.imread(str(path))) for path in paths]
    return np.stack([f.embedding for f in faces]) if all(faces) else None


def lfw_open_set(pipeline, verifier, shared_data: Path, people: int, far: float) -> dict:
    """Open set on LFW people outside View 1 DevTest: single photos vs fused probes, and one vs
    two enrolled photos with and without the template.

    Enrolled: ``people`` persons with 5+ photos; gallery photo 0 (or 0 and 1); probes photos 2-4,
    one at a time or fused. Strangers: as many other persons with 3+ photos, photos 0-2 one at a
    time or fused. Threshold: the verifier's 1:K threshold for K = ``people`` at ``far``. Fused
    distances get the fusion calibration's shift (none without an entry: "unshifted").
    """
    from shared.face.fusion_calibration import load_fusion_calibration
    from shared.gallery.base import Encoding
    from shared.gallery.index import GalleryIndex

    everyone, enrolled, strangers = open_set_people(shared_data, people)
    known = {n: v for n in enrolled if (v := _encode(pipeline, everyone[n][:5])) is not None}
    unknown = [v for n in strangers if (v := _encode(pipeline, everyone[n][:3])) is not None]
    threshold = verifier.identification_threshold(len(known), far)
    calibration = load_fusion_calibration(pipeline.encoder.name, verifier.name)
    figures = {"K": len(known), "strangers": len(unknown), "threshold": round(threshold, 4)}
    for shifted in (False, True) if calibration else (False,):
        shift = calibration.shift if shifted else (lambda _n: 0.0)
        tag = "shifted" if shifted else "unshifted"
        for label, photos, templates in (
            ("1 photo", 1, False),
            ("2 photos", 2, False),
            ("2 photos + template", 2, True),
        ):
            if shifted and not templates and photos == 2:
                continue
            index = GalleryIndex(templates=templates, template_shift=shift)
            index.add_local(
                [Encoding(f"{n}/{i}", n, v[i]) for n, v in known.items() for i in range(photos)]
            )
            for probe in ("single", "fused 3"):
                if probe == "fused 3" and templates:
                    continue  # fused probes are never compared with templates
                if shifted and probe == "single" and not templates:
                    continue  # nothing fused: the same as unshifted
                fused_shift = shift(3) if probe == "fused 3" else 0.0
                hits, named = _open_set(
                    index, known, unknown, threshold, probe == "fused 3", fused_shift
                )
                figures[f"{label}, {probe} probes, {tag}"] = {
                    "identified": hits,
                    "strangers_named": named,
                }
    return figures


def calibrate(pipeline, verifier, shared_data: Path, exclude: int, max_fused: int = 5) -> None:
    """Measure the fusion shifts (shared/face/fusion_calibration.py) and write them.

    People: LFW outside View 1 DevTest and outside the open set of ``exclude`` people reported
    here. Fused sets: photos 0..n-1 of each person with ``max_fused``+ photos; the others: photo 0
    of up to 1,500 people with fewer than 3 photos. shift(n) = mean over impostor pairs (a, b) of
    mean_i d(a_i, b) - d(fuse(a_0..a_n-1), b) was the first design; it over-corrected in the
    tail, so shift(n) = the single impostors' TAIL_Q quantile minus the fused ones' (the mean gap
    stays in the record).
    """
    from shared.face.fusion import fuse_encodings
    from shared.face.fusion_calibration import FusionCalibration, save_fusion_calibration

    everyone, enrolled, strangers = open_set_people(shared_data, exclude)
    used = set(enrolled) | set(strangers)
    sets_people = [n for n, p in everyone.items() if n not in used and len(p) >= max_fused]
    others = [n for n, p in everyone.items() if n not in used and len(p) < 3][:1500]
    sets = [v for n in sets_people if (v := _encode(pipeline, everyone[n][:max_fused])) is not None]
    singles = np.concatenate(
        [v for n in others if (v := _encode(pipeline, everyone[n][:1])) is not None]
    )
    shifts, checks = {}, {}
    single_all = np.concatenate([verifier.distances(v, singles).ravel() for v in sets])
    for n in range(2, max_fused + 1):
        gaps, fused_all = [], []
        for v in sets:
            fused = verifier.distances(fuse_encodings(v[:n])[None], singles)[0]
            gaps.append(verifier.distances(v[:n], singles).mean(axis=0) - fused)
            fused_all.append(fused)
        fused_all = np.concatenate(fused_all)
        # Matched at the deepest quantile the pairs resolve: the thresholds work in the tail,
        # and there the mean gap over-corrects (fused distances vary less than single ones).
        shifts[n] = float(np.quantile(single_all, TAIL_Q) - np.quantile(fused_all, TAIL_Q))
        checks[n] = {
            "mean_gap": round(float(np.mean(np.concatenate(gaps))), 4),
            **{
                str(q): [
                    round(float(np.quantile(single_all, q)), 4),
                    round(float(np.quantile(fused_all + shifts[n], q)), 4),
                ]
                for q in (1e-3, 1e-2, 0.1, 0.5)
            },
        }
    calibration = FusionCalibration(
        pipeline.encoder.name,
        verifier.name,
        shifts,
        f"python -m bench.fusion --calibrate --open-set {exclude}: {len(sets)} LFW people "
        f"({max_fused} photos) x {len(singles)} single photos of others, all outside View 1 "
        "DevTest and the open set",
        {"quantiles [single, shifted fused] per n": checks},
    )
    save_fusion_calibration(calibration)
    print(f"\nfusion calibration ({len(sets)} fused sets x {len(singles)} others): shift per n")
    for n in shifts:
        quantiles = ", ".join(
            f"q{q}: {v[0]:.4f} vs {v[1]:.4f}" for q, v in checks[n].items() if q != "mean_gap"
        )
        print(
            f"  n={n}: +{shifts[n]:.4f} (mean gap {checks[n]['mean_gap']:.4f})   impostor "
            f"quantiles single vs shifted fused: {quantiles}"
        )


def _open_set(index, known: dict, unknown: list, threshold: float, fused: bool, shift: float):
    from shared.face.fusion import fuse_encodings

    probes = [(n, v[2:5]) for n, v in known.items()]
    if fused:
        genuine = [(n, fuse_encodings(p)[None]) for n, p in probes]
        impostor = [fuse_encodings(v)[None] for v in unknown]
    else:
        genuine = list(probes)
        impostor = list(unknown)
    right = total = 0
    for name, queries in genuine:
        for [best] in (m[:1] for m in index.search(queries, templates=not fused)):
            right += best.person_id == name and best.distance + shift <= threshold
            total += 1
    named = sum(
        m[0].distance + shift <= threshold
        for queries in impostor
        for m in index.search(queries, templates=not fused)
    )
    count = sum(len(q) for q in impostor)
    return (
        f"{right}/{total} ({100 * right / total:.1f}%)",
        f"{named}/{count} ({100 * named / count:.2f}%)",
    )


def print_report(report: dict) -> None:
    hamilton, crowd = report[HAMILTON], report[CROWD]
    first = next(iter(hamilton.values()))
    print(f"\n1:K threshold {first['threshold']} for K = {first['people']} people")
    print(
        f"\n{HAMILTON}: {SUBJECT}'s tracks, seconds / frames from the track's start to identified"
    )
    tracks = list(first["subject_tracks"])
    print(
        f"{'variant':24s} "
        + " ".join(f"track {i + 1:<10d}" for i in range(len(tracks)))
        + "  first name after  frames within  wrong names  max events/track"
    )
    for label, f in hamilton.items():
        cells = [
            f"{c['seconds']:5.2f}s/{c['frames']:<3d}  " if c else "never       "
            for c in f["subject_tracks"].values()
        ]
        after = f["seconds_from_first_appearance"]
        print(
            f"{label:24s} "
            + " ".join(f"{c:16s}" for c in cells)
            + f"  {(f'{after:.2f} s' if after is not None else 'never'):16s}"
            + f"  {f['subject_frames_within_threshold']:13s}  {','.join(f['wrong_names']) or '-':11s}"
            + f"  {f['events_per_track_max']}"
        )
    print(f"\n{CROWD}: nobody enrolled appears")
    print(f"{'variant':24s} tracks  false names  frames within threshold  max events/track")
    for label, f in crowd.items():
        print(
            f"{label:24s} {f['tracks']:6d}  {f['false_names']:11d}  "
            f"{f['frames_within_threshold']:23s}  {f['events_per_track_max']}"
            + (f"   ({', '.join(f['falsely_named'])})" if f["falsely_named"] else "")
        )


if __name__ == "__main__":
    main()
