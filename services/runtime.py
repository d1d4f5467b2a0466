"""Running services: each in a thread, one metrics/health endpoint per process, clean shutdown."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from shared.health import HealthServer
from shared.settings import Settings

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
