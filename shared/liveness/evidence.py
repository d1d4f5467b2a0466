"""How a track's liveness windows add up to a verdict: a sequential test, not the first window.

A track is judged window by window (16 frames every ``hop``). Letting the first window decide
gives an attacker one lucky draw per track, and every new track is a new draw. So the windows'
evidence is accumulated, and the track's state moves only when the evidence is strong enough:

- each window contributes its log-odds of live against the threshold,
  ``logit(P(live)) - logit(threshold)``. P(live) is calibrated with both classes weighted
  equally, so this is the window's log likelihood ratio (live vs attack) shifted to the
  operating point. It is clipped to ``[-attack_clip, live_clip]``: no single window, however
  confident, can give a name (``live_clip`` is below ``live_bound``), while one window that is
  very sure of an attack may count almost fully;
- **pending** -> **live** once the track has at least ``min_windows`` windows and their summed
  evidence reaches ``live_bound`` (Wald's sequential probability ratio test with a floor on the
  sample size); pending -> **attack** once the sum falls to ``-attack_bound``;
- **live** -> **attack**: a name once given is watched by a one-sided CUSUM, ``c = min(0, c +
  llr)``; when it falls to ``-attack_bound`` (a run of attack windows, or one very sure one) the
  track becomes an attack. A single borderline window of a live person does not undo the name,
  which is what keeps long live tracks from being spoofed by chance;
- **attack** is final: an attacker cannot wait out the verdict;
- with ``require_blink``, pending -> live also waits for the track's first blink
  (``blink.py``): a printed photo cannot blink on any camera, a live person does every few
  seconds. A track that has not blinked stays pending however live its windows look (it is not
  an attack: a live face may go seconds without blinking).

Why a sum and not a mean: the mean of a few windows is decided by the first ones, and a sum's
bound is the error rate the test is built for: with calibrated windows, ``live_bound = log(19)``
asks for 19:1 odds of live (a pure SPRT under independence would let at most 1 in 20 attack
tracks through; windows of one track overlap and are not independent, which the ``min_windows``
floor and the clip compensate for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

State = Literal["pending", "live", "attack"]


@dataclass(frozen=True)
class EvidencePolicy:
    """The bounds of the sequential test (docs/liveness.md, settings ``FACESTREAM_LIVENESS__*``)."""

    threshold: float = 0.5
    """A window's P(live) that counts as no evidence either way."""
    min_windows: int = 3
    """Windows a track needs before it can be judged live (3 windows: 32 frames at hop 8)."""
    live_bound: float = 3.0
    """Summed log-odds that make a track live (log 19 ~ 2.94)."""
    attack_bound: float = 6.0
    """Summed (or, once live, CUSUM) log-odds at or below minus this make it an attack: above
    ``attack_clip``, so no single window spoofs a track either."""
    live_clip: float = 1.5
    """The most one window can add towards live: below ``live_bound``, so one is never enough."""
    attack_clip: float = 4.0
    """The most one window can add towards attack."""
    require_blink: bool = False
    """No name before the track's first blink (``TrackEvidence.blinked``)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold is a probability in (0, 1)")
        if self.min_windows < 1 or self.live_bound <= 0 or self.attack_bound <= 0:
            raise ValueError("min_windows >= 1 and positive bounds")
        if self.live_clip <= 0 or self.attack_clip <= 0:
            raise ValueError("clips are positive")

    def window_evidence(self, p_live: float) -> float:
        """One window's log-odds of live at the operating point, clipped."""
        p = min(max(float(p_live), 1e-6), 1.0 - 1e-6)
        llr = math.log(p / (1 - p)) - math.log(self.threshold / (1 - self.threshold))
        return min(max(llr, -self.attack_clip), self.live_clip)


@dataclass
class TrackEvidence:
    """One track's accumulated evidence and state under an ``EvidencePolicy``."""

    policy: EvidencePolicy
    state: State = "pending"
    windows: int = 0
    total: float = 0.0
    """Summed window evidence while pending."""
    cusum: float = 0.0
    """Once live: min(0, cusum + evidence), the evidence of a change to an attack."""
    scores: list[float] = field(default_factory=list)
    blinked: bool = False
    """Whether the track has blinked (set by the liveness service from the eyes' aspect ratio)."""

    def add(self, p_live: float) -> State:
        """Add one window's calibrated P(live); the track's state after it."""
        self.windows += 1
        self.scores.append(float(p_live))
        evidence = self.policy.window_evidence(p_live)
        if self.state == "pending":
            self.total += evidence
            if self.total <= -self.policy.attack_bound:
                self.state = "attack"
            elif self.windows >= self.policy.min_windows and self.total >= self.policy.live_bound:
                self.state = "live" if self.blinked or not self.policy.require_blink else "pending"
        elif self.state == "live":
            self.cusum = min(0.0, self.cusum + evidence)
            if self.cusum <= -self.policy.attack_bound:
                self.state = "attack"
        return self.state

    @property
    def score(self) -> float:
        """The evidence as a probability: the sigmoid of the sum while pending (or an attack
        found while pending), of ``live_bound`` + the CUSUM once the track was live."""
        watched = self.state == "live" or self.cusum < 0.0  # only a live track has a CUSUM
        value = self.policy.live_bound + self.cusum if watched else self.total
        return 1.0 / (1.0 + math.exp(-value))


def track_states(policy: EvidencePolicy, scores: list[float]) -> list[State]:
    """The state after each window of a track whose windows scored ``scores`` (for evaluation)."""
    track = TrackEvidence(policy)
    return [track.add(p) for p in scores]
