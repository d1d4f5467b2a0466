"""The HTTP API: enroll, verify, identify, delete people; manage cameras; stylize; health.

Every route but ``/livez``, ``/readyz``, ``/healthz`` and the OpenAPI pages requires
``Authorization: Bearer <token>``, checked with the request's size before its body is read
(services/api/guard.py). Errors carry a machine readable ``reason`` (``no_face``,
``several_faces``, ``corrupt_image``, ``image_too_large``, ``busy``, ``gallery_unavailable`` ...)
and a human message. Model work runs in a bounded pool (503 ``busy`` when full); a Redis outage is
a 503, never a 500. The OpenAPI document is at ``/openapi.json``, the interactive one at ``/docs``.
"""

# No "from __future__ import annotations" here: FastAPI must evaluate the dependencies' annotations.
from collections.abc import Callable
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from redis import RedisError

from services.api.guard import (
    ModelPool,
    PoolFullError,
    RequestGuard,
    check_token_strength,
    token_matches,
)
from services.api.paintings import paintings_routes
from services.console.session import COOKIE
from services.ingestor.source import Source
from shared.cameras import CameraRegistry, CameraSpec, RegistryError
from shared.errors import ProcessingError
from shared.face.identity import IdentityService
from shared.gallery.base import EncoderMismatchError, GalleryError, PersonNotFoundError
from shared.images import decode_image, encode_jpeg, max_frame_pixels
from shared.style.catalog import NETWORKS_DIR, Precision, available_networks
from shared.style.paintings import PaintingStore, is_painting

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


PUBLIC_PATHS = ("/livez", "/readyz", "/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect")
"""Routes without a token: probes, and the API's own description (no data in either)."""

ReadinessCheck = Callable[[], bool]

if TYPE_CHECKING:
    from services.console.routes import Console
    from shared.snapshots.base import SnapshotStore


def create_app(
    identity: IdentityService,
    cameras: CameraRegistry,
    token: str,
    max_upload_bytes: int,
    networks_dir: Path = NETWORKS_DIR,
    models_dir: Path | None = None,
    *,
    readiness: dict[str, ReadinessCheck] | None = None,
    max_request_bytes: int | None = None,
    model_workers: int = 2,
    model_queue: int = 4,
    snapshots: "SnapshotStore | None" = None,
    console: "Console | None" = None,
    paintings: PaintingStore | None = None,
    painting_side: int = 384,
    style_precision: Precision = "auto",
) -> FastAPI:
    """The app. ``readiness``: the dependencies ``/readyz`` checks (e.g. Redis ping); a weak
    ``token`` raises ``WeakTokenError`` (guard.check_token_strength) before anything is served.
    ``snapshots``: deleted with their person; ``console``: the web console (services/console),
    whose sessions the guard accepts besides the bearer token."""
    check_token_strength(token)
    app = FastAPI(title="facestream", version="1", description=__doc__)
    app.add_middleware(
        RequestGuard,
        token=token,
        max_body_bytes=max_request_bytes or 2 * max_upload_bytes + 1024 * 1024,
        public_paths=PUBLIC_PATHS + (("/", "/console/login") if console else ()),
        sessions=console.sessions if console else None,
        public_prefixes=("/console/static/",) if console else (),
    )
    pool = ModelPool(model_workers, model_queue)
    if paintings is None:
        from shared.settings import get_settings
        from shared.style.paintings import create_painting_store

        paintings = create_painting_store(get_settings())
    app.router.on_shutdown.append(pool.shutdown)
    bearer = HTTPBearer(auto_error=False)
    token_bytes = token.encode()

    def authorised(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        """Checked by RequestGuard already; again here so that a route can never be mounted
        without it, and so that the OpenAPI document shows the scheme."""
        values = [v for k, v in request.headers.raw if k.lower() == b"authorization"]
        if console is not None and not values and console.sessions.get(request.cookies.get(COOKIE)):
            return  # a console session; the guard checked its CSRF token
        if len(values) != 1 or not token_matches(values[0], token_bytes):
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

    _answer_errors(app)
    _probes(app, readiness or {})

    @app.get("/v1/people", dependencies=auth)
    def people() -> list[PersonOut]:
        return [_person(p) for p in identity.gallery.people()]

    @app.post("/v1/people", dependencies=auth, status_code=201)
    async def enroll(
        name: Annotated[str, Form()],
        image: Annotated[UploadFile, File()],
        face_index: Annotated[int | None, Form()] = None,
    ) -> EnrolledOut:
        enrolled = await pool.run(_enroll, identity, name, await read(image), face_index)
        return EnrolledOut(
            person=_person(enrolled.person),
            encoding_id=enrolled.encoding_id,
            box=asdict(enrolled.box),
        )

    @app.delete("/v1/people/{person_id}", dependencies=auth, status_code=204)
    def delete(person_id: str) -> None:
        if not identity.delete(person_id):
            raise PersonNotFoundError(person_id)
        if snapshots is not None:  # every snapshot named as them goes with them
            snapshots.delete_person(person_id)

    @app.post("/v1/verify", dependencies=auth)
    async def verify(
        image: Annotated[UploadFile, File()],
        other: Annotated[UploadFile | None, File()] = None,
        person_id: Annotated[str | None, Form()] = None,
    ) -> VerdictOut:
        """1:1 between two photos (``image`` and ``other``), or a photo and a claimed ``person_id``."""
        probe = await read(image)
        if person_id is not None:
            verdict = await pool.run(identity.verify_person, probe, person_id)
        elif other is not None:
            verdict = await pool.run(identity.verify, probe, await read(other))
        else:
            raise ProcessingError("missing_field", "give either 'other' or 'person_id'")
        return VerdictOut(**asdict(verdict))

    @app.post("/v1/identify", dependencies=auth)
    async def identify(
        image: Annotated[UploadFile, File()], top_k: Annotated[int, Form()] = 1
    ) -> IdentifyOut:
        faces = await pool.run(identity.identify, await read(image), min(max(top_k, 1), 50))
        return IdentifyOut(faces=[FaceOut(**asdict(f)) for f in faces])

    @app.get("/v1/cameras", dependencies=auth)
    def list_cameras() -> list[CameraSpec]:
        """Cameras, with any credentials in their URLs masked."""
        return [c.model_copy(update={"url": Source(c.url).display()}) for c in cameras.list()]

    @app.put("/v1/cameras/{camera_id}", dependencies=auth)
    def put_camera(camera_id: str, camera: CameraSpec) -> CameraSpec:
        if camera.id != camera_id:
            raise ProcessingError("id_mismatch", "the path and body camera ids differ")
        if is_painting(camera.style) and not paintings.exists(camera.style):
            raise HTTPException(404, f"no painting {camera.style!r}; upload it to /v1/paintings")
        cameras.put(camera)
        return camera

    @app.delete("/v1/cameras/{camera_id}", dependencies=auth, status_code=204)
    def delete_camera(camera_id: str) -> None:
        if not cameras.remove(camera_id):
            raise HTTPException(404, f"no camera {camera_id!r}")

    @lru_cache(maxsize=8)
    def network(name: str):
        from shared.style.fast import load_network

        return load_network(name, networks_dir, style_precision)

    paint_with_painting = paintings_routes(app, auth, read, paintings, models_dir, painting_side)

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
        painting: Annotated[UploadFile | None, File()] = None,
        strength: Annotated[float, Form()] = 1.0,
        size: Annotated[int, Form()] = 256,
        iterations: Annotated[int, Form()] = 200,
        seed: Annotated[int, Form()] = 0,
    ) -> Response:
        """Style one image: with ``network`` (a trained network's name, real time), with a
        ``painting`` (any painting, by the arbitrary-style network; ``strength`` 0..1), or with a
        ``style`` image by Gatys' optimisation (``size`` px, ``iterations`` Adam steps)."""
        if [network_name, style, painting].count(None) != 2:
            raise ProcessingError(
                "missing_field", "give one of 'network', a 'painting' or a 'style' image"
            )
        content_bytes = await read(image)
        if painting is not None:
            painting_bytes = await read(painting)
            painted = await pool.run(paint_with_painting, content_bytes, painting_bytes, strength)
        elif network_name is not None:
            if network_name not in available_networks(networks_dir):
                raise HTTPException(404, f"no style network {network_name!r}")

            def paint():
                return network(network_name).stylize(_rgb(content_bytes))

            painted = await pool.run(paint)
        else:
            if not (32 <= size <= MAX_GATYS_SIZE and 0 <= iterations <= MAX_GATYS_ITERATIONS):
                raise ProcessingError(
                    "out_of_range",
                    f"size must be 32..{MAX_GATYS_SIZE}, iterations 0..{MAX_GATYS_ITERATIONS}",
                )
            from shared.style.gatys import GatysConfig
            from shared.style.gatys import stylize as gatys

            assert style is not None  # checked above: a network or a style image
            style_bytes = await read(style)
            config = GatysConfig(size=size, iterations=iterations, seed=seed)

            def optimise():
                painting = _rgb(style_bytes)
                return gatys(_rgb(content_bytes), painting, config, models_dir=models_dir).image

            painted = await pool.run(optimise)
        jpeg = await pool.run(lambda: encode_jpeg(painted[..., ::-1].copy()))
        return Response(jpeg, media_type="image/jpeg")

    if console is not None:
        console.mount(app, auth, identity, cameras, snapshots, pool)
    return app


def _enroll(identity: IdentityService, name: str, image: bytes, face_index: int | None):
    try:
        return identity.enroll(name, image, face_index)
    except ValueError as error:
        if isinstance(error, ProcessingError):
            raise
        raise ProcessingError("invalid_name", str(error)) from None


def _rgb(data: bytes):
    """RGB pixels of an image to stylize: a network's activations grow with the image, so the
    stylize routes use the camera-frame ceiling (FACESTREAM_IMAGES__MAX_FRAME_PIXELS)."""
    return decode_image(data, max_frame_pixels())[..., ::-1]


def _person(person) -> PersonOut:
    return PersonOut(id=person.id, name=person.name, encodings=len(person.encoding_ids))


def _answer_errors(app: FastAPI) -> None:
    """The library's errors as answers: bad input 422, unknown person 404, another encoder's
    gallery 409, outages and a full model pool 503 (never a 500)."""

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

    @app.exception_handler(RegistryError)
    async def registry_unavailable(_request: Request, error: RegistryError) -> JSONResponse:
        return JSONResponse(
            {"reason": "registry_unavailable", "detail": str(error)}, status_code=503
        )

    @app.exception_handler(RedisError)
    async def redis_unavailable(_request: Request, error: RedisError) -> JSONResponse:
        """Any Redis error a store did not translate: still an outage, never a 500."""
        return JSONResponse(
            {"reason": "store_unavailable", "detail": f"Redis: {error}"}, status_code=503
        )

    @app.exception_handler(PoolFullError)
    async def busy(_request: Request, error: PoolFullError) -> JSONResponse:
        return JSONResponse(
            {"reason": "busy", "detail": str(error)}, status_code=503, headers={"Retry-After": "1"}
        )


def _probes(app: FastAPI, readiness: dict[str, ReadinessCheck]) -> None:
    """``/livez`` (and its alias ``/healthz``) and ``/readyz``, served without a token."""

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        """The process answers: restart it if not. Checks no dependency (an outage of Redis
        must not make Kubernetes restart a healthy API) and runs on the event loop directly."""
        return {"status": "ok"}

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict[str, str]:
        """Alias of ``/livez``, kept for existing probes and dashboards."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Dependencies reachable (Redis ...): 200 to receive traffic, 503 with the failing ones.
        A plain ``def``: the checks block (with the stores' short timeouts), off the event loop."""
        status = {}
        for name, check in readiness.items():
            try:
                status[name] = bool(check())
            except Exception:  # noqa: BLE001 - an unreachable dependency is not ready
                status[name] = False
        return JSONResponse(status, status_code=200 if all(status.values()) else 503)
