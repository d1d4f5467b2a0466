"""Liveness: telling a live face from a photo or a screen (docs/liveness.md)."""


class LivenessModelError(RuntimeError):
    """The liveness weights are missing, damaged or for other features."""
