"""What liveness costs: per-frame features, the model per window, and the latency it adds per track.

    .venv/bin/python -m bench.liveness [--repeats 20]

On the real frames of ``liveness/live_person.mov`` (MTCNN faces, as the detector sends them):

- features per face (texture of the chip, landmark motion, the context crop), ms;
- the sequence model per window at batch 1, 8 and 32, ms per window; the reference is MTCNN's
  detection time per frame of the same video in the same run (what the pipeline already pays per
  frame), so the ratio says what liveness adds;
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
    from shared.liveness import training
    from shared.liveness.features import track_features
    from shared.liveness.model import WINDOW, load_model

    settings = get_settings()
    model = load_model(settings.liveness.weights)
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
    fps = settings.ingest.default_fps
    wait_s = (WINDOW - 1) / fps
    print(
        f"  latency added per track: first verdict after {WINDOW} frames = {wait_s * 1000:.0f} ms "
        f"of stream at {fps:g} fps + {feature_ms * WINDOW:.1f} ms of features + {single:.1f} ms "
        f"of model = {wait_s * 1000 + feature_ms * WINDOW + single:.0f} ms before a name can be given"
    )


if __name__ == "__main__":
    main()
