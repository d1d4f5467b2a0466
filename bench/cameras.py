"""Cameras per machine: N RTSP cameras through the whole pipeline, gating/tracking on and off.

    bash deploy/local/infra.sh start && source deploy/local/env.sh
    .venv/bin/python -m bench.cameras [--counts 1,2,4,8,16] [--modes on,off] [--seconds 30]
                                      [--runners kafka,embedded] [--json PATH]

For each runner, mode and N: N cameras at 15 fps from RTSP servers (the local one's ``/loop``,
the Hamilton clip looped; from N = 2 one camera is the street-crowd 1080p video, served by an RTSP
server this bench starts with the same script, deploy/local/rtsp_server.py). ``kafka``: the
ingestor, detector, liveness and recognizer as separate processes over the local Kafka and Redis,
as the README runs them (one TensorFlow thread each); ``embedded``: ``facestream run``'s services
in one process over the in-memory bus. ``on``: the defaults (motion gating, detect-then-track,
re-association, sparse encoding); ``off``: every frame detected and encoded. After a warm-up it
measures for ``--seconds``: frames/s through the detector per camera (faces messages), capture ->
faces (detector) and capture -> event p50/p99, consumer lag of every group in the middle and at
the end (bounded, or growing), and the CPU each process used (with the kafka runner also the
local Kafka broker's and Redis', which a deployment pays for too). From the CPU it prints the
budget: milliseconds of CPU per frame through the detector, per process and in all, and how many
15 fps cameras the machine's cores could carry at that cost, which says how far a target N is
from what the CPU allows, whatever the latency. It prints the largest N that keeps 15 fps on
every camera (>= 95%) with capture -> event p50 <= 250 ms and bounded lag. The load average is
printed with every run: figures from a machine others use are marked as such.

Over 400 lines for a reason: one benchmark that starts, watches and stops two runners' worth of
processes and servers, and all of its measurements read the same topics and process table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shared.bus.base import Message  # noqa: E402
from shared.schemas import FacesMessage, FrameMeta, Topics, read_event  # noqa: E402
from shared.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OFF = {
    "FACESTREAM_DETECTOR__MOTION_GATING": "false",
    "FACESTREAM_DETECTOR__DETECT_EVERY": "1",
    "FACESTREAM_RECOGNIZER__REASSOCIATE": "false",
    "FACESTREAM_RECOGNIZER__ENCODE_EVERY": "1",
    "FACESTREAM_RECOGNIZER__CONFIRM_FRAMES": "1",
}
GROUPS = {
    "facestream-detector": [Topics.FRAMES],
    "facestream-liveness": [Topics.FACES],
    "facestream-recognizer": [Topics.FACES, Topics.LIVENESS, Topics.FRAMES],  # frames: snapshots
}
FPS = 15.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids() -> dict[str, int]:
    """The local Kafka broker and Redis (``deploy/local/infra.sh`` writes their pid files)."""
    run = Path(os.environ.get("FACESTREAM_RUN_DIR", Path.home() / ".cache/facestream/run"))
    pids = {}
    for name in ("kafka", "redis"):
        try:
            pid = int((run / f"{name}.pid").read_text())
            cpu_seconds(pid)
        except (OSError, ValueError):
            continue  # not started by infra.sh (an outside broker): its CPU is not counted
        pids[name] = pid
    return pids


def cpu_budget(cpu_percent: dict[str, int], frames_per_second: float) -> dict:
    """CPU per frame through the detector, per process and in all, and the 15 fps cameras the
    machine's cores could carry at that cost (if latency and scheduling cost nothing)."""
    if frames_per_second <= 0:
        return {"ms_per_frame": {}, "total_ms_per_frame": None, "cameras_the_cores_carry": None}
    per_frame = {n: round(10 * pct / frames_per_second, 1) for n, pct in cpu_percent.items()}
    total = sum(per_frame.values())
    cores = os.cpu_count() or 1
    return {
        "ms_per_frame": per_frame,
        "total_ms_per_frame": round(total, 1),
        "cameras_the_cores_carry": round(cores * 1000 / total / FPS, 2) if total else None,
    }


def looped(video: Path, folder: Path) -> Path:
    """The video concatenated 60 times without re-encoding (as infra.sh makes /loop)."""
    out = folder / f"{video.stem}-loop.mp4"
    if not out.exists():
        tmp = out.with_suffix(".tmp.mp4")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-stream_loop", "59", "-i", str(video)]
            + ["-map", "0:v:0", "-c", "copy", str(tmp)],
            check=True,
        )
        tmp.rename(out)
    return out


def start_street_server(settings: Settings, folder: Path, port: int) -> subprocess.Popen:
    video = looped(settings.shared_data / "video" / "street_crowd_1080p.mp4", folder)
    server = subprocess.Popen(
        ["/usr/bin/python3", str(ROOT / "deploy/local/rtsp_server.py"), "--mount"]
        + [f"/street={video}", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2.0)
    return server


def camera_urls(n: int, loop_url: str, street_url: str | None) -> dict[str, str]:
    """N cameras: the looped Hamilton clip, and from N = 2 one street-crowd 1080p camera."""
    urls = {f"cam{i:02d}": loop_url for i in range(n)}
    if street_url and n >= 2:
        urls[f"cam{n - 1:02d}"] = street_url
    return urls


class Probe:
    """Counts and latencies per camera from the frames, faces and events topics (Kafka), or from
    a subscriber of the in-memory bus (embedded)."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = defaultdict(int)
        self.faces: dict[str, int] = defaultdict(int)
        self.to_faces: list[float] = []
        self.to_event: list[float] = []
        self.to_event_by_type: dict[str, list[float]] = defaultdict(list)
        self.events: dict[str, int] = defaultdict(int)
        self.measuring = False

    def record(self, topic: str, value: bytes, headers: dict[str, str], now: float) -> None:
        if not self.measuring:
            return
        if topic == Topics.FRAMES:
            self.frames[FrameMeta.model_validate(headers).camera_id] += 1
        elif topic == Topics.FACES:
            faces = FacesMessage.model_validate_json(value)
            self.faces[faces.camera_id] += 1
            self.to_faces.append((now - faces.capture_ts) * 1000)
        elif topic == Topics.EVENTS:
            event = read_event(Message(Topics.EVENTS, value, None, headers))
            self.events[event.type] += 1
            if event.type != "ended":  # an end is declared after the track's timeout
                self.to_event.append((now - event.last_seen_ts) * 1000)
                self.to_event_by_type[event.type].append((now - event.last_seen_ts) * 1000)

    def summary(self, cameras: list[str], seconds: float) -> dict:
        per_camera = {c: round(self.faces.get(c, 0) / seconds, 1) for c in cameras}
        return {
            "detector_fps_per_camera": per_camera,
            "min_fps": min(per_camera.values()) if per_camera else 0.0,
            "capture_to_faces_ms": percentiles(self.to_faces),
            "capture_to_event_ms": percentiles(self.to_event),
            "capture_to_event_ms_by_type": {
                kind: percentiles(values) for kind, values in self.to_event_by_type.items()
            },
            "events": dict(self.events),
        }


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 1), "p99": round(float(p99), 1), "n": len(values)}


# --- the Kafka stack ------------------------------------------------------------------------


def skip_groups_to_end(settings: Settings) -> None:
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
    from kafka.errors import CommitFailedError

    from shared.bus.kafka import connection_options

    for group, topics in GROUPS.items():
        consumer = KafkaConsumer(
            **connection_options(settings.kafka), group_id=group, enable_auto_commit=False
        )
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)]
        consumer.assign(parts)
        consumer.seek_to_end(*parts)
        ends = {tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in parts}
        deadline = time.monotonic() + 60
        while True:  # refused while a member of the last run is still leaving the group
            try:
                consumer.commit(ends)
                break
            except CommitFailedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        consumer.close()


def group_lag(settings: Settings) -> dict[str, int]:
    """Messages each group has not committed yet, over its topics."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    from shared.bus.kafka import connection_options

    options = connection_options(settings.kafka)
    admin = KafkaAdminClient(**options)
    consumer = KafkaConsumer(**options)
    lags = {}
    try:
        topics = sorted({t for group_topics in GROUPS.values() for t in group_topics})
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)]
        ends = consumer.end_offsets(parts)
        for group, group_topics in GROUPS.items():
            committed = admin.list_consumer_group_offsets(group)
            lags[group] = int(
                sum(
                    end - (committed[tp].offset if tp in committed else 0)
                    for tp, end in ends.items()
                    if tp.topic in group_topics
                )
            )
    finally:
        admin.close()
        consumer.close()
    return lags


def tail_consumer(settings: Settings):
    from kafka import KafkaConsumer, TopicPartition

    from shared.bus.kafka import connection_options

    consumer = KafkaConsumer(**connection_options(settings.kafka), enable_auto_commit=False)
    topics = [Topics.FRAMES, Topics.FACES, Topics.EVENTS]
    parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)]
    consumer.assign(parts)
    consumer.seek_to_end(*parts)
    for tp in parts:
        consumer.position(tp)
    return consumer


def start_service(name: str, env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", name], env=env, stdout=log, stderr=log
    )


def wait_consuming(processes: dict[str, subprocess.Popen], log_dir: Path, limit: float) -> None:
    """Until every worker logged that it consumes (its models are loaded)."""
    deadline = time.monotonic() + limit
    waiting = [n for n in processes if n != "ingestor"]
    while waiting and time.monotonic() < deadline:
        waiting = [n for n in waiting if b"consuming" not in (log_dir / f"{n}.log").read_bytes()]
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited; see {log_dir / (name + '.log')}")
        time.sleep(1.0)


def run_kafka(n: int, mode: str, args, settings: Settings, urls: dict[str, str]) -> dict:
    from shared.cameras import CameraSpec, RedisCameraRegistry
    from shared.redis_client import create_redis

    prefix = args.prefix
    env = {
        **os.environ,
        "FACESTREAM_BUS": "kafka",
        "FACESTREAM_STORE": "redis",
        "FACESTREAM_REDIS__KEY_PREFIX": prefix,
        "FACESTREAM_FACE__TF_THREADS": os.environ.get("FACESTREAM_FACE__TF_THREADS", "1"),
        "FACESTREAM_METRICS_PORT": "0",
        **(OFF if mode == "off" else {}),
    }
    skip_groups_to_end(settings)
    log_dir = args.out / f"kafka-{mode}-{n}"
    log_dir.mkdir(parents=True, exist_ok=True)
    names = ["recognizer", *(["liveness"] if settings.liveness.gate else []), "detector"]
    processes = {name: start_service(name, env, log_dir) for name in [*names, "ingestor"]}
    registry = RedisCameraRegistry(create_redis(settings.redis), prefix)
    probe = Probe()
    stop = threading.Event()
    consumer = tail_consumer(settings)
    reader = threading.Thread(target=_read_kafka, args=(consumer, probe, stop), daemon=True)
    reader.start()
    try:
        wait_consuming(processes, log_dir, 180)
        for camera, url in urls.items():
            registry.put(CameraSpec(id=camera, url=url, fps=FPS))
        time.sleep(args.warmup)
        result = measure(
            probe,
            processes,
            args.seconds,
            list(urls),
            lambda: group_lag(settings),
            servers=server_pids(),  # the broker's and Redis' CPU is the pipeline's too
        )
    finally:
        for camera in urls:
            registry.remove(camera)
        stop.set()
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        reader.join(5)
        consumer.close()
    return result


def _read_kafka(consumer, probe: Probe, stop: threading.Event) -> None:
    while not stop.is_set():
        for batch in consumer.poll(timeout_ms=200).values():
            now = time.time()
            for record in batch:
                headers = {k: v.decode() for k, v in record.headers}
                try:
                    probe.record(record.topic, record.value, headers, now)
                except Exception as error:  # noqa: BLE001 - one odd record must not stop the count
                    print(f"unreadable {record.topic} record: {error}", file=sys.stderr)


def measure(
    probe: Probe,
    processes: dict,
    seconds: float,
    cameras: list[str],
    lag,
    servers: dict[str, int] | None = None,
) -> dict:
    """Count for ``seconds``; lag in the middle and at the end; CPU per process, ``servers``'
    (name: pid) included."""
    pids = {name: p.pid for name, p in processes.items()} | (servers or {})
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    probe.measuring = True
    time.sleep(seconds / 2)
    lag_mid = lag()
    time.sleep(seconds / 2)
    lag_end = lag()
    probe.measuring = False
    elapsed = time.monotonic() - started
    cpu = {n: round(100 * (cpu_seconds(pid) - cpu_before[n]) / elapsed) for n, pid in pids.items()}
    result = probe.summary(cameras, elapsed)
    growth = sum(lag_end.values()) - sum(lag_mid.values())
    result.update(
        lag_mid=lag_mid,
        lag_end=lag_end,
        lag_bounded=growth <= FPS * len(cameras) * 0.5,  # < half a second of frames more
        cpu_percent=cpu,
        cpu_budget=cpu_budget(cpu, sum(result["detector_fps_per_camera"].values())),
        load_average=round(os.getloadavg()[0], 2),
        seconds=round(elapsed, 1),
    )
    return result


# --- the embedded runner --------------------------------------------------------------------


def run_embedded(n: int, mode: str, args, urls: dict[str, str]) -> dict:
    """The embedded runner in a child process (its own CPU, its own metrics registry)."""
    env = {**os.environ, **(OFF if mode == "off" else {})}
    command = [sys.executable, "-m", "bench.cameras", "--embedded-child", json.dumps(urls)]
    command += ["--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"embedded run failed: {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def embedded_child(urls: dict[str, str], seconds: float, warmup: float) -> None:
    from services.runtime import build_services, start_services, wait_and_stop
    from shared.bus.memory import MemoryBus
    from shared.cameras import CameraSpec, FileCameraRegistry
    from shared.face.factory import build_identity

    with tempfile.TemporaryDirectory(prefix="bench-cameras-") as tmp:
        settings = Settings(bus="memory", store="file", data_dir=Path(tmp) / "data", metrics_port=0)
        photo = settings.shared_data / "faces/people/enroll/lin_manuel_miranda/img1.png"
        build_identity(settings).enroll("lin_manuel_miranda", photo.read_bytes())
        bus, stop = MemoryBus(), threading.Event()
        registry = FileCameraRegistry(Path(tmp) / "cameras.json")
        names = ["ingestor", "detector", *(["liveness"] if settings.liveness.gate else [])]
        services = build_services([*names, "recognizer"], settings, bus, stop, registry)
        report = bus.subscriber([Topics.FRAMES, Topics.FACES, Topics.EVENTS], "bench-report")
        health, threads = start_services(services, settings, stop)
        probe = Probe()

        def read() -> None:
            while not stop.is_set():
                batch = report.poll(0.2, 512)
                now = time.time()
                for message in batch:
                    probe.record(message.topic, message.value, dict(message.headers), now)
                report.commit()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        for camera, url in urls.items():
            registry.put(CameraSpec(id=camera, url=url, fps=FPS))
        time.sleep(warmup)

        class Self:
            pid = os.getpid()

        result = measure(probe, {"embedded": Self}, seconds, list(urls), bus_lag(services))
        stop.set()
        wait_and_stop(health, threads, stop)
    print(json.dumps(result), flush=True)


def bus_lag(services: dict):
    """The in-memory bus's backlog per worker (messages published, not consumed yet)."""

    def lag() -> dict[str, int]:
        out = {}
        for name, service in services.items():
            subscriber = getattr(service, "_subscriber", None)
            if subscriber is not None:
                out[name] = int(sum(subscriber.lag().values()))
        return out

    return lag


# --- the report -----------------------------------------------------------------------------


def ok(result: dict) -> bool:
    p50 = result["capture_to_event_ms"]["p50"]
    return (
        result["min_fps"] >= 0.95 * FPS and p50 is not None and p50 <= 250 and result["lag_bounded"]
    )


def line(runner: str, mode: str, n: int, r: dict) -> str:
    faces, event = r["capture_to_faces_ms"], r["capture_to_event_ms"]
    fps, budget = r["detector_fps_per_camera"], r["cpu_budget"]
    return (
        f"{runner:8s} {mode:3s} N={n:<2d} det fps/camera min {r['min_fps']:5.1f} "
        f"mean {np.mean(list(fps.values())):5.1f}  cap->faces p50 {faces['p50']} ms  "
        f"cap->event p50 {event['p50']} p99 {event['p99']} ms (n={event['n']})  "
        f"lag {sum(r['lag_mid'].values())}->{sum(r['lag_end'].values())} "
        f"{'bounded' if r['lag_bounded'] else 'GROWING'}  cpu% {r['cpu_percent']}  "
        f"load {r['load_average']}  {'OK' if ok(r) else 'no'}\n"
        "    cap->event p50 by type: "
        + ", ".join(f"{k} {v['p50']} ms" for k, v in r["capture_to_event_ms_by_type"].items())
        + f"\n    CPU per frame {budget['total_ms_per_frame']} ms {budget['ms_per_frame']}: "
        f"the {os.cpu_count()} cores carry {budget['cameras_the_cores_carry']} cameras at 15 fps"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,2,4,8")
    parser.add_argument("--modes", default="on,off")
    parser.add_argument("--runners", default="kafka,embedded")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument(
        "--street-port",
        type=int,
        default=int(os.environ.get("FACESTREAM_LOCAL_RTSP_PORT", "8554")) + 1,
    )
    parser.add_argument("--no-street", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--embedded-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.embedded_child:
        embedded_child(json.loads(args.embedded_child), args.seconds, args.warmup)
        return

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop: clean up as on Ctrl-C
    settings = Settings()
    run = uuid.uuid4().hex[:8]
    args.prefix = f"bench-{run}"
    args.out = ROOT / "bench" / "out" / f"cameras-{run}"
    args.out.mkdir(parents=True, exist_ok=True)
    rtsp = os.environ.get("FACESTREAM_RTSP_URL", "rtsp://127.0.0.1:38554")
    street = None if args.no_street else start_street_server(settings, args.out, args.street_port)
    street_url = None if street is None else f"rtsp://127.0.0.1:{args.street_port}/street"
    print(f"load average at start: {os.getloadavg()} on {os.cpu_count()} cores; logs in {args.out}")
    results: dict = {}
    try:
        if "kafka" in args.runners:
            from shared.bus.kafka import KafkaBus
            from shared.face.factory import build_identity

            KafkaBus(settings.kafka).ensure_topics(Topics.ALL)
            redis_settings = settings.redis.model_copy(update={"key_prefix": args.prefix})
            identity = build_identity(
                settings.model_copy(update={"store": "redis", "redis": redis_settings})
            )
            photo = settings.shared_data / "faces/people/enroll/lin_manuel_miranda/img1.png"
            identity.enroll("lin_manuel_miranda", photo.read_bytes())
        for runner in args.runners.split(","):
            for n in [int(c) for c in args.counts.split(",")]:
                urls = camera_urls(n, f"{rtsp}/loop", street_url)
                for mode in args.modes.split(","):  # side by side: the same N, on then off
                    if runner == "kafka":
                        result = run_kafka(n, mode, args, settings, urls)
                    else:
                        result = run_embedded(n, mode, args, urls)
                    results[f"{runner}/{mode}/{n}"] = result
                    print(line(runner, mode, n, result), flush=True)
        if "kafka" in args.runners:
            identity.delete(identity.resolve("lin_manuel_miranda").id)
    finally:
        if street is not None:
            street.terminate()
    print("largest N keeping 15 fps on every camera, capture->event p50 <= 250 ms, bounded lag:")
    for runner in args.runners.split(","):
        for mode in args.modes.split(","):
            good = [
                int(k.split("/")[2])
                for k, r in results.items()
                if k.startswith(f"{runner}/{mode}/") and ok(r)
            ]
            print(f"  {runner:8s} {mode:3s}: {max(good) if good else 'none'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
