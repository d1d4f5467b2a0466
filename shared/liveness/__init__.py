"""Liveness: telling a live face from a photo or a screen (docs/liveness.md)."""

from __future__ import annotations

import json
from pathlib import Path


class LivenessModelError(RuntimeError):
    """The liveness weights are missing, damaged or for other features."""


def model_card(weights: Path) -> dict:
    """The card beside a liveness model's weights (empty when there is none): it says which
    model the weights are (the pixel model's lists its ``chip``, the recapture model's its
    ``cues``)."""
    card = weights.with_suffix(".json")
    return json.loads(card.read_text()) if card.exists() else {}
