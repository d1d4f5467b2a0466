"""Liveness training: attack synthesis, datasets, training loops and evaluation (docs/liveness.md)."""
