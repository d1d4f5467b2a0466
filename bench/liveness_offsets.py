"""The real replay, started at 10 offsets, through the real embedded pipeline: is it ever named?

    nice -n 10 .venv/bin/python -m bench.liveness_offsets [--offsets 10]

An attacker who is refused simply tries again: every new track is a new draw. This cuts
``liveness/replay_attack_same_person.mp4`` at 10 start frames (re-encoded at 15 fps, MPEG-4),
enrols the person from the first frame of ``liveness/live_person.mov`` (as
tests/test_liveness_e2e.py does), and runs every cut as its own camera through ingestor ->
detector -> liveness -> recognizer (``services/embedded.py``, the gate on, the evidence policy
from the settings). It prints every event, and per cut the ``identified`` events that stand
(not withdrawn) with their face width: the phone's face is the smaller one; the first seconds
of the video also show the live person beside the phone, whose own face may rightly be named.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cut(frames, start: int, path: Path, fps: float = 15.0) -> None:
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames[start:]:
        writer.write(frame)
    writer.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offsets", type=int, default=10)
    args = parser.parse_args()

    import cv2

    import services.embedded as embedded
    from shared.schemas import Topics, read_event
    from shared.settings import get_settings
    from training.liveness.training import read_video

    settings = get_settings()
    data = settings.shared_data
    replay = read_video(data / "liveness" / "replay_attack_same_person.mp4")
    events = []
    tally = embedded._tally

    def keep(message, tallies) -> None:  # the embedded report's tally, keeping the events
        if message.topic == Topics.EVENTS:
            events.append(read_event(message))
        tally(message, tallies)

    embedded._tally = keep
    with tempfile.TemporaryDirectory(prefix="liveness-offsets-") as tmp:
        enroll = Path(tmp) / "enroll" / "live_person"
        enroll.mkdir(parents=True)
        first = read_video(data / "liveness" / "live_person.mov", limit=1)[0]
        cv2.imwrite(str(enroll / "frame0.jpg"), first)
        sources = []
        for k in range(args.offsets):
            start = k * len(replay) // (args.offsets + 2)
            path = Path(tmp) / f"replay_from_{start:03d}.mp4"
            cut(replay, start, path)
            sources.append(str(path))
        embedded.run_embedded(settings, sources, fps=15, enroll=enroll.parent)
    withdrawn = {e.withdraws for e in events if e.type == "withdrawn"}
    per_camera: dict[str, list] = defaultdict(list)
    for event in events:
        per_camera[event.camera_id].append(event)
    print("per cut: standing names (face width px), spoof tracks, withdrawn names")
    for camera in sorted(per_camera):
        got = per_camera[camera]
        standing = [
            f"track {e.track_id} {e.person_name} ({e.box.w:.0f} px)"
            for e in got
            if e.type == "identified" and e.event_id not in withdrawn
        ]
        spoofs = sorted({e.track_id for e in got if e.type == "spoof"})
        taken_back = sum(e.type == "withdrawn" for e in got)
        print(
            f"  {camera}: named {standing or 'never'}; spoof tracks {spoofs}; withdrawn {taken_back}"
        )


if __name__ == "__main__":
    main()
