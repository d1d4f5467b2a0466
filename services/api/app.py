"""The HTTP API: enroll, verify, identify, delete people; manage cameras; stylize; health.

Every route but ``/healthz`` requires ``Authorization: Bearer <token>``. Errors carry a machine
readable ``reason`` (``no_face``, ``several_faces``, ``corrupt_image`` ...) and a human message.
The OpenAPI document is at ``/openapi.json``, the interactive one at ``/docs``.
"""

# No "from __future__ import annotations" here: FastAPI must evaluate the dependencies' annotations.
import secrets
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from services.ingestor.source import Source
from shared.cameras import CameraRegistry, CameraSpec
from shared.errors import ProcessingError
from shared.face.identity import IdentityService
from shared.gallery.base import EncoderMismatchError, GalleryError, PersonNotFoundError
from shared.images import decode_image, encode_jpeg
from shared.style.catalog import NETWORKS_DIR, available_networks

MAX_GATYS_SIZE = 512
MAX_GATYS_ITERATIONS = 500
"""Gatys runs in the request (about 35 s at 256 px and 200 iterations on 2 cores); the bounds keep
one request from holding a worker for many minutes."""


class PersonOut(BaseModel):
    id: str
    name: str
    encodings: int


class EnrolledOut(BaseModel):
    person: PersonOut
    encoding_id: str
    box: dict[str, float]


class VerdictOut(BaseModel):
    distance: float
    """Squared L2 between the encodings, or 1 - P(same) with a binary-head verifier."""
    threshold: float
    same: bool
    confidence: float


class CandidateOut(BaseModel):
    person_id: str
    name: str
    distance: float
    confidence: float


class FaceOut(BaseModel):
    box: dict[str, float]
    person_id: str | None
    name: str | None
    distance: float | None
    confidence: float | None
    threshold: float
    candidates: list[CandidateOut]


class IdentifyOut(BaseModel):
    faces: list[FaceOut]


BEARER = HTTPBearer(auto_error=False)


class BearerToken:
    """Dependency that accepts only ``Authorization: Bearer <token>`` (constant-time compare)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
    ) -> None:
        if credentials is None or not secrets.compare_digest(credentials.credentials, self.token):
            raise HTTPException(
                401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )


def create_app(
    identity: IdentityService,
    cameras: CameraRegistry,
    token: str,
    max_upload_bytes: int,
    networks_dir: Path = NETWORKS_DIR,
    models_dir: Path | None = None,
) -> FastAPI:
    app = FastAPI(title="facestream", version="1", description=__doc__)
    bearer = HTTPBearer(auto_error=False)

    def authorised(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if credentials is None or not secrets.compare_digest(credentials.credentials, token):
            raise HTTPException(
                401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )

    auth = [Depends(authorised)]

    async def read(upload: UploadFile) -> bytes:
        data = await upload.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise ProcessingError(
                "image_too_large", f"uploads are limited to {max_upload_bytes} bytes"
            )
        return data

    @app.exception_handler(ProcessingError)
    async def bad_input(_request: Request, error: ProcessingError) -> JSONResponse:
        return JSONResponse({"reason": error.reason, "detail": error.detail}, status_code=422)

    @app.exception_handler(PersonNotFoundError)
    async def not_found(_request: Request, error: PersonNotFoundError) -> JSONResponse:
        return JSONResponse({"reason": "person_not_found", "detail": str(error)}, status_code=404)

    @app.exception_handler(EncoderMismatchError)
    async def encoder_mismatch(_request: Request, error: EncoderMismatchError) -> JSONResponse:
        return JSONResponse({"reason": "encoder_mismatch", "detail": str(error)}, status_code=409)

    @app.exception_handler(GalleryError)
    async def unavailable(_request: Request, error: GalleryError) -> JSONResponse:
        return JSONResponse(
            {"reason": "gallery_unavailable", "detail": str(error)}, status_code=503
        )

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/people", dependencies=auth)
    def people() -> list[PersonOut]:
        return [_person(p) for p in identity.gallery.people()]

    @app.post("/v1/people", dependencies=auth, status_code=201)
    async def enroll(
        name: Annotated[str, Form()],
        image: Annotated[UploadFile, File()],
        face_index: Annotated[int | None, Form()] = None,
    ) -> EnrolledOut:
        try:
            enrolled = identity.enroll(name, await read(image), face_index)
        except ValueError as error:
            if isinstance(error, ProcessingError):
                raise
            raise ProcessingError("invalid_name", str(error)) from None
        return EnrolledOut(
            person=_person(enrolled.person),
            encoding_id=enrolled.encoding_id,
            box=asdict(enrolled.box),
        )

    @app.delete("/v1/people/{person_id}", dependencies=auth, status_code=204)
    def delete(person_id: str) -> None:
        if not identity.delete(person_id):
            raise PersonNotFoundError(person_id)

    @app.post("/v1/verify", dependencies=auth)
    async def verify(
        image: Annotated[UploadFile, File()],
        other: Annotated[UploadFile | None, File()] = None,
        person_id: Annotated[str | None, Form()] = None,
    ) -> VerdictOut:
        """1:1 between two photos (``image`` and ``other``), or a photo and a claimed ``person_id``."""
        probe = await read(image)
        if person_id is not None:
            verdict = identity.verify_person(probe, person_id)
        elif other is not None:
            verdict = identity.verify(probe, await read(other))
        else:
            raise ProcessingError("missing_field", "give either 'other' or 'person_id'")
        return VerdictOut(**asdict(verdict))

    @app.post("/v1/identify", dependencies=auth)
    async def identify(
        image: Annotated[UploadFile, File()], top_k: Annotated[int, Form()] = 1
    ) -> IdentifyOut:
        faces = identity.identify(await read(image), top_k=min(max(top_k, 1), 50))
        return IdentifyOut(faces=[FaceOut(**asdict(f)) for f in faces])

    @app.get("/v1/cameras", dependencies=auth)
    def list_cameras() -> list[CameraSpec]:
        """Cameras, with any credentials in their URLs masked."""
        return [c.model_copy(update={"url": Source(c.url).display()}) for c in cameras.list()]

    @app.put("/v1/cameras/{camera_id}", dependencies=auth)
    def put_camera(camera_id: str, camera: CameraSpec) -> CameraSpec:
        if camera.id != camera_id:
            raise ProcessingError("id_mismatch", "the path and body camera ids differ")
        cameras.put(camera)
        return camera

    @app.delete("/v1/cameras/{camera_id}", dependencies=auth, status_code=204)
    def delete_camera(camera_id: str) -> None:
        if not cameras.remove(camera_id):
            raise HTTPException(404, f"no camera {camera_id!r}")

    @lru_cache(maxsize=8)
    def network(name: str):
        from shared.style.fast import load_network

        return load_network(name, networks_dir)

    @app.get("/v1/styles", dependencies=auth)
    def styles() -> list[str]:
        """The trained feed-forward networks a camera or ``/v1/stylize`` can use."""
        return available_networks(networks_dir)

    @app.post(
        "/v1/stylize",
        dependencies=auth,
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    async def stylize(
        image: Annotated[UploadFile, File()],
        network_name: Annotated[str | None, Form(alias="network")] = None,
        style: Annotated[UploadFile | None, File()] = None,
        size: Annotated[int, Form()] = 256,
        iterations: Annotated[int, Form()] = 200,
        seed: Annotated[int, Form()] = 0,
    ) -> Response:
        """Style one image: with ``network`` (a trained network's name, real time), or with a
        ``style`` image by Gatys' optimisation (``size`` px, ``iterations`` Adam steps)."""
        if (network_name is None) == (style is None):
            raise ProcessingError("missing_field", "give either 'network' or a 'style' image")
        content = decode_image(await read(image))[..., ::-1]
        if network_name is not None:
            if network_name not in available_networks(networks_dir):
                raise HTTPException(404, f"no style network {network_name!r}")
            painted = await run_in_threadpool(lambda: network(network_name).stylize(content))
        else:
            if not (32 <= size <= MAX_GATYS_SIZE and 0 <= iterations <= MAX_GATYS_ITERATIONS):
                raise ProcessingError(
                    "out_of_range",
                    f"size must be 32..{MAX_GATYS_SIZE}, iterations 0..{MAX_GATYS_ITERATIONS}",
                )
            from shared.style.gatys import GatysConfig
            from shared.style.gatys import stylize as gatys

            painting = decode_image(await read(style))[..., ::-1]
            config = GatysConfig(size=size, iterations=iterations, seed=seed)
            result = await run_in_threadpool(
                gatys, content, painting, config, models_dir=models_dir
            )
            painted = result.image
        jpeg = encode_jpeg(painted[..., ::-1].copy())
        return Response(jpeg, media_type="image/jpeg")

    return app


def _person(person) -> PersonOut:
    return PersonOut(id=person.id, name=person.name, encodings=len(person.encoding_ids))
