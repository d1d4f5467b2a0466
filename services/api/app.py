"""The HTTP API: enroll, verify, identify, delete people; manage cameras; health.

Every route but ``/healthz`` requires ``Authorization: Bearer <token>``. Errors carry a machine
readable ``reason`` (``no_face``, ``several_faces``, ``corrupt_image`` ...) and a human message.
The OpenAPI document is at ``/openapi.json``, the interactive one at ``/docs``.
"""

# No "from __future__ import annotations" here: FastAPI must evaluate the dependencies' annotations.
import secrets
from dataclasses import asdict
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from services.ingestor.source import Source
from shared.cameras import CameraRegistry, CameraSpec
from shared.errors import ProcessingError
from shared.face.identity import IdentityService
from shared.gallery.base import GalleryError, PersonNotFoundError


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
    identity: IdentityService, cameras: CameraRegistry, token: str, max_upload_bytes: int
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

    return app


def _person(person) -> PersonOut:
    return PersonOut(id=person.id, name=person.name, encodings=len(person.encoding_ids))
