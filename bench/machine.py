"""What the figures were measured on: hardware, library versions, broker version, commit, date.

Throughput figures mean nothing without the machine and versions they came from, so every
benchmark report starts with this block.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

from shared.settings import Settings, get_settings

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir(settings: Settings | None = None) -> Path:
    """``FACESTREAM_SHARED_DATA`` (through settings); a relative path is taken from the repo root."""
    path = (settings or get_settings()).shared_data
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


_KAFKA_JAR = re.compile(r"^kafka_\d+\.\d+-(\d+\.\d+\.\d+)\.jar$")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    """Total physical memory in GiB, from /proc/meminfo; None where that is unavailable."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except (OSError, ValueError, IndexError):
        pass
    return None


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset can allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def kafka_broker_version() -> tuple[str, str]:
    """(version, where it was read) of the local Kafka distribution.

    The jar's file name is the most reliable record of what ``deploy/local/infra.sh`` runs; the
    ``KAFKA_VERSION`` variable that ``deploy/local/env.sh`` exports is the fallback.
    """
    cache = Path(os.environ.get("FACESTREAM_CACHE", Path.home() / ".cache" / "facestream"))
    homes = [Path(os.environ["KAFKA_HOME"])] if os.environ.get("KAFKA_HOME") else []
    homes += sorted(cache.glob("kafka-*"))
    for home in homes:
        for jar in sorted((home / "libs").glob("kafka_*.jar")):
            if match := _KAFKA_JAR.match(jar.name):
                return match.group(1), f"jar {jar}"
    if version := os.environ.get("KAFKA_VERSION"):
        return version, "env KAFKA_VERSION"
    return "unknown", f"no kafka_*.jar under {cache}/kafka-*/libs and no KAFKA_VERSION"


def kafka_crc32c() -> str:
    """Which CRC32C kafka-python uses, and what it costs on a 500 KB frame.

    Record batches carry a CRC32C that the producer computes and the consumer checks. Without the
    optional ``crc32c`` C package kafka-python falls back to pure Python, which then dominates the
    latency of large frames; the report says which one these figures were taken with.
    """
    from kafka.record import util

    payload = os.urandom(500_000)
    started = time.perf_counter()
    util.calc_crc32c(payload)
    ms = (time.perf_counter() - started) * 1000
    if util.crc32c_c is not None:
        return f"C extension (crc32c {metadata.version('crc32c')}), {ms:.2f} ms per 500 KB"
    return f"pure Python ('crc32c' package not installed), {ms:.1f} ms per 500 KB"


def git_commit() -> str:
    """Short commit of the working tree, marked when it has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit} (with uncommitted changes)" if dirty else commit


def machine_info() -> dict[str, str]:
    """Every line of the report's machine block, as label -> text (also written to the JSON)."""
    broker, broker_source = kafka_broker_version()
    memory = memory_gib()
    return {
        "CPU": cpu_model(),
        "Cores": f"{os.cpu_count()} logical, {usable_cores()} usable by this process",
        "Memory": f"{memory:.1f} GiB" if memory is not None else "unknown",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "numpy": np.__version__,
        "OpenCV": f"{cv2.__version__} ({cv2.getNumThreads()} threads)",
        "kafka-python": metadata.version("kafka-python"),
        "Kafka CRC32C": kafka_crc32c(),
        "Kafka broker": f"{broker} ({broker_source})",
        "Commit": git_commit(),
        "Date": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
