"""Running services: wiring them to a bus, each in a thread, one metrics/health endpoint per
process, clean shutdown. The ``facestream`` command and the embedded pipeline both start
services through here."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from shared.bus.base import Bus
from shared.cameras import CameraRegistry, create_camera_registry
from shared.health import HealthServer
from shared.settings import Settings
from shared.worker import BatchWorker, WorkerRunner

SERVICES = ("ingestor", "detector", "liveness", "recognizer", "stylizer")

log = logging.getLogger(__name__)


class Service(Protocol):
    """What the runtime needs of a service (``WorkerRunner`` and ``IngestorService`` fit)."""

    def run(self) -> None: ...

    def healthy(self) -> bool: ...


def start_services(
    services: dict[str, Service],
    settings: Settings,
    stop: threading.Event,
    dependencies: dict[str, Callable[[], bool]] | None = None,
) -> tuple[HealthServer, list[threading.Thread]]:
    """Start the health endpoint and one thread per service; a crashed service stops the process.

    Liveness (``/livez``): each service's thread runs (and a worker's loop turns). Readiness (``/readyz``): each service is
    ``healthy()`` (its bus answers) and every check in ``dependencies`` (e.g. Redis) passes."""
    health = HealthServer(settings.metrics_host, settings.metrics_port).start()
    for name, check in (dependencies or {}).items():
        health.add_check(name, check)
    threads = []
    for name, service in services.items():
        health.add_check(name, service.healthy)
        thread = threading.Thread(target=_guarded, args=(name, service, stop), name=name)
        health.add_liveness(name, _liveness(thread, service))
        thread.start()
        threads.append(thread)
    return health, threads


def _liveness(thread: threading.Thread, service: Service) -> Callable[[], bool]:
    """Alive while the thread runs and, for a worker, while its loop turns (polling or retrying an
    outage: ``WorkerRunner.alive``), so a wedged loop is restarted but an outage is waited out."""
    turning = getattr(service, "alive", None)
    if turning is None:
        return thread.is_alive
    return lambda: thread.is_alive() and turning()


def _guarded(name: str, service: Service, stop: threading.Event) -> None:
    try:
        service.run()
    except Exception:
        log.exception("%s crashed; stopping the process so that it is restarted", name)
        stop.set()


def wait_and_stop(
    health: HealthServer, threads: list[threading.Thread], stop: threading.Event
) -> None:
    """Block until ``stop`` is set, then let every service finish its batch and exit."""
    while not stop.wait(0.5):
        pass
    for thread in threads:
        thread.join(timeout=30)
    health.stop()


def build_services(
    names: Sequence[str],
    settings: Settings,
    bus: Bus,
    stop: threading.Event,
    registry: CameraRegistry | None = None,
) -> dict[str, Service]:
    """The named services wired to one bus; the order is the pipeline's.

    ``registry``: the camera registry of the ingestor and the stylizer (default: the settings').
    """
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        raise ValueError(f"unknown services {unknown}; known: {SERVICES}")
    registry = registry or create_camera_registry(settings)
    if settings.face.tf_threads and {"detector", "liveness", "recognizer"} & set(names):
        from shared.face.encoder import configure_threads

        configure_threads(settings.face.tf_threads, 1)
    builders: dict[str, Callable[[], Service]] = {
        "ingestor": lambda: _ingestor(settings, bus, stop, registry),
        "detector": lambda: _runner(_detector(settings), bus, stop, settings, 8),  # MTCNN's best
        # frames travel too when snapshots are on: twice the poll for the same faces
        "recognizer": lambda: _runner(
            _recognizer(settings), bus, stop, settings, 32 if settings.snapshots.enabled else 16
        ),
        "liveness": lambda: _runner(_liveness_worker(settings), bus, stop, settings, 16),
        "stylizer": lambda: WorkerRunner(_stylizer(settings, registry), bus, stop, batch_size=4),
    }
    return {name: builders[name]() for name in names}


def dependencies(service: str, settings: Settings) -> dict[str, Callable[[], bool]]:
    """Readiness checks beyond the bus: Redis for the services that read the gallery or the
    camera registry from it (``/readyz`` 503 while it is down; ``/livez`` unaffected)."""
    if settings.store != "redis" or service not in ("ingestor", "recognizer", "stylizer"):
        return {}
    from shared.redis_client import create_redis

    return {"redis": create_redis(settings.redis).ping}


def _ingestor(
    settings: Settings, bus: Bus, stop: threading.Event, registry: CameraRegistry
) -> Service:
    from services.ingestor.service import IngestorService

    return IngestorService(bus, registry, settings.ingest, stop)


def _detector(settings: Settings) -> BatchWorker:
    from services.detector.worker import DetectorWorker
    from shared.face.detection import create_detector
    from shared.face.factory import chip_kind_for

    detector = create_detector(settings.face.detector, min_face_px=settings.face.min_face_px)
    return DetectorWorker(
        detector,
        settings.face.min_face_px,
        chip=chip_kind_for(settings.face.encoder),
        settings=settings.detector,
    )


def _recognizer(settings: Settings) -> BatchWorker:
    from services.recognizer.snapshots import keeper_from_settings
    from services.recognizer.worker import RecognizerWorker
    from shared.face.factory import build_verifier, load_face_encoder
    from shared.gallery.factory import create_gallery

    return RecognizerWorker(
        load_face_encoder(settings),
        create_gallery(settings),
        build_verifier(settings),
        settings.recognizer,
        settings.face.identification_far,
        liveness_gate=settings.liveness.gate,
        journal=_track_journal(settings),
        live_required=lambda camera: settings.liveness.for_camera(camera).mode != "off",
        snapshots=keeper_from_settings(settings),
    )


def _liveness_worker(settings: Settings) -> BatchWorker:
    from services.liveness.worker import LivenessWorker
    from shared.liveness.pixels import load_any

    return LivenessWorker(load_any(settings.liveness.weights), settings.liveness)


def _stylizer(settings: Settings, registry: CameraRegistry) -> BatchWorker:
    from services.stylizer.styles import StyleLoader
    from services.stylizer.worker import StylizerWorker
    from shared.images import max_frame_pixels
    from shared.style.paintings import create_painting_store

    loader = StyleLoader(  # trained networks by name, uploaded paintings as painting:<id>
        settings.style.networks_dir,
        create_painting_store(settings),
        max_frame_pixels(),
        settings.face.models_dir,
        settings.style.painting_side,
        precision=settings.style.precision,
    )
    return StylizerWorker(
        registry,
        loader,
        registry_poll_s=settings.ingest.registry_poll_s,
        max_lag_s=settings.style.max_lag_s,
        jpeg_quality=settings.style.jpeg_quality,
    )


def _runner(
    worker: BatchWorker, bus: Bus, stop: threading.Event, settings: Settings, batch_size: int
) -> WorkerRunner:
    """A runner with the stream checks configured by ``FACESTREAM_STREAM__*``."""
    from shared.stream import StreamGuard

    stream = settings.stream
    guard = StreamGuard(
        stream.max_future_s,
        stream.max_past_s,
        stream.replay_window,
        stream.camera_idle_s,
        stream.max_cameras,
    )
    return WorkerRunner(
        worker,
        bus,
        stop,
        batch_size=batch_size,
        guard=guard,
        dead_letter_headroom_bytes=stream.dead_letter_headroom_bytes,
    )


def _track_journal(settings: Settings) -> Any:
    """Where the recognizer keeps its open tracks across restarts: Redis when the store is."""
    from services.recognizer.journal import MemoryJournal, RedisJournal

    if settings.store != "redis":
        return MemoryJournal()
    from shared.redis_client import create_redis

    return RedisJournal(create_redis(settings.redis), settings.redis.key_prefix)
