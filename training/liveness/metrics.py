"""Presentation-attack detection error rates as ISO/IEC 30107-3 defines them.

- APCER (per attack type, "PAI species"): the share of attack presentations of that type that
  were accepted as bona fide.
- BPCER: the share of bona fide (live) presentations that were rejected as attacks.
- ACER: (max over attack types of APCER + BPCER) / 2. The standard reports APCER per type and
  takes the worst one, because a system is as weak as the attack it misses most; an average over
  types would let an easy attack hide a hard one.

The labels are strings: ``live`` for bona fide presentations, anything else names the attack type
(``print``, ``screen``, ...). A decision is True when the presentation was judged live.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LIVE = "live"


@dataclass(frozen=True)
class ErrorRates:
    apcer: dict[str, float]
    """Per attack type: attacks judged live / attacks of that type."""
    bpcer: float
    """Live presentations judged attacks / live presentations."""
    acer: float
    """(max APCER + BPCER) / 2."""
    counts: dict[str, int]
    """Presentations per label, so a reader sees how many each rate rests on."""


def error_rates(labels: Sequence[str], judged_live: Sequence[bool] | np.ndarray) -> ErrorRates:
    """APCER per attack type, BPCER and ACER of decisions against true labels."""
    labels_array = np.asarray(labels)
    live = np.asarray(judged_live, bool)
    if labels_array.shape != live.shape:
        raise ValueError(f"{len(labels_array)} labels but {len(live)} decisions")
    bona_fide = labels_array == LIVE
    if not bona_fide.any():
        raise ValueError("BPCER needs at least one live presentation")
    attack_types = sorted(set(labels_array[~bona_fide].tolist()))
    if not attack_types:
        raise ValueError("APCER needs at least one attack presentation")
    apcer = {kind: float(live[labels_array == kind].mean()) for kind in attack_types}
    bpcer = float((~live[bona_fide]).mean())
    counts = {kind: int((labels_array == kind).sum()) for kind in [LIVE, *attack_types]}
    return ErrorRates(apcer, bpcer, (max(apcer.values()) + bpcer) / 2.0, counts)
