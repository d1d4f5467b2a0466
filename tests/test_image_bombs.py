"""Decompression bombs are refused from their header, before any pixel is decoded.

Each attack runs in a fresh Python process that reports its peak RSS (``VmHWM``) before and
after, so what is measured is the memory the refusal took, not what earlier tests left behind.
A control decodes the same kind of bomb without the guard, to show that the attack is real.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shared.bus.base import Message
from shared.errors import ProcessingError
from shared.face.chips import chip_from_b64
from shared.images import check_size, decode_image, encode_jpeg, image_size
from shared.liveness.context import context_from_b64
from shared.schemas import FrameMeta
from tests.bombs import jpeg_bomb, png_bomb

ROOT = Path(__file__).resolve().parents[1]
BOUND_MB = 40
"""Peak RSS a refused bomb may add: parsing a header needs kilobytes; decoding needs gigabytes."""


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    files = {"png_30000": png_bomb(30000, 30000), "jpeg_10000": jpeg_bomb(10000, 10000)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


def run_measured(script: str, *args: str) -> dict:
    """Run ``script`` in a fresh interpreter; it prints one JSON line with its measurements."""
    prelude = (
        "import json, sys\n"
        "def peak_mb():  # VmHWM: this process's peak RSS (ru_maxrss may be the forking parent's)\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1]) / 1024\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", prelude + script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"peak RSS {measured['before']:.0f} MB -> {measured['after']:.0f} MB: {measured}")
    return measured


def test_the_png_bomb_is_small_and_real(bombs) -> None:
    data = bombs["png_30000"].read_bytes()
    assert len(data) < 1_200_000
    assert image_size(data) == ("png", 30000, 30000)


def test_a_30000_squared_png_is_refused_without_memory(bombs) -> None:
    script = (
        "from shared.errors import ProcessingError\n"
        "from shared.images import decode_image\n"
        "from shared.images import encode_jpeg\n"
        "import numpy as np\n"
        "decode_image(encode_jpeg(np.zeros((8, 8, 3), np.uint8)))  # warm up: settings, imports\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = peak_mb()\n"
        "try:\n"
        "    decode_image(data)\n"
        "    reason = None\n"
        "except ProcessingError as error:\n"
        "    reason = error.reason\n"
        "print(json.dumps({'reason': reason, 'before': before, 'after': peak_mb()}))\n"
    )
    measured = run_measured(script, str(bombs["png_30000"]))
    assert measured["reason"] == "image_too_large"
    assert measured["after"] - measured["before"] < BOUND_MB, measured


def test_four_10000_squared_frames_in_one_poll_are_dead_lettered_and_a_good_one_passes(
    bombs,
) -> None:
    """The detector's poll: four bombs (PNG and JPEG) and a real frame; peak RSS stays flat."""
    script = (
        "import time\n"
        "import numpy as np\n"
        "from services.detector.worker import DetectorWorker\n"
        "from shared.bus.base import Message\n"
        "from shared.face.detection import HaarCascadeDetector\n"
        "from shared.images import encode_jpeg\n"
        "from shared.schemas import FrameMeta\n"
        "from tests.bombs import png_bomb\n"
        "def message(seq, value, w, h):\n"
        "    meta = FrameMeta(camera_id='cam', seq=seq, capture_ts=time.time(), width=w, height=h)\n"
        "    return Message('facestream.frames', value, 'cam', meta.to_headers(), 0, seq)\n"
        "jpeg = open(sys.argv[1], 'rb').read()\n"
        "png = png_bomb(10000, 10000)\n"
        "good = encode_jpeg(np.full((48, 64, 3), 128, np.uint8))\n"
        "worker = DetectorWorker(HaarCascadeDetector())\n"
        "worker.process_batch([message(0, good, 64, 48)])  # warm up: the detector's own memory\n"
        "poll = [message(1, jpeg, 10000, 10000), message(2, png, 10000, 10000),\n"
        "        message(3, jpeg, 10000, 10000), message(4, png, 10000, 10000),\n"
        "        message(5, good, 64, 48)]\n"
        "before = peak_mb()\n"
        "results = worker.process_batch(poll)\n"
        "after = peak_mb()\n"
        "kinds = [getattr(r, 'reason', None) if isinstance(r, Exception) else 'ok' for r in results]\n"
        "print(json.dumps({'results': kinds, 'before': before, 'after': after}))\n"
    )
    measured = run_measured(script, str(bombs["jpeg_10000"]))
    assert measured["results"] == ["image_too_large"] * 4 + ["ok"], measured
    assert measured["after"] - measured["before"] < BOUND_MB, measured


def test_the_control_decodes_the_bomb_unguarded_and_grows(bombs) -> None:
    """Without the header check the same 629-byte JPEG costs 300 MB: the attack is real."""
    script = (
        "import cv2, numpy as np\n"
        "data = np.frombuffer(open(sys.argv[1], 'rb').read(), np.uint8)\n"
        "before = peak_mb()\n"
        "image = cv2.imdecode(data, cv2.IMREAD_COLOR)\n"
        "print(json.dumps({'shape': list(image.shape), 'before': before, 'after': peak_mb()}))\n"
    )
    measured = run_measured(script, str(bombs["jpeg_10000"]))
    assert measured["shape"] == [10000, 10000, 3]
    assert measured["after"] - measured["before"] > 250, measured


def test_the_detector_decodes_a_poll_in_chunks_within_the_pixel_budget() -> None:
    from services.detector.worker import DetectorWorker
    from shared.face.detection import HaarCascadeDetector
    from shared.settings import DetectorSettings

    class Recording(HaarCascadeDetector):
        sizes: list[int] = []

        def detect_batch(self, images):
            self.sizes.append(sum(i.shape[0] * i.shape[1] for i in images))
            return super().detect_batch(images)

    detector = Recording()
    every_frame = DetectorSettings(motion_gating=False, detect_every=1)  # all 7 reach the detector
    worker = DetectorWorker(detector, batch_pixels=3 * 640 * 480, settings=every_frame)
    image = encode_jpeg(np.full((480, 640, 3), 100, np.uint8))
    poll = []
    for seq in range(7):
        meta = FrameMeta(camera_id="cam", seq=seq, capture_ts=time.time(), width=640, height=480)
        poll.append(Message("facestream.frames", image, "cam", meta.to_headers(), 0, seq))
    results = worker.process_batch(poll)
    assert all(isinstance(r, list) for r in results)  # no frame lost
    assert detector.sizes == [3 * 640 * 480, 3 * 640 * 480, 640 * 480]


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a....", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDX", b"II*\x00tiff", b"\xff\xd8\xff"],
)
def test_unknown_or_damaged_headers_are_corrupt(data: bytes) -> None:
    with pytest.raises(ProcessingError) as caught:
        check_size(data)
    assert caught.value.reason == "corrupt_image"


def test_chips_and_context_crops_must_have_their_size() -> None:
    import base64

    def b64(image: np.ndarray | bytes) -> str:
        data = image if isinstance(image, bytes) else encode_jpeg(image)
        return base64.b64encode(data).decode()

    assert chip_from_b64(b64(np.zeros((150, 150, 3), np.uint8))).shape == (150, 150, 3)
    assert context_from_b64(b64(np.zeros((96, 96), np.uint8))).shape == (96, 96)
    bomb = png_bomb(20000, 20000)
    cases = [
        (chip_from_b64, np.zeros((150, 151, 3), np.uint8), "corrupt_image"),
        (chip_from_b64, np.zeros((100, 100, 3), np.uint8), "corrupt_image"),
        (chip_from_b64, bomb, "image_too_large"),
        (context_from_b64, np.zeros((97, 96), np.uint8), "corrupt_image"),
        (context_from_b64, np.zeros((64, 64), np.uint8), "corrupt_image"),
        (context_from_b64, bomb, "image_too_large"),
    ]
    for decode, image, reason in cases:
        with pytest.raises(ProcessingError) as caught:
            decode(b64(image))
        assert caught.value.reason == reason, (decode.__name__, caught.value)


def test_a_setting_lowers_the_limit(monkeypatch) -> None:
    from shared.settings import get_settings

    monkeypatch.setenv("FACESTREAM_IMAGES__MAX_PIXELS", "1000")
    get_settings.cache_clear()
    try:
        with pytest.raises(ProcessingError) as caught:
            decode_image(encode_jpeg(np.zeros((40, 40, 3), np.uint8)))
        assert caught.value.reason == "image_too_large"
        assert decode_image(encode_jpeg(np.zeros((20, 20, 3), np.uint8))).shape == (20, 20, 3)
    finally:
        get_settings.cache_clear()
