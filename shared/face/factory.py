"""Build the face models and the identity service from settings (imports TensorFlow: call lazily)."""

from __future__ import annotations

from shared.face.identity import IdentityService
from shared.face.pipeline import FacePipeline
from shared.face.verification import Calibration, Verifier
from shared.gallery.factory import create_gallery
from shared.settings import Settings


def build_pipeline(settings: Settings) -> FacePipeline:
    from shared.face.detection import create_detector
    from shared.face.encoder import load_encoder

    detector = create_detector(settings.face.detector, min_face_px=settings.face.min_face_px)
    return FacePipeline(detector, load_encoder(settings.face.models_dir), settings.face.min_face_px)


def build_verifier(settings: Settings) -> Verifier:
    """The decision rule chosen by ``face.verifier``; a missing or wrong weights file raises
    WeightsFileError (a ModelFileError) here, at start-up, not on the first request."""
    choice = settings.face.verifier
    if choice == "l2":
        return Calibration.load()
    from shared.similarity.heads import load_head

    return load_head(choice.removeprefix("head-"), settings.face.verifier_weights)


def build_identity(settings: Settings) -> IdentityService:
    verifier = build_verifier(settings)  # first: a bad weights file fails before models load
    return IdentityService(
        build_pipeline(settings),
        create_gallery(settings),
        verifier,
        settings.face.identification_far,
    )
