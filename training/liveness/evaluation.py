"""Per-track liveness evaluation: windows judged as the service judges them, under the policy.

Per-window error rates say how often one window is wrong; what a user meets is the track: is
a replay ever named, is a live person ever called a spoof, how long does a name wait. So each
track is replayed through the service's cadence (first window at WINDOW frames, then one every
``hop``) and the evidence policy, giving per track its final state, whether it was ever live
(a name released, even if withdrawn later) and the stream time until it was live.

Stills become short clips with natural hand motion (``moving_still``): the whole photo moves
as one plane along the same smooth random hand trajectory the synthesis uses (rotation, tilt,
shift, scale through a cubic over a few knots; ``attacks.smooth_trajectory``), because the
photo of the attack *is* the medium as the camera saw it, held in a hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shared.liveness.evidence import EvidencePolicy, State, track_states
from shared.liveness.model import WINDOW
from training.liveness import attacks
from training.liveness.metrics import LIVE

FPS = 15.0
LIVE_VIDEOS = [
    "liveness/live_person.mov",
    "liveness-train/live_person2.mp4",
    "liveness-train/live_apfol.webm",
    "liveness-train/live_krzysiek354.webm",
    "liveness-train/live_sivakumar1982.mp4",
    "liveness-train/live_wolfhuo.mp4",
    "video/hamilton_clip_640x360.mp4",
    "video/street_crowd_1080p.mp4",
]
ATTACK_VIDEOS = [
    "liveness/replay_attack_same_person.mp4",
    "liveness-train/replay_attack_person2.mp4",
    "liveness-train/monitor_replay_wolfhuo.mp4",
    "liveness-train/monitor_replay_ashishbhatnagar022.mp4",
    "liveness-train/phone_replay_apfol.webm",
    "liveness-train/phone_replay_nurcanyardimci.mp4",
]
STILLS = {"live.jpg": "live", "print_attack.jpg": "print", "screen_replay_attack.jpg": "screen"}
OFFSETS = 10


def service_windows(features: np.ndarray, hop: int) -> np.ndarray:
    """(N, WINDOW, F): the windows the service judges for a track of these per-frame features."""
    ends = range(WINDOW, len(features) + 1, hop)
    if len(features) < WINDOW:
        return np.empty((0, WINDOW, features.shape[-1] if features.ndim == 2 else 0), np.float32)
    return np.stack([features[end - WINDOW : end] for end in ends])


@dataclass(frozen=True)
class TrackOutcome:
    label: str
    frames: int
    windows: int
    states: tuple[State, ...]
    scores: tuple[float, ...]

    @property
    def final(self) -> State | None:
        return self.states[-1] if self.states else None

    @property
    def ever_live(self) -> bool:
        """Whether a name was released at some window (even if withdrawn later)."""
        return "live" in self.states

    @property
    def spoofed(self) -> bool:
        return "attack" in self.states

    def seconds_to_live(self, hop: int) -> float | None:
        """Stream time from the track's first frame to the window that made it live."""
        if not self.ever_live:
            return None
        window = self.states.index("live")
        return (WINDOW + window * hop) / FPS


def track_outcome(
    model, policy: EvidencePolicy, features: np.ndarray, label: str, hop: int
) -> TrackOutcome:
    windows = service_windows(features, hop)
    scores = model.probability_live(windows).tolist() if len(windows) else []
    return TrackOutcome(
        label, len(features), len(windows), tuple(track_states(policy, scores)), tuple(scores)
    )


def track_rates(outcomes: Sequence[TrackOutcome]) -> dict:
    """Per track: attacks ever named (APCER per type), live tracks ever spoofed (BPCER), live
    tracks never named, among tracks that had at least one window."""
    judged = [o for o in outcomes if o.windows]
    live = [o for o in judged if o.label == LIVE]
    report: dict = {"tracks": {}}
    for kind in sorted({o.label for o in judged}):
        report["tracks"][kind] = sum(o.label == kind for o in judged)
    report["apcer"] = {
        kind: float(np.mean([o.ever_live for o in judged if o.label == kind]))
        for kind in sorted({o.label for o in judged} - {LIVE})
    }
    if live:
        report["bpcer"] = float(np.mean([o.spoofed for o in live]))
        report["live_never_named"] = float(np.mean([not o.ever_live for o in live]))
    return report


def moving_still(
    image: np.ndarray,
    rng: np.random.Generator,
    frames: int = 32,
    motion: attacks.Motion | None = None,
) -> list[np.ndarray]:
    """A still as a clip of a hand holding it: the whole picture moves as one plane."""
    height, width = image.shape[:2]
    path = attacks.smooth_trajectory(frames, (width, height), rng, motion or attacks.Motion())
    return [
        cv2.warpPerspective(image, h, (width, height), borderMode=cv2.BORDER_REFLECT) for h in path
    ]


def per_track_report(model, policy: EvidencePolicy, data: Path, detector, hop: int = 8) -> dict:
    """Every source's tracks through the service's cadence and the policy; printed as it goes.

    Live videos: every face's track of at least WINDOW frames, at the pipeline's rate. Attack
    videos: the medium's face (the smallest where the live person stands beside the phone),
    and the real replay also started at OFFSETS later frames (an attacker's retries). Stills:
    five clips each of a hand holding the photo (``moving_still``).
    """
    import json

    import cv2

    from training.liveness import training

    report: dict = {"policy": policy.__dict__, "hop": hop, "sources": {}}
    every: list = []

    def record(name: str, outcomes: list, pooled: bool = True) -> None:
        if pooled:  # the offsets are retries of a track already pooled
            every.extend(outcomes)
        scores = [s for o in outcomes for s in o.scores]
        label = outcomes[0].label if outcomes else "?"
        right = [(s >= policy.threshold) == (label == "live") for o in outcomes for s in o.scores]
        states = [o.final for o in outcomes]
        latencies = [o.seconds_to_live(hop) for o in outcomes if o.ever_live]
        entry = {
            "label": label,
            "tracks": len(outcomes),
            "windows": len(scores),
            "window_correct": float(np.mean(right)) if right else None,
            "ever_named": sum(o.ever_live for o in outcomes),
            "ever_spoof": sum(o.spoofed for o in outcomes),
            "final_states": {s: states.count(s) for s in set(states) if s},
            "seconds_to_name": [round(v, 2) for v in latencies],
        }
        report["sources"][name] = entry
        print(name, json.dumps(entry), flush=True)

    for name in LIVE_VIDEOS:
        path = data / name
        frames = training.read_video(path)
        tracks = [
            t
            for clip in training.at_pipeline_rate(path, frames)
            for t in training.every_track(clip, detector)
        ]
        record(
            name,
            [
                track_outcome(model, policy, t.features(), "live", hop)
                for t in tracks
                if len(t.boxes) >= 16
            ],
        )
    for name in ATTACK_VIDEOS:
        path = data / name
        frames = training.read_video(path)
        smallest = name.startswith("liveness/")  # the live person stands beside the phone
        outcomes: list = []
        offsets: list = []
        for clip in training.at_pipeline_rate(path, frames):
            track = training.follow_face(clip, detector, smallest=smallest)
            outcomes.append(track_outcome(model, policy, track.features(), "screen", hop))
            if smallest and not offsets:
                for k in range(OFFSETS):  # the attacker's retries: new tracks from later frames
                    start = k * len(track.boxes) // (OFFSETS + 2)
                    cut = training.FaceTrack(
                        track.landmarks[start:], track.boxes[start:], track.contexts[start:]
                    )
                    offsets.append(track_outcome(model, policy, cut.features(), "screen", hop))
        record(name, outcomes)
        if offsets:
            record(f"{name} at {OFFSETS} offsets", offsets, pooled=False)
    rng = np.random.default_rng(0)
    for still, label in STILLS.items():
        image = cv2.imread(str(data / "liveness" / "stills" / still))
        outcomes = []
        for _ in range(5):  # five hands
            track = training.follow_face(moving_still(image, rng, 48), detector)
            outcomes.append(track_outcome(model, policy, track.features(), label, hop))
        record(f"still {still} moved by hand (5 clips of 48 frames)", outcomes)
    report["tracks"] = track_rates(every)
    return report
