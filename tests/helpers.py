"""Small helpers shared by tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families


def sample(name: str, **labels: str) -> float:
    """Current value of a metric series in this process (0 when it has not been touched yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_for(condition: Callable[[], object], timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or condition}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """One facestream service as a real OS process, with its own metrics/health port."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.env = env
        self.port = free_port()
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        env = {**os.environ, **self.env, "FACESTREAM_METRICS_PORT": str(self.port)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", self.name], env=env, stdout=log, stderr=log
            )
        wait_for(self._answers, 60, f"{self.name} health endpoint")
        return self

    def _answers(self) -> bool:
        assert self.alive(), f"{self.name} exited; log:\n{self.log_path.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(30)

    def stop(self) -> int | None:
        if self.alive():
            self.kill(signal.SIGTERM)
        return self.process.returncode if self.process else None

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the series ``name`` whose labels include ``labels``, scraped from the process."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total


def detect_one_frame(jpeg: bytes, env: dict[str, str], monkeypatch):
    """The faces a DetectorWorker (MTCNN, 40 px) publishes for one JPEG frame of camera
    ``cam``, the worker built under the settings ``env`` sets (the settings cache is cleared
    around it, so other tests see the defaults)."""
    import cv2
    import numpy as np

    from services.detector.worker import DetectorWorker
    from shared.bus.base import Message
    from shared.face.detection import create_detector
    from shared.schemas import FacesMessage, FrameMeta, Topics
    from shared.settings import get_settings

    height, width = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    meta = FrameMeta(camera_id="cam", seq=0, capture_ts=1000.0, width=width, height=height)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    worker = DetectorWorker(create_detector("mtcnn", min_face_px=40))
    get_settings.cache_clear()
    [[out]] = worker.process_batch([Message(Topics.FRAMES, jpeg, "cam", meta.to_headers())])
    return FacesMessage.model_validate_json(out.value).faces


def obama_jpeg(shared_data: Path) -> bytes:
    """The enrolment photo of ``obama`` (one frontal face) as a JPEG frame, quality 95."""
    import cv2

    from shared.images import encode_jpeg

    path = shared_data / "faces" / "people" / "enroll" / "obama" / "obama.jpg"
    return encode_jpeg(cv2.imread(str(path)), 95)
