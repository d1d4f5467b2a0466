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

import cv2
import numpy as np

from shared.liveness import attacks
from shared.liveness.evidence import EvidencePolicy, State, track_states
from shared.liveness.metrics import LIVE
from shared.liveness.model import WINDOW

FPS = 15.0


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
