"""Benchmarks of facestream, run with ``python -m bench.<name>`` from the repository root."""
