"""The console's routes, added to the API app: the page, login, live view, events, snapshots.

The page and its static files are public (no data in them); everything else takes the bearer
token or a console session (services/console/session.py), enforced by the API's RequestGuard
before a handler runs. Every response gets a strict Content-Security-Policy (scripts and styles
from this origin only, no inline code), so even a name that slipped into the page as markup could
not run.
"""

# No "from __future__ import annotations": FastAPI evaluates the handlers' annotations.
import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from services.console.hub import VIEWER_FPS, LiveHub, Served
from services.console.metrics import LocalSampler, prometheus_series
from services.console.session import COOKIE, SessionStore
from shared.cameras import CameraRegistry, CameraSpec
from shared.errors import ProcessingError
from shared.images import image_size
from shared.snapshots.base import SnapshotStore

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
SSE_KEEPALIVE_S = 15.0


class Login(BaseModel):
    token: str


class CameraTest(BaseModel):
    url: str


class Console:
    """Everything the console's routes read, built once per process."""

    def __init__(
        self,
        hub: LiveHub,
        sessions: SessionStore,
        *,
        secure_cookie: bool = False,
        prometheus_url: str | None = None,
        grafana_url: str | None = None,
        health: Callable[[], dict] | None = None,
        probe_timeout_s: float = 5.0,
    ) -> None:
        self.hub = hub
        self.sessions = sessions
        self.secure_cookie = secure_cookie
        self.prometheus_url = prometheus_url
        self.grafana_url = grafana_url
        self.health = health
        self.probe_timeout_s = probe_timeout_s
        self.sampler = LocalSampler()

    def start(self, stop: threading.Event) -> "Console":
        self.hub.start(stop)
        if self.prometheus_url is None:
            self.sampler.start(stop)
        return self

    def mount(
        self,
        app: FastAPI,
        auth: list,
        identity,
        cameras: CameraRegistry,
        snapshots: SnapshotStore | None,
        pool,
    ) -> None:
        """Add the console's routes and its security headers to ``app``."""

        @app.middleware("http")
        async def security_headers(request: Request, call_next):
            response = await call_next(request)
            if not request.url.path.startswith("/docs"):  # Swagger UI loads its own scripts
                response.headers["Content-Security-Policy"] = CSP
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
            return response

        app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")

        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

        @app.post("/console/login", include_in_schema=False)
        def login(body: Login) -> JSONResponse:
            opened = self.sessions.login(body.token)
            if opened is None:
                return JSONResponse({"reason": "unauthorized", "detail": "wrong token"}, 401)
            session_id, session = opened
            response = JSONResponse({"csrf": session.csrf})
            response.set_cookie(
                COOKIE,
                session_id,
                max_age=int(self.sessions.lifetime_s),
                httponly=True,
                samesite="strict",
                secure=self.secure_cookie,
                path="/",
            )
            return response

        @app.get("/console/session", dependencies=auth, include_in_schema=False)
        def session(request: Request) -> dict:
            """The CSRF token of the caller's session (a reloaded page asks for it again)."""
            current = self.sessions.get(request.cookies.get(COOKIE))
            return {"csrf": current.csrf if current else None}

        @app.post("/console/logout", dependencies=auth, include_in_schema=False)
        def logout(request: Request) -> JSONResponse:
            self.sessions.logout(request.cookies.get(COOKIE))
            response = JSONResponse({"status": "logged out"})
            response.delete_cookie(COOKIE, path="/")
            return response

        self._events(app, auth)
        self._live(app, auth, cameras, pool)
        self._snapshots(app, auth, identity, snapshots, pool)
        self._system(app, auth, identity)

    def _events(self, app: FastAPI, auth: list) -> None:
        def matcher(camera: str | None, person: str | None, kind: str | None):
            def matches(event: dict) -> bool:
                return (
                    (not camera or event["camera_id"] == camera)
                    and (not person or person in (event.get("person_id"), event.get("person_name")))
                    and (not kind or event["type"] in kind.split(","))
                )

            return matches

        @app.get("/v1/events", dependencies=auth)
        def events(
            camera: str | None = None,
            person: str | None = None,
            type: str | None = None,  # noqa: A002 - the query parameter's name
            limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        ) -> list[dict]:
            """Recent events (newest last), each with its ``snapshot_id`` when it has one."""
            return self.hub.recent_events(None, matcher(camera, person, type))[-limit:]

        @app.get("/v1/events/stream", dependencies=auth)
        async def stream(
            request: Request,
            camera: str | None = None,
            person: str | None = None,
            type: str | None = None,  # noqa: A002
        ) -> StreamingResponse:
            """Server-Sent Events from the events topic; ``Last-Event-ID`` (an event id) resumes
            after that event while it is retained. Snapshot events are sent too (they attach a
            picture to the event named in ``refers_to``)."""
            matches = matcher(camera, person, type)
            last = request.headers.get("last-event-id")
            if last is None:  # a fresh stream starts now, not with the whole history
                recent = self.hub.recent_events()
                last = recent[-1]["event_id"] if recent else None
            seen = -1

            async def poll() -> list[str]:
                nonlocal last, seen
                if self.hub.version == seen:
                    return []
                seen, sent = self.hub.version, []
                for event in self.hub.recent_events(last):
                    last = event["event_id"]
                    if matches(event) or (event["type"] == "snapshot" and not type):
                        payload = json.dumps(event)
                        sent.append(f"id: {last}\nevent: {event['type']}\ndata: {payload}\n\n")
                return sent

            return sse_response(request, 0.25, poll)

    def _live(self, app: FastAPI, auth: list, cameras: CameraRegistry, pool) -> None:
        @app.get("/v1/live", dependencies=auth)
        def live_cameras() -> list[dict]:
            specs = {c.id: c for c in cameras.list()}
            ids = list(dict.fromkeys([*specs, *self.hub.camera_ids()]))
            return [
                {
                    "camera_id": cid,
                    "style": specs[cid].style if cid in specs else None,
                    "fps": specs[cid].fps if cid in specs else None,
                    "registered": cid in specs,
                    "status": self.hub.status(cid),
                }
                for cid in ids
            ]

        @app.get("/v1/live/stream", dependencies=auth)
        async def live_stream(request: Request, camera: str | None = None) -> StreamingResponse:
            """Server-Sent Events: each camera's view (as ``GET /v1/live/{camera}``, plus
            ``camera_id``) whenever its frame or labels change, at most ``VIEWER_FPS`` times a
            second, with the frame itself (``jpeg``, base64) when it is a new one. What the Live
            page reads: one connection per viewer whatever the number of cameras, and nothing
            asked for a frame that did not change."""

            def views() -> list[tuple[str, dict, Served]]:  # in a thread: may downscale a frame
                ids = [camera] if camera else self.hub.camera_ids()
                found = [(cid, self.hub.view(cid)) for cid in ids]
                return [(cid, v[0], v[1]) for cid, v in found if v is not None]

            sent: dict[str, tuple] = {}

            async def poll() -> list[str]:
                changed, found = [], await asyncio.to_thread(views)
                for gone in sent.keys() - {cid for cid, _, _ in found}:
                    del sent[gone]  # bounded by the hub's cameras, however many come and go
                for cid, view, served in found:
                    shown = (view["seq"], view["faces"], view["styled"])
                    if sent.get(cid) == shown:
                        continue
                    payload = view | {"camera_id": cid}
                    if cid not in sent or sent[cid][0] != view["seq"]:
                        payload["jpeg"] = served.jpeg_b64
                    sent[cid] = shown
                    changed.append(f"event: view\ndata: {json.dumps(payload)}\n\n")
                return changed

            return sse_response(request, 1.0 / VIEWER_FPS, poll)

        @app.get("/v1/live/{camera_id}", dependencies=auth)
        def live(camera_id: str) -> dict:
            view = self.hub.live(camera_id)
            if view is None:
                raise HTTPException(404, "no frames from this camera yet")
            return view | {"status": self.hub.status(camera_id)}

        @app.get("/v1/live/{camera_id}/frame.jpg", dependencies=auth)
        def frame(camera_id: str, styled: bool = False, seq: int | None = None) -> Response:
            """The camera's latest frame for viewers (<= 5 a second, downscaled; one per camera
            whatever the number of viewers), or its latest styled frame."""
            found = self.hub.frame(camera_id, styled, seq)
            if found is None:
                raise HTTPException(404, "no frame")
            return Response(
                found[1],
                media_type="image/jpeg",
                headers={"Cache-Control": "no-store", "X-Seq": str(found[0])},
            )

        @app.post("/v1/cameras/test", dependencies=auth)
        async def test_camera(body: CameraTest) -> dict:
            """Open the source as the ingestor would, before the camera is saved."""
            from services.ingestor.source import Source, SourceError, probe

            try:
                CameraSpec(id="probe", url=body.url)
                await asyncio.to_thread(probe, Source(body.url), self.probe_timeout_s)
            except SourceError as error:
                raise ProcessingError("camera_unreachable", str(error)) from None
            except ValueError as error:
                raise ProcessingError("invalid_camera", str(error)) from None
            return {"ok": True, "source": Source(body.url).display()}

    def _snapshots(self, app: FastAPI, auth: list, identity, snapshots, pool) -> None:
        @app.get("/v1/snapshots/{snapshot_id}/{kind}.jpg", dependencies=auth)
        def snapshot_image(snapshot_id: str, kind: str) -> Response:
            if snapshots is None or kind not in ("face", "frame"):
                raise HTTPException(404, "no such snapshot")
            data = snapshots.image(snapshot_id, kind)
            if data is None:
                raise HTTPException(404, "no such snapshot (expired or deleted)")
            return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private"})

        @app.post("/v1/snapshots/{snapshot_id}/enroll", dependencies=auth, status_code=201)
        async def enroll_snapshot(snapshot_id: str, name: Annotated[str, Form()]) -> dict:
            """ "This is ...": enroll the snapshot's face as ``name`` (new or existing person)."""
            face = snapshots.image(snapshot_id, "face") if snapshots else None
            if face is None:
                raise HTTPException(404, "no such snapshot (expired or deleted)")
            try:
                enrolled = await pool.run(identity.enroll, name, face)
            except ValueError as error:
                if isinstance(error, ProcessingError):
                    raise
                raise ProcessingError("invalid_name", str(error)) from None
            snapshots.name(snapshot_id, enrolled.person.id)
            return {"person_id": enrolled.person.id, "name": enrolled.person.name}

        @app.get("/v1/console/people", dependencies=auth)
        def people() -> list[dict]:
            """People with their encoder and a photo to show."""
            out = []
            for person in identity.gallery.people():
                encodings = identity.gallery.encodings(list(person.encoding_ids))
                out.append(
                    {
                        "id": person.id,
                        "name": person.name,
                        "encodings": len(person.encoding_ids),
                        "encoders": sorted({e.encoder for e in encodings}),
                        "photo": person.encoding_ids[0] if person.encoding_ids else None,
                        "snapshots": len(snapshots.of_person(person.id)) if snapshots else 0,
                    }
                )
            return out

        @app.get("/v1/people/{person_id}/photos/{encoding_id}.jpg", dependencies=auth)
        def photo(person_id: str, encoding_id: str) -> Response:
            person = identity.gallery.person(person_id)
            if encoding_id not in person.encoding_ids:
                raise HTTPException(404, "no such photo")
            data = identity.gallery.image(encoding_id)
            try:
                kind = image_size(data)[0]
            except ProcessingError:
                raise HTTPException(404, "the stored photo is not an image") from None
            return Response(data, media_type=f"image/{kind}", headers={"Cache-Control": "private"})

    def _system(self, app: FastAPI, auth: list, identity) -> None:
        @app.get("/v1/system", dependencies=auth)
        def system() -> dict:
            health = self.health() if self.health else {}
            return {
                "health": health,
                "console": {"reading_bus": self.hub.healthy()},
                "people": len(identity.gallery.people()),
                "prometheus": self.prometheus_url,
                "grafana": self.grafana_url,
            }

        @app.get("/v1/system/series", dependencies=auth)
        def series() -> dict:
            """Time series of the key metrics: ``{series: {label: [[ts, value], ...]}}``."""
            if self.prometheus_url:
                try:
                    return {
                        "source": "prometheus",
                        "series": prometheus_series(self.prometheus_url),
                    }
                except (OSError, ValueError, KeyError) as error:
                    return {"source": "prometheus", "error": str(error), "series": {}}
            return {"source": "local", "series": self.sampler.snapshot()}


def sse_response(
    request: Request, period_s: float, poll: Callable[[], Awaitable[list[str]]]
) -> StreamingResponse:
    """A Server-Sent Events response: every ``period_s`` until the client leaves, the messages
    ``poll`` gives; a comment after ``SSE_KEEPALIVE_S`` of silence, because proxies close silent
    connections. Browsers reconnect after 2 s by themselves."""

    async def generate():
        yield "retry: 2000\n\n"
        quiet = 0.0
        while not await request.is_disconnected():
            messages = await poll()
            for message in messages:
                yield message
            quiet = 0.0 if messages else quiet + period_s
            if quiet >= SSE_KEEPALIVE_S:
                quiet = 0.0
                yield ": keepalive\n\n"
            await asyncio.sleep(period_s)

    return StreamingResponse(
        generate(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
