"""Topics and the versioned message schemas that travel on them.

Every message carries a ``schema`` header, ``NAME/VERSION``. Frames (raw and styled) are JPEG bytes
with their metadata in headers, so a consumer can route or drop a frame without decoding it; all
other messages are JSON bodies validated by pydantic. A consumer accepts only the versions it knows
and dead-letters the rest (reason ``unsupported_schema``) instead of guessing.
"""

from __future__ import annotations

import time
import uuid
from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.bus.base import Message
from shared.errors import ProcessingError

SCHEMA_HEADER = "schema"


class Topics:
    """Kafka topic names (the in-memory bus uses the same ones)."""

    FRAMES = "facestream.frames"
    FACES = "facestream.faces"
    EMBEDDINGS = "facestream.embeddings"
    LIVENESS = "facestream.liveness"
    EVENTS = "facestream.events"
    STYLED_FRAMES = "facestream.frames.styled"
    DEAD_LETTERS = "facestream.deadletters"

    ALL: ClassVar[tuple[str, ...]] = (
        FRAMES,
        FACES,
        EMBEDDINGS,
        LIVENESS,
        EVENTS,
        STYLED_FRAMES,
        DEAD_LETTERS,
    )


class SchemaError(ProcessingError):
    """A message whose headers or body do not match the schema it must have."""


def require_schema(message: Message, expected: str) -> None:
    """Raise ``SchemaError`` unless the message declares exactly the ``expected`` schema."""
    declared = message.headers.get(SCHEMA_HEADER)
    if declared is None:
        raise SchemaError("missing_header", f"no '{SCHEMA_HEADER}' header")
    if declared != expected:
        raise SchemaError(
            "unsupported_schema", f"got {declared!r}, this consumer reads {expected!r}"
        )


class FrameMeta(BaseModel):
    """Metadata of one camera frame; the message value is the JPEG image. Key: ``camera_id``."""

    SCHEMA: ClassVar[str] = "frame/1"
    model_config = ConfigDict(frozen=True)

    camera_id: str = Field(min_length=1)
    seq: int = Field(ge=0)
    """Index of the frame as captured (dropped frames leave gaps; pacing drops are counted)."""
    capture_ts: float
    """Wall-clock time (Unix seconds) at which the frame was read from the camera."""
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    style: str | None = None
    """Set on styled frames only: the style the frame was rendered in."""

    def to_headers(self, schema: str | None = None) -> dict[str, str]:
        headers = {SCHEMA_HEADER: schema or self.SCHEMA, "content-type": "image/jpeg"}
        for name, value in self.model_dump(exclude_none=True).items():
            headers[name] = repr(value) if isinstance(value, float) else str(value)
        return headers

    @classmethod
    def from_message(cls, message: Message, schema: str | None = None) -> FrameMeta:
        """Validate a frame message's headers; raise ``SchemaError`` with the reason otherwise."""
        require_schema(message, schema or cls.SCHEMA)
        try:
            return cls.model_validate(message.headers)
        except ValidationError as error:
            fields = ", ".join(".".join(map(str, e["loc"])) for e in error.errors())
            raise SchemaError(
                "missing_header", f"invalid or missing frame headers: {fields}"
            ) from None


STYLED_FRAME_SCHEMA = "styled-frame/1"
"""Styled frames reuse ``FrameMeta`` (with ``style`` set) under their own schema name."""


class JsonMessage(BaseModel):
    """Base of JSON messages: a ``SCHEMA`` name, and (de)serialisation that checks it."""

    SCHEMA: ClassVar[str]
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def headers(self) -> dict[str, str]:
        return {SCHEMA_HEADER: self.SCHEMA, "content-type": "application/json"}

    @classmethod
    def from_message(cls: type[M], message: Message) -> M:
        require_schema(message, cls.SCHEMA)
        try:
            return cls.model_validate_json(message.value)
        except ValidationError as error:
            raise SchemaError(
                "malformed_payload", f"{error.error_count()} invalid field(s)"
            ) from None


M = TypeVar("M", bound=JsonMessage)


class Box(BaseModel):
    """Axis-aligned box in pixels of the source frame."""

    x: float
    y: float
    w: float = Field(ge=0)
    h: float = Field(ge=0)


class DetectedFace(BaseModel):
    box: Box
    score: float = Field(ge=0, le=1)
    landmarks: list[tuple[float, float]] = []
    """Facial landmarks in frame pixels (5 points: eyes, nose, mouth corners) where the detector gives them."""
    track_id: int | None = None
    chip_jpeg_b64: str | None = None
    """The aligned face chip, JPEG in base64, for the encoder and the liveness model."""
    chip_kind: str = "dlib150"
    """How the chip was aligned and its size (shared/face/chip_kinds.py): ``dlib150`` for dlib's
    ResNet, ``arcface112`` for SFace. The recognizer refuses chips cut for another encoder.
    Absent in messages from before the choice of encoder, which were all dlib150."""
    context_jpeg_b64: str | None = None
    """The face's surroundings (2.5 box sides, 96x96 grey JPEG in base64) for the liveness model."""
    recapture: list[float] = []
    """The face's recapture cues (shared/liveness/recapture.py: spectrum, sharpness against the
    surround, colour, glare, blockiness) from the full-resolution frame, for the liveness model.
    Empty from detectors older than issue 19."""
    eye_aspect_ratio: float | None = Field(None, ge=0, le=5)
    """Both eyes' mean aspect ratio (shared/liveness/blink.py: dlib's 68 landmarks on the box,
    about 0.3 open, towards 0 closed), for the liveness service's blink check; measured on
    flow-carried boxes too (the pixels are this frame's). Absent unless some camera requires a
    blink, and from detectors older than it."""
    tracked: bool = False
    """True when the detector did not run on this frame and the box and landmarks were carried
    from the last detection by optical flow (services/detector/tracking.py); False when measured."""


class FacesMessage(JsonMessage):
    """Faces found in one frame. Key: ``camera_id``."""

    SCHEMA: ClassVar[str] = "faces/1"

    camera_id: str
    seq: int
    capture_ts: float
    frame_width: int
    frame_height: int
    detector: str
    faces: list[DetectedFace]


class FaceEmbedding(BaseModel):
    track_id: int | None
    box: Box
    quality: float
    embedding: list[float] = Field(min_length=1)


class EmbeddingsMessage(JsonMessage):
    """Encodings of the faces of one frame. Key: ``camera_id``."""

    SCHEMA: ClassVar[str] = "embeddings/1"

    camera_id: str
    seq: int
    capture_ts: float
    model: str
    faces: list[FaceEmbedding]


class LivenessVerdict(JsonMessage):
    """Liveness of one track after its latest window. Key: ``camera_id``.

    ``score`` is the mean P(live) of the track's windows so far, ``live`` whether it reaches the
    service's threshold; one verdict per window evaluated (every ``hop`` frames of the track).
    """

    SCHEMA: ClassVar[str] = "liveness/1"

    camera_id: str
    track_id: int
    live: bool
    score: float
    window_frames: int
    model: str
    ts: float


class RecognitionEvent(JsonMessage):
    """What happened on a track: emitted per track state change, never per frame. Key: ``camera_id``."""

    SCHEMA: ClassVar[str] = "event/1"

    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    type: Literal["started", "identified", "unknown", "spoof", "ended"]
    camera_id: str
    track_id: int
    person_id: str | None = None
    person_name: str | None = None
    distance: float | None = None
    threshold: float | None = None
    confidence: float | None = None
    box: Box | None = None
    first_seen_ts: float
    last_seen_ts: float
    frames: int = 0
    ts: float = Field(default_factory=time.time)


class RecognitionEventV2(RecognitionEvent):
    """``event/2``: event/1 plus ``withdrawn``, which takes back a name already given.

    A track named ``identified`` can later be judged an attack (the liveness evidence turns); the
    recognizer then publishes ``withdrawn`` (this schema) with the name taken back and the
    ``withdraws`` id of the ``identified`` event it cancels, followed by the track's ``spoof``
    (event/1). Every other event stays event/1, so a consumer written for event/1 keeps working:
    it skips the event/2 header it does not read (``read_event`` reads both), and still sees the
    ``spoof`` after the name.
    """

    SCHEMA: ClassVar[str] = "event/2"

    type: Literal["started", "identified", "unknown", "spoof", "ended", "withdrawn"]  # type: ignore[assignment]  # event/2 widens event/1
    withdraws: str | None = None
    """``withdrawn`` only: the ``event_id`` of the ``identified`` event taken back."""
    reason: str | None = None
    """``withdrawn`` only: why, e.g. ``spoof`` (the track was judged a presentation attack)."""


class RecognitionEventV3(RecognitionEventV2):
    """``event/3``: event/2 plus ``snapshot``, which gives an event its picture.

    After an ``identified``, ``unknown`` or ``spoof`` event (event/1, unchanged) the recognizer
    publishes a ``snapshot`` event (this schema) with the ``snapshot_id`` of the track's best face
    in the snapshot store (shared/snapshots) and ``refers_to``, the ``event_id`` it illustrates.
    The same pattern as ``withdrawn``: a consumer of event/1 or event/2 keeps working and skips
    the header it does not read; ``read_event`` reads all three. The snapshot itself expires after
    ``FACESTREAM_SNAPSHOTS__RETENTION_H``, so a reference may outlive its images.
    """

    SCHEMA: ClassVar[str] = "event/3"

    type: Literal["started", "identified", "unknown", "spoof", "ended", "withdrawn", "snapshot"]  # type: ignore[assignment]  # event/3 widens event/2
    snapshot_id: str | None = None
    """``snapshot`` only: the id in the snapshot store (``GET /v1/snapshots/{id}/face.jpg``)."""
    refers_to: str | None = None
    """``snapshot`` only: the ``event_id`` of the event the snapshot belongs to."""


class RecognitionEventV4(RecognitionEventV3):
    """``event/4``: event/3 plus ``continued``, which says that a new detector track id now
    counts for this track.

    The recognizer re-associates a new detector track with a track just lost on the same camera
    when their faces match (services/recognizer/reassociation.py); the track's events carry on
    under its first id. A consumer that matches ``faces/1`` boxes to events (the console's live
    view) needs to know that boxes of ``continued_as`` belong to ``track_id``: one ``continued``
    event per new id says so. The same pattern as ``withdrawn`` and ``snapshot``: consumers of
    older schemas skip the header they do not read.
    """

    SCHEMA: ClassVar[str] = "event/4"

    type: Literal[
        "started", "identified", "unknown", "spoof", "ended", "withdrawn", "snapshot", "continued"
    ]  # type: ignore[assignment]  # event/4 widens event/3
    continued_as: int | None = None
    """``continued`` only: the detector's new track id whose faces count for ``track_id``."""


EVENT_SCHEMAS: dict[str, type[RecognitionEvent]] = {
    RecognitionEvent.SCHEMA: RecognitionEvent,
    RecognitionEventV2.SCHEMA: RecognitionEventV2,
    RecognitionEventV3.SCHEMA: RecognitionEventV3,
    RecognitionEventV4.SCHEMA: RecognitionEventV4,
}


def parse_event(value: bytes) -> RecognitionEventV4:
    """An event's JSON of any version without its headers (each version extends the one
    before, so the newest reads them all): for producers reading back what they publish."""
    return RecognitionEventV4.model_validate_json(value)


def read_event(message: Message) -> RecognitionEvent:
    """An event of any schema (event/1 to event/4), by its schema header."""
    schema = EVENT_SCHEMAS.get(message.headers.get(SCHEMA_HEADER, ""), RecognitionEvent)
    return schema.from_message(message)


DEAD_LETTER_SCHEMA = "deadletter/1"
"""Dead letters keep the original key, value and headers and add ``dlq.*`` headers (see worker)."""
