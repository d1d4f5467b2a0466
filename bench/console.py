"""What live viewers of the console cost the pipeline: detector frames/s and process CPU with 0, 1
and 5 viewers, in one run of ``facestream run`` (bench/README.md).

A viewer does what the Live page does: ask ``/v1/live/CAMERA`` every 200 ms and fetch the frame
when its sequence number changed. Phases are interleaved (0, 1, 5, 0 viewers) so that a drift of
the machine's load shows as a difference between the two 0-viewer phases.

    python -m bench.console [--phase-s 40] [--fps 10] [--video PATH]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def detector_frames(metrics_port: int) -> float:
    """Messages the detector consumed so far, from the run's /metrics."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - loopback
        for line in reply.read().decode().splitlines():
            if line.startswith("facestream_frames_in_total{") and 'service="detector"' in line:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def viewer(base: str, token: str, camera: str, stop: threading.Event, fetched: list[int]) -> None:
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    seq = None
    while not stop.is_set():
        started = time.monotonic()
        view = client.get(f"/v1/live/{camera}")
        if view.status_code == 200 and view.json()["seq"] != seq:
            seq = view.json()["seq"]
            if client.get(f"/v1/live/{camera}/frame.jpg", params={"seq": seq}).status_code == 200:
                fetched[0] += 1
        stop.wait(max(0.0, 0.2 - (time.monotonic() - started)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase-s", type=float, default=40.0)
    parser.add_argument("--fps", type=float, default=10.0)
    shared = Path(os.environ.get("FACESTREAM_SHARED_DATA", ROOT.parent / "shared" / "data"))
    parser.add_argument(
        "--video", type=Path, default=shared / "video" / "hamilton_clip_640x360.mp4"
    )
    args = parser.parse_args()
    token, port, metrics = secrets.token_urlsafe(32), free_port(), free_port()
    env = {
        **os.environ,
        "FACESTREAM_API__TOKEN": token,
        "FACESTREAM_CONSOLE__PORT": str(port),
        "FACESTREAM_METRICS_PORT": str(metrics),
        "FACESTREAM_DATA_DIR": f"/tmp/facestream-bench-console-{port}",
    }
    command = [sys.executable, "-m", "services.cli", "run", "--loop", "--fps", str(args.fps)]
    process = subprocess.Popen(
        [*command, str(args.video)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        for line in process.stdout:
            if b"console: http" in line:
                break
        threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
        time.sleep(args.phase_s / 2)  # warm up: models loaded, the detector in its stride
        camera = Path(args.video).stem
        base = f"http://127.0.0.1:{port}"
        print(f"{args.video.name} at {args.fps:g} fps, {args.phase_s:g} s per phase, machine load "
              f"{os.getloadavg()[0]:.1f} at start ({os.cpu_count()} cores)")  # fmt: skip
        print(
            f"{'viewers':>8} {'detector frames/s':>18} {'process CPU %':>14} {'frames served/s':>16}"
        )
        rows = []
        for viewers in (0, 1, 5, 0):
            stop, fetched = threading.Event(), [0]
            threads = [
                threading.Thread(target=viewer, args=(base, token, camera, stop, fetched))
                for _ in range(viewers)
            ]
            for thread in threads:
                thread.start()
            frames0, cpu0, t0 = detector_frames(metrics), cpu_seconds(process.pid), time.monotonic()
            time.sleep(args.phase_s)
            elapsed = time.monotonic() - t0
            rate = (detector_frames(metrics) - frames0) / elapsed
            cpu = (cpu_seconds(process.pid) - cpu0) / elapsed * 100
            stop.set()
            for thread in threads:
                thread.join()
            rows.append((viewers, rate, cpu))
            print(f"{viewers:>8} {rate:>18.2f} {cpu:>14.1f} {fetched[0] / elapsed:>16.2f}")
        base_rate = (rows[0][1] + rows[3][1]) / 2
        for viewers, rate, cpu in rows[1:3]:
            print(f"{viewers} viewer(s): detector at {rate / base_rate:.1%} of the 0-viewer mean; "
                  f"process CPU {cpu - (rows[0][2] + rows[3][2]) / 2:+.1f} points")  # fmt: skip
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    main()
