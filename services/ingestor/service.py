"""The ingestor service: keeps one ``CameraReader`` per camera in the registry.

The registry is re-read every ``registry_poll_s``: new cameras start, removed ones stop, changed
ones restart (a change of style alone does not: styling is the stylizer's business). While the registry's store is unreachable the running cameras keep going and the
error is counted.
"""

from __future__ import annotations

import logging
import threading

from services.ingestor.camera import CameraReader
from shared import metrics
from shared.bus.base import Bus, BusError
from shared.cameras import CameraRegistry, CameraSpec, RegistryError
from shared.schemas import Topics
from shared.settings import IngestSettings

log = logging.getLogger(__name__)


class IngestorService:
    name = "ingestor"

    def __init__(
        self, bus: Bus, registry: CameraRegistry, settings: IngestSettings, stop: threading.Event
    ) -> None:
        self.bus = bus
        self.registry = registry
        self.settings = settings
        self.stop = stop
        self.readers: dict[str, CameraReader] = {}
        self.registry_ok = True

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.sync()
                self.stop.wait(self.settings.registry_poll_s)
        finally:
            for camera_id in list(self.readers):
                self._stop_reader(camera_id)

    def sync(self) -> None:
        """Make the running readers match the registry."""
        try:
            wanted = {camera.id: camera for camera in self.registry.list()}
            self.registry_ok = True
        except RegistryError as error:
            if self.registry_ok:
                log.warning("ingestor: %s; keeping the running cameras", error)
            self.registry_ok = False
            metrics.ERRORS.labels(self.name, "registry").inc()
            return
        for camera_id, reader in list(self.readers.items()):
            if not reader.camera.same_capture(wanted.get(camera_id)):
                self._stop_reader(camera_id)
        for camera_id, camera in wanted.items():
            if camera_id not in self.readers:
                self._start_reader(camera)

    def _start_reader(self, camera: CameraSpec) -> None:
        try:
            self.bus.ensure_topics([Topics.FRAMES])
            publisher = self.bus.publisher()
        except BusError as error:
            log.warning("ingestor: camera %s waits for the bus: %s", camera.id, error)
            metrics.ERRORS.labels(self.name, "bus_connect").inc()
            return  # retried at the next sync
        log.info("ingestor: starting camera %s", camera.id)
        reader = CameraReader(camera, publisher, self.settings)
        self.readers[camera.id] = reader
        reader.start()

    def _stop_reader(self, camera_id: str) -> None:
        reader = self.readers[camera_id]
        log.info("ingestor: stopping camera %s", camera_id)
        reader.stop()
        reader.join(timeout=self.settings.open_timeout_s + self.settings.read_timeout_s)
        if reader.is_alive():
            log.warning("ingestor: camera %s is stuck in a blocking call; abandoning it", camera_id)
        reader.publisher.close()
        del self.readers[camera_id]
        metrics.CAMERA_UP.labels(camera_id).set(0)

    def healthy(self) -> bool:
        """Healthy while the registry answers; a camera being down is reported by its own metric."""
        return self.registry_ok

    def camera_states(self) -> dict[str, str]:
        return {camera_id: reader.state for camera_id, reader in list(self.readers.items())}
