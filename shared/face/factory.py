"""Build the face models and the identity service from settings (imports TensorFlow: call lazily)."""

from __future__ import annotations

from shared.face.identity import IdentityService, PhotoVerification
from shared.face.model_files import ModelFileError
from shared.face.pipeline import FacePipeline
from shared.face.verification import Calibration, Verifier, calibration_path
from shared.gallery.factory import create_gallery
from shared.settings import Settings

ENCODER_NAMES = {  # sface-flip: benchmarks only until calibrated (docs/models.md)
    "sface": "sface_2021dec",
    "sface-flip": "sface_2021dec_flip",
    "dlib-resnet": "dlib_face_recognition_resnet_model_v1",
}
"""Setting face.encoder -> the encoder's ``name`` (what calibrations and stored encodings record)."""


CHIP_KINDS = {"sface": "arcface112", "sface-flip": "arcface112", "dlib-resnet": "dlib150"}
"""Setting face.encoder -> the chip kind it takes (the detector cuts it without loading the model)."""


def chip_kind_for(encoder: str) -> str:
    return CHIP_KINDS[encoder]


def load_face_encoder(settings: Settings, **options):
    """The encoder chosen by ``face.encoder`` (SFaceEncoder or FaceEncoder, same interface)."""
    if settings.face.encoder in ("sface", "sface-flip"):
        from shared.face.sface import load_sface

        flip = settings.face.encoder == "sface-flip"
        runtime = settings.face.encoder_runtime
        return load_sface(settings.face.models_dir, flip=flip, runtime=runtime, **options)
    from shared.face.encoder import load_encoder

    return load_encoder(settings.face.models_dir, **options)


def build_pipeline(settings: Settings) -> FacePipeline:
    from shared.face.detection import create_detector

    detector = create_detector(settings.face.detector, min_face_px=settings.face.min_face_px)
    return FacePipeline(detector, load_face_encoder(settings), settings.face.min_face_px)


def build_verifier(settings: Settings) -> Verifier:
    """The decision rule chosen by ``face.verifier``; a missing or wrong weights file raises
    WeightsFileError (a ModelFileError) here, at start-up, not on the first request."""
    choice = settings.face.verifier
    if choice == "l2":
        return load_calibration(settings.face.encoder)
    if settings.face.encoder != "dlib-resnet":
        raise ModelFileError(
            f"the binary heads (FACESTREAM_FACE__VERIFIER={choice}) were trained on dlib-resnet "
            f"encodings and mean nothing on {settings.face.encoder}'s: set "
            "FACESTREAM_FACE__VERIFIER=l2, or FACESTREAM_FACE__ENCODER=dlib-resnet"
        )
    from shared.similarity.heads import load_head

    return load_head(choice.removeprefix("head-"), settings.face.verifier_weights)


def load_calibration(encoder: str) -> Calibration:
    """The l2 calibration of ``encoder`` (setting face.encoder); refuses one fitted for another."""
    path = calibration_path(0, encoder)
    calibration = Calibration.load(path)
    expected = ENCODER_NAMES[encoder]
    if calibration.model not in (expected, "project-mtcnn"):  # project-mtcnn: the old dlib record
        raise ModelFileError(
            f"{path} was fitted for {calibration.model}, not {expected}: run "
            f"facestream calibrate --encoders {encoder}"
        )
    return calibration


def build_photo_verification(settings: Settings, verifier: Verifier) -> PhotoVerification:
    """Jittered 1:1 verification of two photos (``face.verify_jitters``) with its own calibration.

    Only for the l2 verifier (the binary heads were fitted on single encodings) and only for
    dlib-resnet: its jitter calibration was fitted on dlib-resnet's jittered encodings. SFace
    without jitter already beats dlib-resnet with it (docs/models.md), and calibrating SFace's
    would take 50 encodings of every DevTrain image; with SFace, photos get single encodings.
    """
    jitters = settings.face.verify_jitters
    if settings.face.verifier != "l2" or jitters == 0 or settings.face.encoder != "dlib-resnet":
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
