"""The console's parts without a browser: the bus reader, sessions and CSRF, refusing to start."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
from pydantic import SecretStr

from services.console.hub import LiveHub
from services.console.server import ConsoleRefusedError, console_token
from services.console.session import COOKIE, SessionStore, parse_cookies
from shared.bus.memory import MemoryBus
from shared.schemas import (
    Box,
    DetectedFace,
    FacesMessage,
    FrameMeta,
    RecognitionEvent,
    RecognitionEventV3,
    RecognitionEventV4,
    Topics,
)
from shared.settings import Settings
from tests.helpers import wait_for

TOKEN = "q7Vd0rX2mKp9sLw4ZtB8nYc3"


def publish_event(bus: MemoryBus, event: RecognitionEvent) -> None:
    bus.publisher().publish(Topics.EVENTS, event.to_bytes(), event.camera_id, event.headers())


def event(kind: str, track: int = 1, **fields) -> RecognitionEvent:
    fields = {"camera_id": "door"} | fields
    return RecognitionEvent(
        type=kind, track_id=track, first_seen_ts=1.0, last_seen_ts=2.0, **fields
    )


@pytest.fixture
def hub():
    bus, stop = MemoryBus(), threading.Event()
    hub = LiveHub(bus, retention_s=3600).start(stop)
    yield bus, hub
    stop.set()


def test_events_resume_after_an_id_and_snapshots_attach_to_their_event(hub) -> None:
    bus, live = hub
    named = event("identified", person_id="p1", person_name="ada")
    for e in (event("started"), named, event("ended")):
        publish_event(bus, e)
    snap = RecognitionEventV3(
        type="snapshot", camera_id="door", track_id=1, first_seen_ts=1.0, last_seen_ts=2.0,
        snapshot_id="a" * 32, refers_to=named.event_id,
    )  # fmt: skip
    bus.publisher().publish(Topics.EVENTS, snap.to_bytes(), "door", snap.headers())
    wait_for(lambda: len(live.recent_events()) == 4, 10, "the hub to read the events")
    everything = live.recent_events()
    assert [e["type"] for e in everything] == ["started", "identified", "ended", "snapshot"]
    assert everything[1]["snapshot_id"] == "a" * 32
    after = live.recent_events(named.event_id)
    assert [e["type"] for e in after] == ["ended", "snapshot"]
    assert live.recent_events("unknown-id") == everything  # older than the ring: all retained
    assert live.labels[("door", 1)] == ("identified", "ada")


def test_the_live_view_serves_the_frame_of_its_faces_with_labels(hub) -> None:
    bus, live = hub
    publisher = bus.publisher()
    time.sleep(0.5)  # the live reader starts at the end of the topics
    for seq in (1, 2):
        image = np.full((60, 80, 3), seq * 50, np.uint8)
        meta = FrameMeta(camera_id="door", seq=seq, capture_ts=float(seq), width=80, height=60)
        publisher.publish(
            Topics.FRAMES, cv2.imencode(".jpg", image)[1].tobytes(), "door", meta.to_headers()
        )
    face = DetectedFace(box=Box(x=1, y=2, w=10, h=10), score=0.9, track_id=1)
    faces = FacesMessage(
        camera_id="door", seq=1, capture_ts=1.0, frame_width=80, frame_height=60, detector="t", faces=[face]
    )  # fmt: skip
    publisher.publish(Topics.FACES, faces.to_bytes(), "door", faces.headers())
    publish_event(bus, event("unknown"))
    wait_for(lambda: ("door", 1) in live.labels and live.live("door"), 10, "frames, faces, events")
    time.sleep(0.25)  # past the viewer rate: a fresh pick
    view = live.live("door")
    assert view["seq"] == 1  # the frame the faces were found in, not the newest
    assert view["faces"][0]["label"] == "unknown" and view["frame_width"] == 80
    seq, jpeg = live.frame("door", seq=1)
    assert seq == 1 and cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1).mean() == pytest.approx(
        50, abs=3
    )


def test_the_live_view_moves_with_the_detector_and_names_boxes_when_they_are_decided(
    hub, monkeypatch
) -> None:
    bus, live = hub
    clock = [100.0]
    monkeypatch.setattr(live, "clock", lambda: clock[0])
    publisher = bus.publisher()
    time.sleep(0.5)  # the live reader starts at the end of the topics

    def arrive(seq: int, track: int) -> None:
        clock[0] += 0.25  # past the viewer rate: each view is a fresh pick
        image = cv2.imencode(".jpg", np.full((60, 80, 3), seq * 40, np.uint8))[1].tobytes()
        meta = FrameMeta(camera_id="door", seq=seq, capture_ts=float(seq), width=80, height=60)
        publisher.publish(Topics.FRAMES, image, "door", meta.to_headers())
        face = DetectedFace(box=Box(x=1, y=2, w=10, h=10), score=0.9, track_id=track)
        faces = FacesMessage(
            camera_id="door", seq=seq, capture_ts=float(seq), frame_width=80, frame_height=60,
            detector="t", faces=[face],
        )  # fmt: skip
        publisher.publish(Topics.FACES, faces.to_bytes(), "door", faces.headers())
        wait_for(lambda: getattr(newest(), "seq", None) == seq, 10, f"frame {seq}")

    def newest() -> FacesMessage | None:
        camera = live.cameras.get("door")
        return camera.faces if camera else None

    publish_event(bus, event("identified", track=1, person_id="p1", person_name="ada"))
    wait_for(lambda: ("door", 1) in live.labels, 10, "the label of track 1")
    arrive(1, track=1)
    arrive(2, track=2)
    view = live.live("door")
    assert view["seq"] == 2 and view["faces"][0]["label"] == "…"  # undecided: shown, moving
    publish_event(bus, event("unknown", track=2))
    wait_for(lambda: ("door", 2) in live.labels, 10, "the label of track 2")
    view = live.live("door")  # the same frame within the viewer rate, its box now decided
    assert view["seq"] == 2 and view["faces"][0]["label"] == "unknown"
    arrive(3, track=2)
    assert live.live("door")["seq"] == 3
    # the recognizer re-associated the detector's new track 5 with track 1: it shows track 1's name
    continued = RecognitionEventV4(
        type="continued", camera_id="door", track_id=1, first_seen_ts=1.0, last_seen_ts=2.0,
        continued_as=5,
    )  # fmt: skip
    bus.publisher().publish(Topics.EVENTS, continued.to_bytes(), "door", continued.headers())
    wait_for(lambda: ("door", 5) in live.aliases, 10, "the continued event")
    arrive(4, track=5)
    assert live.live("door")["faces"][0]["label"] == "ada"


def test_a_session_needs_its_csrf_token_for_changes() -> None:
    sessions = SessionStore(TOKEN)
    assert sessions.login("wrong-token-wrong-token") is None
    session_id, session = sessions.login(TOKEN)
    cookies = parse_cookies(f"other=1; {COOKIE}={session_id}".encode())
    assert sessions.allows("GET", cookies, None)
    assert not sessions.allows("POST", cookies, None)
    assert not sessions.allows("DELETE", cookies, "forged")
    assert sessions.allows("DELETE", cookies, session.csrf)
    assert not sessions.allows("GET", {COOKIE: "made-up"}, session.csrf)
    sessions.logout(session_id)
    assert not sessions.allows("GET", cookies, None)


def test_the_console_refuses_to_start_without_a_token_unless_local_only() -> None:
    with pytest.raises(ConsoleRefusedError, match="FACESTREAM_API__TOKEN"):
        console_token(Settings(api={"token": None}, console={"local_only": False}))
    assert console_token(Settings(api={"token": SecretStr(TOKEN)})) == (TOKEN, False)
    token, generated = console_token(Settings(api={"token": None}, console={"local_only": True}))
    assert generated and len(token) >= 40
    with pytest.raises(ConsoleRefusedError, match="loopback"):
        console_token(
            Settings(console={"local_only": True}, api={"token": None, "host": "0.0.0.0"})  # noqa: S104
        )
