"""How far fused encodings sit closer to everyone, so the calibrated thresholds keep their meaning.

Why: tau and the 1:K threshold were fitted on pairs of single encodings. A fused encoding (a
track's best frames, a person's photos) has its own noise averaged away, so its distance to
anyone, the person or a stranger, is smaller: with thresholds unchanged, the LFW open set named
2.5% of fused strangers where 1% was promised (bench.fusion). Under the simple model
d = |identity difference|^2 + noise_a + noise_b, fusing n encodings of a removes a part of
noise_a that does not depend on who b is, so fused distances sit lower by about the same amount
for genuine and impostor pairs. ``shift(n)`` is that amount, added back to every fused distance
before a threshold applies. It is measured on impostor pairs (a fused n-set of one LFW person,
a single photo of another; people outside View 1 DevTest and outside the open set bench.fusion
reports on) as the single impostors' 1e-3 quantile minus the fused ones': the thresholds work
in the far tail, where fused distances, which vary less, are closer to the single ones than
their mean gap says (the mean gap, the first design, over-corrected: 0 of 200 fused strangers
named where 1% was promised, and identification fell from 94.5% to 70.5%). 1e-3 is the deepest
quantile the ~160,000 calibration pairs resolve; deeper (large K) the same shift is assumed.

One entry per (encoder, verifier) in ``calibration_fusion.json``; ``python -m bench.fusion
--calibrate`` writes it. Without an entry the recognizer matches frames alone and the index keeps
no templates (with a warning): fused distances against unshifted thresholds would name strangers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

FUSION_CALIBRATION_FILE = Path(__file__).with_name("calibration_fusion.json")


@dataclass(frozen=True)
class FusionCalibration:
    encoder: str
    verifier: str
    shifts: dict[int, float]
    """Encodings fused -> distance to add to a fused encoding's distances (n >= 2)."""
    source: str
    checks: dict = field(default_factory=dict)
    """Quantiles of single and shifted fused impostor distances, for the record."""

    def shift(self, fused: int) -> float:
        """The shift for ``fused`` encodings (0 for one; beyond the largest measured, its shift:
        the shift grows with n, so that under-corrects slightly)."""
        if fused <= 1 or not self.shifts:
            return 0.0
        return self.shifts[min(fused, max(self.shifts))]


def load_fusion_calibration(
    encoder: str, verifier: str, path: Path = FUSION_CALIBRATION_FILE
) -> FusionCalibration | None:
    """The entry for this encoder and verifier, or None when none was measured."""
    for entry in _entries(path):
        if entry["encoder"] == encoder and entry["verifier"] == verifier:
            shifts = {int(n): float(v) for n, v in entry["shifts"].items()}
            return FusionCalibration(
                encoder, verifier, shifts, entry["source"], entry.get("checks", {})
            )
    return None


def save_fusion_calibration(
    calibration: FusionCalibration, path: Path = FUSION_CALIBRATION_FILE
) -> None:
    """Write (or replace) the entry of ``calibration``'s encoder and verifier; keep the others."""
    entries = [
        e
        for e in _entries(path)
        if (e["encoder"], e["verifier"]) != (calibration.encoder, calibration.verifier)
    ]
    record = asdict(calibration)
    record["shifts"] = {str(n): round(v, 6) for n, v in sorted(calibration.shifts.items())}
    entries.append(record)
    path.write_text(json.dumps({"entries": entries}, indent=2) + "\n")


def _entries(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return json.loads(path.read_text())["entries"]
