"""The detector service: frames in, the faces found in each frame out."""

from __future__ import annotations

from collections.abc import Iterable

from services.detector.detectors import FaceDetector
from shared.bus.base import Message
from shared.errors import ProcessingError
from shared.images import decode_image
from shared.schemas import FacesMessage, FrameMeta, Topics
from shared.worker import Outgoing, Worker


class DetectorWorker(Worker):
    name = "detector"
    topics = (Topics.FRAMES,)

    def __init__(self, detector: FaceDetector) -> None:
        self.detector = detector

    def process(self, message: Message) -> Iterable[Outgoing]:
        meta = FrameMeta.from_message(message)
        image = decode_image(message.value)
        if (image.shape[1], image.shape[0]) != (meta.width, meta.height):
            raise ProcessingError(
                "corrupt_image",
                f"decoded {image.shape[1]}x{image.shape[0]}, headers say {meta.width}x{meta.height}",
            )
        faces = FacesMessage(
            camera_id=meta.camera_id,
            seq=meta.seq,
            capture_ts=meta.capture_ts,
            frame_width=meta.width,
            frame_height=meta.height,
            detector=self.detector.name,
            faces=self.detector.detect(image),
        )
        yield Outgoing(Topics.FACES, faces.to_bytes(), meta.camera_id, faces.headers())
