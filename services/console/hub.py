"""What the console shows, read from the bus: live frames and boxes, and the events.

Two consumers, each in its own thread, in groups of their own that never commit (every console
process sees everything):

* **live** (frames, styled frames, faces, starting at the topics' end): per camera the JPEG bytes
  of its recent frames (not decoded; a byte-bounded ring, shared/frame_ring.py) and its newest
  faces message. A viewer gets a frame the detector has been through, so boxes sit on their
  faces: the newest one, with each box labelled as its track is now (its name, unknown, spoof,
  or "…" until the recognizer decides). Waiting for names instead (serving the newest frame
  whose faces are all decided) made the view stand still for as long as a new face stays
  undecided, seconds with the liveness window: a live view must move. The frame is decoded and
  downscaled at most ``VIEWER_FPS`` times a second per camera whatever the number of viewers
  (one cached JPEG, and its base64 for the pushed stream).
* **events** (from the beginning of what the topic retains): a ring of recent events, for the
  timeline and for ``GET /v1/events/stream`` (SSE) which resumes after ``Last-Event-ID`` (an
  event id) without loss while the event is still in the ring. Track labels (name / unknown /
  spoof) for the live boxes come from the same events, and ``snapshot`` events (event/3) attach
  their picture to the event they refer to.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from shared.bus.base import Bus, Message
from shared.frame_ring import FrameRing
from shared.images import encode_jpeg
from shared.schemas import FacesMessage, FrameMeta, Topics, read_event

log = logging.getLogger(__name__)

VIEWER_FPS = 5.0
VIEWER_WIDTH = 640
MAX_EVENTS = 20_000
MAX_CAMERAS = 256
FPS_WINDOW_S = 5.0
MAX_LABELS = 10_000


@dataclass(frozen=True)
class Served:
    """The frame viewers of a camera get now."""

    seq: int
    jpeg: bytes
    """Downscaled to ``VIEWER_WIDTH``."""
    faces: FacesMessage | None

    @cached_property
    def jpeg_b64(self) -> str:
        """For the pushed stream, encoded once whatever the number of viewers."""
        return base64.b64encode(self.jpeg).decode("ascii")


@dataclass
class _Camera:
    styled: bytes | None = None
    faces: FacesMessage | None = None
    """The newest faces message: the view shows its frame. An older one would not help when
    the ring no longer has this frame (it drops the oldest frames first)."""
    last_frame_wall: float = 0.0
    arrivals: deque = field(default_factory=lambda: deque(maxlen=256))
    """Arrival times of the last frames, for frames/s over the last ``FPS_WINDOW_S``."""
    served: Served | None = None
    served_at: float = 0.0


class LiveHub:
    def __init__(
        self,
        bus: Bus,
        retention_s: float,
        max_events: int = MAX_EVENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.clock = clock
        """For frames/s, a camera's state and the viewer rate (a test sets its own)."""
        self.retention_s = retention_s
        self.cameras: OrderedDict[str, _Camera] = OrderedDict()
        self.frames = FrameRing(max_cameras=MAX_CAMERAS)
        self.labels: OrderedDict[tuple[str, int], tuple[str, str]] = OrderedDict()
        """(camera, track) -> (kind, text): identified/name, unknown/unknown, spoof/spoof. Kept
        after the track ends (at most ``MAX_LABELS``): the live view shows what the detector
        reached, which can be behind the events when the pipeline is loaded."""
        self.aliases: OrderedDict[tuple[str, int], int] = OrderedDict()
        """(camera, detector track) -> the track it continues (``continued`` events): a person
        the recognizer re-associated keeps their label."""
        self.events: deque[dict] = deque(maxlen=max_events)
        self.snapshots: dict[str, str] = {}
        """event id -> snapshot id."""
        self.changed = threading.Condition()
        self.version = 0
        """Counts events taken in: a stream looks for new ones when it changed."""
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.camera_status: Callable[[str], dict] | None = None
        """Set by ``facestream run``: the ingestor's own view of a camera (state, last error)."""

    def start(self, stop: threading.Event) -> LiveHub:
        suffix = uuid.uuid4().hex[:8]
        live = (Topics.FRAMES, Topics.STYLED_FRAMES, Topics.FACES)
        for name, topics, latest in (
            ("live", live, True),
            ("events", (Topics.EVENTS,), False),
        ):
            thread = threading.Thread(
                target=self._consume,
                args=(topics, f"facestream-console-{name}-{suffix}", latest, stop),
                name=f"console-{name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def healthy(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def _consume(self, topics, group: str, latest: bool, stop: threading.Event) -> None:
        subscriber = None
        while not stop.is_set():
            try:
                subscriber = subscriber or self.bus.subscriber(topics, group, latest=latest)
                for message in subscriber.poll(0.5, 200):
                    self._take(message)
            except Exception:  # noqa: BLE001 - an outage: keep trying, the page shows stale data
                log.warning("console: reading %s failed; retrying", ",".join(topics), exc_info=True)
                subscriber = None
                stop.wait(2.0)
        if subscriber is not None:
            subscriber.close()

    def _take(self, message: Message) -> None:
        try:
            if message.topic == Topics.EVENTS:
                self._event(message)
            elif message.topic == Topics.FACES:
                faces = FacesMessage.from_message(message)
                with self._lock:
                    camera = self._camera(faces.camera_id)
                    camera.faces = faces
            elif message.topic == Topics.STYLED_FRAMES:
                with self._lock:
                    self._camera(message.key or "?").styled = message.value
            else:
                self._frame(message)
        except Exception:  # noqa: BLE001 - a message the console cannot read is skipped
            log.debug("console: skipped a message of %s", message.topic, exc_info=True)

    def _camera(self, camera_id: str) -> _Camera:
        camera = self.cameras.pop(camera_id, None) or _Camera()
        self.cameras[camera_id] = camera
        while len(self.cameras) > MAX_CAMERAS:
            self.cameras.popitem(last=False)
        return camera

    def _frame(self, message: Message) -> None:
        meta = FrameMeta.from_message(message)
        now = self.clock()
        with self._lock:
            camera = self._camera(meta.camera_id)
            camera.last_frame_wall = now
            camera.arrivals.append(now)
            self.frames.add(meta.camera_id, meta.seq, message.value)

    def _event(self, message: Message) -> None:
        event = read_event(message)
        record = event.model_dump(mode="json") | {"schema": message.headers.get("schema")}
        key = (event.camera_id, event.track_id)
        with self.changed:
            if event.type == "snapshot" and event.refers_to:
                self.snapshots[event.refers_to] = event.snapshot_id
            elif event.type == "identified":
                self.labels[key] = ("identified", event.person_name or "?")
            elif event.type == "unknown":
                self.labels[key] = ("unknown", "unknown")
            elif event.type in ("spoof", "withdrawn"):
                self.labels[key] = ("spoof", "spoof")
            elif event.type == "continued" and event.continued_as is not None:
                self.aliases[(event.camera_id, event.continued_as)] = event.track_id
                while len(self.aliases) > MAX_LABELS:
                    self.aliases.popitem(last=False)
            while len(self.labels) > MAX_LABELS:
                self.labels.popitem(last=False)
            self.events.append(record)
            while self.events and self.events[0]["ts"] < time.time() - self.retention_s:
                dropped = self.events.popleft()
                self.snapshots.pop(dropped["event_id"], None)
            self.version += 1
            self.changed.notify_all()

    # --- what the routes read -----------------------------------------------------------------

    def recent_events(
        self, after: str | None = None, matches: Callable[[dict], bool] = lambda e: True
    ) -> list[dict]:
        """Events after the one with id ``after`` (all retained when unknown), each with its
        ``snapshot_id`` when it has one, filtered by ``matches``."""
        with self.changed:
            events = list(self.events)
            snapshots = dict(self.snapshots)
        if after is not None:
            ids = [e["event_id"] for e in events]
            if after in ids:
                events = events[ids.index(after) + 1 :]
        return [
            e | {"snapshot_id": e.get("snapshot_id") or snapshots.get(e["event_id"])}
            for e in events
            if matches(e)
        ]

    def wait(self, timeout_s: float) -> None:
        with self.changed:
            self.changed.wait(timeout_s)

    def camera_ids(self) -> list[str]:
        with self._lock:
            return list(self.cameras)

    def status(self, camera_id: str) -> dict:
        with self._lock:
            camera = self.cameras.get(camera_id)
            age = (
                self.clock() - camera.last_frame_wall if camera and camera.last_frame_wall else None
            )
            recent = (
                [t for t in camera.arrivals if t > self.clock() - FPS_WINDOW_S] if camera else []
            )
            fps = round(len(recent) / FPS_WINDOW_S, 1)
        status = {
            "frames_age_s": age,
            "fps": fps,
            "state": "up" if age is not None and age < 5 else "no frames",
        }
        if self.camera_status is not None:
            status |= self.camera_status(camera_id)
        return status

    def live(self, camera_id: str) -> dict | None:
        """The frame to show now (its seq) and its faces with their labels."""
        view = self.view(camera_id)
        return None if view is None else view[0]

    def view(self, camera_id: str) -> tuple[dict, Served] | None:
        """``live``'s answer and the frame it names (for the pushed stream)."""
        with self._lock:
            camera = self.cameras.get(camera_id)
            if camera is None or self.frames.latest(camera_id) is None:
                return None
            served = self._serve(camera_id, camera)
            styled = camera.styled is not None
        faces = served.faces
        boxes = []
        for face in faces.faces if faces else []:
            track = face.track_id or 0
            track = self.aliases.get((camera_id, track), track)
            kind, text = self.labels.get((camera_id, track), ("pending", "…"))
            boxes.append(
                {
                    "box": face.box.model_dump(),
                    "track_id": face.track_id,
                    "kind": kind,
                    "label": text,
                }
            )
        frame_w = faces.frame_width if faces else None
        answer = {"seq": served.seq, "faces": boxes, "frame_width": frame_w, "styled": styled}
        return answer, served

    def _serve(self, camera_id: str, camera: _Camera) -> Served:
        """The frame for viewers, renewed at most VIEWER_FPS times a second (see the module
        docstring for which frame)."""
        now = self.clock()
        if camera.served is not None and now - camera.served_at < 1.0 / VIEWER_FPS:
            return camera.served
        seq, jpeg, faces = self._choose(camera_id, camera)
        if camera.served is None or camera.served.seq != seq:
            camera.served = Served(seq, _downscale(jpeg), faces)
        camera.served_at = now
        return camera.served

    def _choose(self, camera_id: str, camera: _Camera) -> tuple[int, bytes, FacesMessage | None]:
        """(seq, JPEG, faces) of the newest frame the detector went through, else (none yet, or
        the detector so far behind that the ring dropped it) the newest frame."""
        faces = camera.faces
        jpeg = self.frames.get(camera_id, faces.seq) if faces is not None else None
        if faces is not None and jpeg is not None:
            return faces.seq, jpeg, faces
        latest = self.frames.latest(camera_id)
        assert latest is not None  # callers check that the camera has frames
        return latest[0], latest[1], None

    def frame(
        self, camera_id: str, styled: bool = False, seq: int | None = None
    ) -> tuple[int, bytes] | None:
        """The served frame (or the frame ``seq`` that ``live`` named, if still kept)."""
        with self._lock:
            camera = self.cameras.get(camera_id)
            if camera is None:
                return None
            if styled:
                return (0, camera.styled) if camera.styled else None
            if self.frames.latest(camera_id) is None:
                return None
            served = self._serve(camera_id, camera)
            if seq is None or seq == served.seq:
                return served.seq, served.jpeg
            jpeg = self.frames.get(camera_id, seq)
        return None if jpeg is None else (seq, _downscale(jpeg))


def _downscale(jpeg: bytes) -> bytes:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return jpeg
    if image.shape[1] > VIEWER_WIDTH:
        scale = VIEWER_WIDTH / image.shape[1]
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return encode_jpeg(image, 75)
    return jpeg  # already small: sent as it came
