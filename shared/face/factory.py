"""Build the face models and the identity service from settings (imports TensorFlow: call lazily)."""

from __future__ import annotations

from shared.face.identity import IdentityService
from shared.face.pipeline import FacePipeline
from shared.face.verification import Calibration
from shared.gallery.factory import create_gallery
from shared.settings import Settings


def build_pipeline(settings: Settings) -> FacePipeline:
    from shared.face.detection import create_detector
    from shared.face.encoder import load_encoder

    detector = create_detector(settings.face.detector, min_face_px=settings.face.min_face_px)
    return FacePipeline(detector, load_encoder(settings.face.models_dir), settings.face.min_face_px)


def build_identity(settings: Settings) -> IdentityService:
    return IdentityService(
        build_pipeline(settings),
        create_gallery(settings),
        Calibration.load(),
        settings.face.identification_far,
    )
