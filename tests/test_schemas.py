"""Message schemas: round trips, and the errors a consumer dead-letters on."""

from __future__ import annotations

import pytest

from shared.bus.base import Message
from shared.schemas import (
    Box,
    DetectedFace,
    FacesMessage,
    FrameMeta,
    RecognitionEvent,
    SchemaError,
    Topics,
)


def frame_message(headers: dict[str, str]) -> Message:
    return Message(Topics.FRAMES, b"jpeg", "cam", headers)


def test_frame_headers_round_trip() -> None:
    meta = FrameMeta(camera_id="cam", seq=7, capture_ts=1700000000.123456, width=640, height=360)
    headers = meta.to_headers()
    assert headers["schema"] == "frame/1"
    assert FrameMeta.from_message(frame_message(headers)) == meta


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_header"),
        ({"schema": "frame/2", "camera_id": "c", "seq": "1"}, "unsupported_schema"),
        ({"schema": "frame/1", "camera_id": "c"}, "missing_header"),
        (
            {
                "schema": "frame/1",
                "camera_id": "c",
                "seq": "x",
                "capture_ts": "1",
                "width": "1",
                "height": "1",
            },
            "missing_header",
        ),
    ],
)
def test_bad_frame_headers_say_why(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(SchemaError) as error:
        FrameMeta.from_message(frame_message(headers))
    assert error.value.reason == reason


def test_json_message_round_trip() -> None:
    faces = FacesMessage(
        camera_id="cam",
        seq=3,
        capture_ts=1.5,
        frame_width=640,
        frame_height=360,
        detector="d",
        faces=[DetectedFace(box=Box(x=1, y=2, w=3, h=4), score=0.9, landmarks=[(1.0, 2.0)])],
    )
    message = Message(Topics.FACES, faces.to_bytes(), "cam", faces.headers())
    assert FacesMessage.from_message(message) == faces


def test_malformed_json_is_a_schema_error() -> None:
    message = Message(Topics.FACES, b"{not json", "cam", {"schema": "faces/1"})
    with pytest.raises(SchemaError) as error:
        FacesMessage.from_message(message)
    assert error.value.reason == "malformed_payload"


def test_json_message_checks_its_schema_name() -> None:
    event = RecognitionEvent(
        type="started", camera_id="c", track_id=1, first_seen_ts=1, last_seen_ts=1
    )
    message = Message(Topics.EVENTS, event.to_bytes(), "c", {"schema": "event/9"})
    with pytest.raises(SchemaError, match="unsupported_schema"):
        RecognitionEvent.from_message(message)
