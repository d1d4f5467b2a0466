"""What liveness costs: per-frame features, the model per window, and the latency it adds per track.

    .venv/bin/python -m bench.liveness [--repeats 20]

On the real frames of ``liveness/live_person.mov`` (MTCNN faces, as the detector sends them):

- features per face (texture of the chip, landmark motion, the context crop), ms;
- the sequence model per window at batch 1, 8 and 32, ms per window; the reference is MTCNN's
  detection time per frame of the same video in the same run (what the pipeline already pays per
  frame), so the ratio says what liveness adds;
- the recapture cues per face (computed by the detector) and the recapture model per window;
- the latency it adds to a track's identification: the gate holds the name until the first
  verdict, which needs WINDOW frames at the camera's rate plus one model call.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shared.settings import get_settings  # noqa: E402


def median_ms(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    from shared.face.detection import create_detector
    from shared.liveness.features import track_features
    from shared.liveness.model import WINDOW, load_model
    from training.liveness import training

    settings = get_settings()
    model = load_model()  # the motion model, which the recapture model runs too
    detector = create_detector("mtcnn", min_face_px=settings.face.min_face_px)
    frames = training.read_video(settings.shared_data / "liveness" / "live_person.mov", limit=64)
    track = training.follow_face(frames, detector)
    faces = len(track.boxes)

    def features() -> None:
        track_features(track.landmarks, track.boxes, track.contexts)

    feature_ms = median_ms(features, max(3, args.repeats // 4)) / faces
    windows = training.windows_of(track, "live", stride=1).features
    detect_ms = median_ms(lambda: detector.detect(frames[0]), max(3, args.repeats // 4))

    print(f"liveness on {faces} real faces of live_person.mov, median of {args.repeats} runs")
    print(f"  features per face: {feature_ms:.2f} ms")
    print(f"  MTCNN per 960x540 frame (reference): {detect_ms:.1f} ms")
    for batch in (1, 8, 32):
        batch_windows = np.stack([windows[i % len(windows)] for i in range(batch)])
        per_window = (
            median_ms(lambda w=batch_windows: model.probability_live(w), args.repeats) / batch
        )
        print(
            f"  model per window at batch {batch:>2}: {per_window:.2f} ms"
            f"  (x{per_window / detect_ms:.3f} the detection time per frame)"
        )
    single = median_ms(lambda: model.probability_live(windows[:1]), args.repeats)
    pixel_ms = _pixel_model_ms(frames, track, windows, detect_ms, args.repeats)
    _recapture_ms(frames, track, windows, detect_ms, args.repeats)
    fps = settings.ingest.default_fps
    policy = settings.liveness.policy("bench")
    frames_to_name = WINDOW + (policy.min_windows - 1) * settings.liveness.hop
    wait_s = (frames_to_name - 1) / fps
    model_ms = pixel_ms if pixel_ms is not None else single
    print(
        f"  latency per track: a name needs {policy.min_windows} live windows (evidence policy) ="
        f" {frames_to_name} frames = {wait_s * 1000:.0f} ms of stream at {fps:g} fps + "
        f"{feature_ms * frames_to_name:.1f} ms of features + {policy.min_windows} x "
        f"{model_ms:.1f} ms of model = "
        f"{wait_s * 1000 + feature_ms * frames_to_name + policy.min_windows * model_ms:.0f} ms "
        f"before a name can be given (the first window alone: {(WINDOW - 1) / fps * 1000:.0f} ms"
        f" of stream; the policy adds {(frames_to_name - WINDOW) / fps * 1000:.0f} ms)"
    )


def _pixel_model_ms(frames, track, windows, detect_ms: float, repeats: int) -> float | None:
    """The pixel model per window (chips of 4 frames + the motion features), if one is committed."""
    from shared.face.alignment import align_face
    from shared.face.chips import chip_from_b64, chip_to_b64
    from shared.liveness import LivenessModelError
    from shared.liveness.pixels import PIXEL_FRAMES, chip_centre, load_pixel_model

    try:
        model = load_pixel_model()
    except LivenessModelError:
        print("  (no pixel model committed)")
        return None
    sent = chip_to_b64(align_face(frames[0], track.landmarks[0]))
    chip_ms = median_ms(lambda: chip_centre(chip_from_b64(sent)), repeats)
    chip = chip_centre(chip_from_b64(sent))
    print(f"  pixel model: chip decode + crop per face {chip_ms:.2f} ms")
    result = None
    for batch in (1, 8, 32):
        motion = np.stack([windows[i % len(windows)] for i in range(batch)])
        chips = np.stack([np.stack([chip] * len(PIXEL_FRAMES))] * batch)
        per_window = (
            median_ms(lambda m=motion, c=chips: model.probability_live(m, c), repeats) / batch
        )
        result = per_window if batch == 1 else result
        print(
            f"  pixel model per window at batch {batch:>2}: {per_window:.2f} ms"
            f"  (x{per_window / detect_ms:.3f} the detection time per frame)"
        )
    return result


def _recapture_ms(frames, track, windows, detect_ms: float, repeats: int) -> None:
    """The recapture cues per face (the detector pays them) and the recapture model per window."""
    from shared.liveness import LivenessModelError
    from shared.liveness.recapture import frame_cues
    from shared.liveness.recapture_model import load_recapture_liveness

    try:
        model = load_recapture_liveness()
    except LivenessModelError:
        print("  (no recapture model committed)")
        return
    cue_ms = median_ms(lambda: frame_cues(frames[0], track.boxes[0]), repeats)
    cues = np.stack([frame_cues(frames[0], track.boxes[0])] * windows.shape[1])
    print(
        f"  recapture cues per face (in the detector): {cue_ms:.2f} ms"
        f"  (x{cue_ms / detect_ms:.3f} the detection time per frame)"
    )
    for batch in (1, 8):
        motion = np.stack([windows[i % len(windows)] for i in range(batch)])
        batch_cues = np.stack([cues] * batch)
        per_window = (
            median_ms(lambda m=motion, c=batch_cues: model.probability_live(m, c), repeats) / batch
        )
        print(
            f"  recapture model (with the motion model) per window at batch {batch:>2}: "
            f"{per_window:.2f} ms  (x{per_window / detect_ms:.3f} the detection time per frame)"
        )


if __name__ == "__main__":
    main()
