"""Build the face models and the identity service from settings (imports TensorFlow: call lazily)."""

from __future__ import annotations

from shared.face.identity import IdentityService, PhotoVerification
from shared.face.model_files import ModelFileError
from shared.face.pipeline import FacePipeline
from shared.face.verification import Calibration, Verifier, calibration_path
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


def build_photo_verification(settings: Settings, verifier: Verifier) -> PhotoVerification:
    """Jittered 1:1 verification of two photos (``face.verify_jitters``) with its own calibration.

    Only for the l2 verifier: the binary heads were fitted on single encodings.
    """
    jitters = settings.face.verify_jitters
    if settings.face.verifier != "l2" or jitters == 0:
        return PhotoVerification(0, verifier)
    path = calibration_path(jitters)
    if not path.is_file():
        raise ModelFileError(
            f"no calibration for {jitters} jitters at {path}: run "
            f"python -m bench.lfw --calibrate --jitters {jitters}, or set "
            "FACESTREAM_FACE__VERIFY_JITTERS=0"
        )
    return PhotoVerification(jitters, Calibration.load(path))


def build_identity(settings: Settings) -> IdentityService:
    verifier = build_verifier(settings)  # first: a bad weights file fails before models load
    photo_verification = build_photo_verification(settings, verifier)
    return IdentityService(
        build_pipeline(settings),
        create_gallery(settings),
        verifier,
        settings.face.identification_far,
        photo_verification,
    )
