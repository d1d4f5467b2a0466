"""The style networks' dev set (``bench.style_dev``): what chooses between checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.style_dev import DEV_FRAMES, SIDE, dev_frames


@pytest.mark.data
def test_the_dev_frames_are_distinct_pictures_from_clips_the_networks_never_train_on(
    shared_data: Path,
) -> None:
    """Every dev frame decodes at SIDE px on its longest side (a WebM whose frame count OpenCV
    cannot read included), no two are alike, and none comes from the training's street clip."""
    frames = dev_frames(shared_data)
    assert len(frames) == len(DEV_FRAMES) == 8
    assert all(max(f.shape[:2]) == SIDE and f.dtype == np.uint8 for f in frames)
    means = [f.reshape(-1, 3).mean(0) for f in frames]
    assert min(np.abs(a - b).max() for i, a in enumerate(means) for b in means[i + 1 :]) > 1.0
    assert not any("street_crowd" in clip for _, clip, _ in DEV_FRAMES)
