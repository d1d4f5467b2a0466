"""The API under hostile requests, against a real uvicorn server (tests/api_server.py).

Each test reproduces an attack from issue 13: a huge upload without a token, a chunked body with
no length, malformed Authorization headers, weak tokens, a burst of model work, a Redis outage.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import httpx
import pytest

from services.api.app import create_app
from services.api.guard import WeakTokenError, check_token_strength, token_matches
from services.ingestor.source import Source, mask_url
from shared.cameras import FileCameraRegistry, RedisCameraRegistry
from shared.face.identity import IdentityService
from shared.gallery.file_store import FileGallery
from shared.gallery.redis_store import RedisGallery
from shared.redis_client import create_redis
from shared.settings import RedisSettings
from tests.api_server import raw_request, serving
from tests.bombs import png_bomb
from tests.helpers import wait_for
from tests.private_redis import PrivateRedis, running


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    yield from running(tmp_path)


TOKEN = "Zq3x-8Jk_fa0PnLw2Ry7TbVc-4hM"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def identity(calibration, face_pipeline, tmp_path_factory) -> IdentityService:
    gallery = FileGallery(tmp_path_factory.mktemp("gallery"))
    return IdentityService(face_pipeline, gallery, calibration)


def app_for(identity, tmp_path: Path, **options):
    cameras = options.pop("cameras", None) or FileCameraRegistry(tmp_path / "cameras.json")
    return create_app(identity, cameras, options.pop("token", TOKEN), 1_000_000, **options)


# --- tokens ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weak",
    [
        "",
        "change-me",
        "a" * 40,
        " " * 32,
        "example-change-me-0123456789",
        "tökén-0123456789-abcdefghij",
        "Zq3x 8Jk_fa0PnLw2Ry7TbVc-4hM",
        "abababababababababababababab",
    ],
)
def test_weak_tokens_are_refused_at_start_up(weak: str, tmp_path: Path) -> None:
    with pytest.raises(WeakTokenError):
        check_token_strength(weak)
    with pytest.raises(WeakTokenError):
        create_app(None, FileCameraRegistry(tmp_path / "c.json"), weak, 1000)  # type: ignore[arg-type]


def test_the_cli_refuses_a_weak_token() -> None:
    import os
    import sys

    env = {**os.environ, "FACESTREAM_API__TOKEN": "change-me"}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "API token" in result.stderr + result.stdout


def test_token_comparison_is_on_bytes() -> None:
    token = TOKEN.encode()
    assert token_matches(b"Bearer " + token, token)
    assert token_matches(b"bearer " + token, token)
    for header in (
        b"",
        b"Bearer",
        b"Bearer ",
        b"Bearer " + b" " * len(token),
        b"Bearer \xff\xfe" + token,
        b"Bearer " + token + b" ",
        b"Basic " + token,
        b"Bearer  " + token,
        None,
    ):
        assert not token_matches(header, token), header


# --- before the body ---------------------------------------------------------------------------

HEAD = (
    b"POST /v1/people HTTP/1.1\r\nHost: api\r\nConnection: close\r\n"
    b"Content-Type: multipart/form-data; boundary=xyz"
)


def status(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1.1 "), reply[:200]
    return int(reply[9:12])


def test_token_and_length_are_checked_before_the_body(identity, tmp_path: Path) -> None:
    with serving(app_for(identity, tmp_path, max_request_bytes=2_000_000)) as url:
        started = time.monotonic()
        reply = raw_request(url, HEAD + b"\r\nContent-Length: 2000000000")  # no body sent at all
        elapsed = time.monotonic() - started
        assert status(reply) == 401 and b"WWW-Authenticate: Bearer" in reply.replace(
            b"www-authenticate", b"WWW-Authenticate"
        ).replace(b"bearer", b"Bearer")
        print(f"2 GB declared, no token: 401 after {elapsed * 1000:.0f} ms, 0 body bytes sent")
        with_token = HEAD + b"\r\nAuthorization: Bearer " + TOKEN.encode()
        reply = raw_request(url, with_token + b"\r\nContent-Length: 2000000000")
        assert status(reply) == 413 and b"too_large" in reply
        assert status(raw_request(url, with_token + b"\r\nContent-Length: 12abc")) == 400


def test_a_chunked_body_is_cut_at_the_limit(identity, tmp_path: Path) -> None:
    limit = 2_000_000
    with serving(app_for(identity, tmp_path, max_request_bytes=limit)) as url:
        head = HEAD + b"\r\nAuthorization: Bearer " + TOKEN.encode()
        head += b"\r\nTransfer-Encoding: chunked"
        part = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        piece = b"x" * 65536
        pieces = [part] + [piece] * (50 * limit // len(piece))
        chunks = (b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        reply = raw_request(url, head, chunks)
        sent = raw_request.sent  # type: ignore[attr-defined]
        print(
            f"chunked upload: {status(reply)} after {sent / 1e6:.1f} MB of {50 * limit / 1e6:.0f}"
        )
        assert status(reply) == 413
        assert sent < 50 * limit / 2  # the server stopped reading long before the end


@pytest.mark.parametrize(
    "header",
    [
        b"Bearer \xff\xfe\xfd",
        "Bearer tökén".encode(),
        b"",
        b"Bearer",
        b"Bearer      ",
        b"   ",
        b"Basic " + TOKEN.encode(),
        b"Bearer " + TOKEN.encode() + b"x",
        b"Bearer " + TOKEN.encode()[:-1],
    ],
)
def test_malformed_authorization_headers_get_401(identity, tmp_path: Path, header: bytes) -> None:
    with serving(app_for(identity, tmp_path)) as url:
        head = b"GET /v1/people HTTP/1.1\r\nHost: api\r\nConnection: close\r\nAuthorization: "
        assert status(raw_request(url, head + header)) == 401


def test_two_authorization_headers_get_401_and_one_good_one_200(identity, tmp_path) -> None:
    with serving(app_for(identity, tmp_path)) as url:
        head = b"GET /v1/people HTTP/1.1\r\nHost: api\r\nConnection: close"
        good = b"\r\nAuthorization: Bearer " + TOKEN.encode()
        assert status(raw_request(url, head + good + b"\r\nAuthorization: Bearer x")) == 401
        assert status(raw_request(url, head + good)) == 200
        assert httpx.get(f"{url}/livez").status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/openapi.json").status_code == 200


# --- bounded model work ------------------------------------------------------------------------


class GatedIdentity:
    """The real IdentityService, with a gate in front of identify so the test controls when the
    model work of the first request finishes."""

    def __init__(self, identity: IdentityService) -> None:
        self._identity = identity
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def identify(self, image: bytes, top_k: int = 1):
        self.entered.release()
        self.gate.wait(60)
        return self._identity.identify(image, top_k)

    def __getattr__(self, name: str):
        return getattr(self._identity, name)


def test_model_work_is_bounded_and_livez_answers_during_it(
    identity, tmp_path: Path, people_data: Path
) -> None:
    gated = GatedIdentity(identity)
    app = app_for(gated, tmp_path, model_workers=1, model_queue=1)
    photo = (people_data / "probe" / "obama1.jpg").read_bytes()

    def identify(url: str) -> httpx.Response:
        files = {"image": ("p.jpg", photo, "image/jpeg")}
        return httpx.post(f"{url}/v1/identify", files=files, headers=AUTH, timeout=120)

    with serving(app) as url, ThreadPoolExecutor(4) as pool:
        first = pool.submit(identify, url)
        assert gated.entered.acquire(timeout=30)  # in model work, held at the gate
        others = [pool.submit(identify, url) for _ in range(3)]
        done, pending = wait(others, timeout=30, return_when="ALL_COMPLETED")
        while len(done) < 2:
            done, pending = wait(others, timeout=30, return_when="FIRST_COMPLETED")
        refused = [f.result() for f in done]
        started = time.monotonic()
        live = httpx.get(f"{url}/livez", timeout=10)
        print(f"/livez during model work: {(time.monotonic() - started) * 1000:.0f} ms")
        assert live.status_code == 200 and not first.done()
        gated.gate.set()
        answered = [first.result(), *(f.result() for f in others)]
    codes = sorted(r.status_code for r in answered)
    assert codes == [200, 200, 503, 503], [r.text for r in answered]
    assert all(r.json()["reason"] == "busy" and r.headers["Retry-After"] for r in refused)
    assert first.result().json()["faces"]


# --- decompression bombs ------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM): a decoded 30000x30000 image would add 2.7 GB to it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_decompression_bomb_upload_is_refused_from_its_header(identity, tmp_path: Path) -> None:
    """Issue 13: an 854 KB PNG of 30000x30000 grew the API from 1.6 to 6.9 GB."""
    bomb = png_bomb(30000, 30000)
    files = {"image": ("bomb.png", bomb, "image/png")}
    with (
        serving(app_for(identity, tmp_path)) as url,
        httpx.Client(base_url=url, headers=AUTH, timeout=60) as http,
    ):
        before = peak_rss_mb()
        replies = [
            http.post("/v1/people", data={"name": "bomb"}, files=files),
            http.post("/v1/identify", files=files),
            http.post("/v1/verify", files={**files, "other": ("b.png", bomb, "image/png")}),
            http.post("/v1/stylize", data={"network": "starry_night"}, files=files),
        ]
        after = peak_rss_mb()
    print(f"API, 4 bomb uploads of {len(bomb)} bytes: peak RSS {before:.0f} -> {after:.0f} MB")
    for reply in replies:
        assert reply.status_code == 422 and reply.json()["reason"] == "image_too_large", reply.text
    assert after - before < 100


def test_the_cli_refuses_a_bomb_before_decoding(tmp_path: Path) -> None:
    import sys

    (tmp_path / "bomb.png").write_bytes(png_bomb(30000, 30000))
    script = (
        "import sys\n"
        "from services.cli import main\n"
        "def peak():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'): return int(line.split()[1]) / 1024\n"
        "import shared.images, shared.settings, numpy\n"
        "before = peak()\n"
        "code = main(['stylize', sys.argv[1], '--network', 'starry_night', '-o', sys.argv[2]])\n"
        "print(code, before, peak())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "bomb.png"), str(tmp_path / "out.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    code, before, after = result.stdout.split()
    print(
        f"CLI stylize of the bomb: exit {code}, peak RSS {float(before):.0f} -> {float(after):.0f} MB"
    )
    assert code == "2" and "30000x30000 pixels" in result.stderr, result.stderr
    assert float(after) - float(before) < 100
    assert not (tmp_path / "out.png").exists()


# --- Redis outage ------------------------------------------------------------------------------


def test_a_redis_outage_is_503_everywhere_and_not_ready(
    calibration, private_redis, face_pipeline, tmp_path: Path, people_data: Path
) -> None:
    settings = RedisSettings(url=f"redis://127.0.0.1:{private_redis.port}/0", socket_timeout_s=1)
    client = create_redis(settings)
    gallery = RedisGallery(client, "outage")
    identity = IdentityService(face_pipeline, gallery, calibration)
    app = app_for(
        identity,
        tmp_path,
        cameras=RedisCameraRegistry(client, "outage"),
        readiness={"redis": client.ping},
    )
    photo = (people_data / "enroll" / "obama" / "obama.jpg").read_bytes()
    files = {"image": ("o.jpg", photo, "image/jpeg")}
    camera = {"id": "door", "url": "rtsp://u:p@cam/x", "fps": 5}
    with serving(app) as url, httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
        assert http.get("/readyz").status_code == 200
        person = http.post("/v1/people", data={"name": "obama"}, files=files).json()["person"]
        assert http.put("/v1/cameras/door", json=camera).status_code == 200

        private_redis.kill()
        calls = {
            "list people": lambda: http.get("/v1/people"),
            "enroll": lambda: http.post("/v1/people", data={"name": "x"}, files=files),
            "delete": lambda: http.delete(f"/v1/people/{person['id']}"),
            "verify": lambda: http.post(
                "/v1/verify", data={"person_id": person["id"]}, files=files
            ),
            "identify": lambda: http.post("/v1/identify", files=files),
            "list cameras": lambda: http.get("/v1/cameras"),
            "put camera": lambda: http.put("/v1/cameras/door", json=camera),
            "delete camera": lambda: http.delete("/v1/cameras/door"),
        }
        codes = {name: call().status_code for name, call in calls.items()}
        assert codes == dict.fromkeys(calls, 503), codes
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"redis": False}
        assert http.get("/livez").status_code == 200  # alive: no restart for a Redis outage

        private_redis.start()
        wait_for(lambda: http.get("/readyz").status_code == 200, 20, "readiness after Redis")
        assert http.get("/v1/cameras").status_code == 200


# --- camera URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("rtsp://admin:secret@10.0.0.5:554/live", ["admin", "secret"]),
        ("rtsp://admin:p@ss:w/rd@cam.local:554/Streaming/Channels/101", ["p@ss", "w/rd", "admin"]),
        ("rtsp://admin:a?b#c@cam/live", ["a?b", "admin"]),
        ("rtsp://cam/live?user=admin&password=p@ss/w:rd", ["p@ss", "w:rd"]),
        ("http://cam/snap.cgi?usr=a&PWD=x%40y&chn=1", ["x%40y"]),
        ("rtsp://u:pw@[::1]:8554/x?token=t0k3n", ["pw", "t0k3n"]),
    ],
)
def test_camera_urls_are_masked_whatever_the_password(url: str, secrets: list[str]) -> None:
    masked = Source(url).display()
    assert masked == mask_url(url)
    for secret in secrets:
        assert secret not in masked, masked
    assert masked.split("://")[0] == url.split("://")[0]


def test_plain_urls_and_files_are_unchanged() -> None:
    assert Source("rtsp://cam.local:554/live").display() == "rtsp://cam.local:554/live"
    assert Source("/videos/a@b.mp4").display() == "/videos/a@b.mp4"
    assert mask_url("rtsp://admin:x@cam.local/live") == "rtsp://***@cam.local/live"
