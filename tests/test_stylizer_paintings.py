"""Uploaded paintings as camera styles: the store, the stylizer switching at run time over the bus,
the API and the CLI, and clear errors for bad uploads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.stylizer.styles import PaintingStyle, StyleLoader
from services.stylizer.worker import StylizerWorker
from shared.bus.base import Message
from shared.cameras import CameraSpec, FileCameraRegistry
from shared.errors import ProcessingError
from shared.images import decode_image, encode_jpeg
from shared.schemas import FrameMeta, Topics
from shared.style.arbitrary import ArbitraryStylizer
from shared.style.fast import StyleNetwork
from shared.style.paintings import FolderPaintingStore, PaintingError, check_painting
from shared.worker import WorkerRunner
from tests.bombs import png_bomb

pytestmark = pytest.mark.data
LIMIT = 4_000_000
WORK_SIDE = 128  # small: these tests check behaviour, bench.style measures the real size


@pytest.fixture(scope="module")
def arbitrary() -> ArbitraryStylizer:
    return ArbitraryStylizer(work_side=WORK_SIDE)


@pytest.fixture
def paintings(tmp_path: Path) -> FolderPaintingStore:
    return FolderPaintingStore(tmp_path / "paintings")


@pytest.fixture
def painting_files(shared_data: Path) -> dict[str, bytes]:
    folder = shared_data / "style" / "paintings"
    return {name: (folder / f"{name}.jpg").read_bytes() for name in ("the_scream", "shipwreck")}


def frame(camera: str, seq: int, captured: float, size: tuple[int, int] = (96, 64)) -> Message:
    width, height = size
    pixels = np.random.default_rng(seq).integers(0, 256, (height, width, 3), dtype=np.uint8)
    meta = FrameMeta(camera_id=camera, seq=seq, capture_ts=captured, width=width, height=height)
    return Message(Topics.FRAMES, encode_jpeg(pixels), camera, meta.to_headers())


def loader_of(paintings, arbitrary) -> StyleLoader:
    return StyleLoader(Path("shared/style/networks"), paintings, LIMIT, arbitrary=lambda: arbitrary)


def test_a_painting_is_stored_once_under_its_content_hash(
    paintings: FolderPaintingStore, painting_files: dict[str, bytes]
) -> None:
    style = paintings.add(painting_files["the_scream"], LIMIT)
    assert style.startswith("painting:") and len(style) == len("painting:") + 16
    assert paintings.add(painting_files["the_scream"], LIMIT) == style
    assert paintings.add(painting_files["shipwreck"], LIMIT) != style
    assert paintings.get(style) == painting_files["the_scream"]
    assert paintings.exists(style) and not paintings.exists("painting:0123456789abcdef")
    with pytest.raises(PaintingError, match="no painting"):
        paintings.get("painting:0123456789abcdef")
    with pytest.raises(PaintingError, match="not a painting style"):
        paintings.get("painting:../../etc/passwd")
    (paintings.folder / style.split(":")[1]).write_bytes(painting_files["shipwreck"])
    with pytest.raises(PaintingError, match="do not match"):
        paintings.get(style)


def test_bad_uploads_get_a_clear_reason() -> None:
    def reason(data: bytes) -> str:
        with pytest.raises(ProcessingError) as caught:
            check_painting(data, LIMIT)
        return caught.value.reason

    assert reason(b"%PDF-1.4 not an image at all") == "corrupt_image"
    assert reason(b"\xff\xd8\xff\xe0 a truncated jpeg") == "corrupt_image"
    assert reason(png_bomb(30000, 30000)) == "image_too_large"  # refused from the header
    assert reason(encode_jpeg(np.zeros((20, 300, 3), np.uint8))) == "image_too_small"


def test_a_camera_switches_to_an_uploaded_painting_at_run_time(
    tmp_path: Path, paintings: FolderPaintingStore, painting_files: dict[str, bytes], arbitrary
) -> None:
    registry = FileCameraRegistry(tmp_path / "cameras.json")
    registry.put(CameraSpec(id="door", url="a.mp4", style="starry_night"))
    loader = loader_of(paintings, arbitrary)
    now = 1_800_000_000.0
    worker = StylizerWorker(registry, loader, registry_poll_s=0.0, clock=lambda: now)
    assert worker.process_batch([frame("door", 1, now)])[0][0].headers["style"] == "starry_night"

    scream = paintings.add(painting_files["the_scream"], LIMIT)
    registry.put(CameraSpec(id="door", url="a.mp4", style=scream))
    results = worker.process_batch([frame("door", 2, now), frame("door", 3, now)])
    assert [r[0].headers["style"] for r in results] == [scream, scream]
    message = frame("door", 4, now)
    published = worker.process_batch([message])[0][0].value
    painting_rgb = check_painting(painting_files["the_scream"], LIMIT)
    expected = arbitrary.stylize(
        decode_image(message.value)[..., ::-1].copy(), arbitrary.style_vector(painting_rgb)
    )
    assert published == encode_jpeg(np.ascontiguousarray(expected[..., ::-1]))

    shipwreck = paintings.add(painting_files["shipwreck"], LIMIT)
    registry.put(CameraSpec(id="door", url="a.mp4", style=shipwreck))
    assert worker.process_batch([frame("door", 5, now)])[0][0].headers["style"] == shipwreck
    registry.put(CameraSpec(id="door", url="a.mp4", style=scream))
    assert worker.process_batch([frame("door", 6, now)])[0][0].headers["style"] == scream
    assert loader.cache().computed == 2  # one bottleneck per painting, however often switched

    registry.put(CameraSpec(id="door", url="a.mp4", style="painting:0123456789abcdef"))
    assert worker.process_batch([frame("door", 7, now)]) == [[]]  # unknown: left unstyled


def test_the_loader_tells_networks_from_paintings(
    paintings: FolderPaintingStore, painting_files: dict[str, bytes], arbitrary
) -> None:
    loader = loader_of(paintings, arbitrary)
    assert isinstance(loader("great_wave"), StyleNetwork)
    style = paintings.add(painting_files["shipwreck"], LIMIT)
    painted = loader(style)
    assert isinstance(painted, PaintingStyle)
    frames = np.random.default_rng(0).integers(0, 256, (3, 50, 70, 3), dtype=np.uint8)
    assert painted.stylize_batch(frames).shape == (3, 50, 70, 3)


def test_the_stylizer_paints_a_camera_in_an_uploaded_painting_over_the_bus(
    bus, unique: str, tmp_path: Path, paintings, painting_files, arbitrary
) -> None:
    """MemoryBus and Kafka: frames in, the painting's style switched on in the registry while
    the frames flow, frames painted in it out."""
    camera = f"painted-{unique}"
    registry = FileCameraRegistry(tmp_path / "cameras.json")
    registry.put(CameraSpec(id=camera, url="a.mp4"))
    worker = StylizerWorker(registry, loader_of(paintings, arbitrary), registry_poll_s=0.0)
    stop = threading.Event()
    runner = WorkerRunner(worker, bus, stop, batch_size=4, poll_timeout_s=0.05)
    out = bus.subscriber([Topics.STYLED_FRAMES], f"test-{unique}")
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    publisher = bus.publisher()
    style = paintings.add(painting_files["the_scream"], LIMIT)
    received: list[Message] = []
    deadline = time.monotonic() + 120
    seq = 0
    try:
        while time.monotonic() < deadline and len(received) < 3:
            if seq == 5:  # the painting is chosen while the camera streams
                registry.put(CameraSpec(id=camera, url="a.mp4", style=style))
            message = frame(camera, seq, time.time())
            publisher.publish(message.topic, message.value, message.key, message.headers)
            publisher.flush()
            seq += 1
            received += [m for m in out.poll(0.3, 10) if m.key == camera]
    finally:
        stop.set()
        thread.join(30)
    assert len(received) >= 3, "no frames painted in the uploaded painting"
    assert {m.headers["style"] for m in received} == {style}
    # (frames published before the switch may still be painted: a style applies to the frames
    # processed after the registry changed, and over Kafka the consumer may join late)
    assert decode_image(received[0].value).shape == (64, 96, 3)


def test_the_api_takes_a_painting_and_refuses_bad_uploads(
    face_pipeline, calibration, tmp_path: Path, painting_files, shared_data: Path
) -> None:
    from fastapi.testclient import TestClient

    from services.api.app import create_app
    from shared.face.identity import IdentityService
    from shared.gallery.file_store import FileGallery

    token = "test-token-0123456789"
    identity = IdentityService(face_pipeline, FileGallery(tmp_path / "gallery"), calibration)
    store = FolderPaintingStore(tmp_path / "paintings")
    registry = FileCameraRegistry(tmp_path / "cameras.json")
    app = create_app(
        identity, registry, token, 10_000_000, paintings=store, painting_side=WORK_SIDE
    )
    client = TestClient(app, headers={"Authorization": f"Bearer {token}"})

    def upload(data: bytes, field: str = "painting") -> dict:
        return {field: ("p.jpg", data, "image/jpeg")}

    reply = client.post("/v1/paintings", files=upload(painting_files["the_scream"]))
    assert reply.status_code == 201
    style = reply.json()["style"]
    assert store.exists(style)
    for data, reason in (
        (b"GIF89a not something we decode", "corrupt_image"),
        (png_bomb(30000, 30000), "image_too_large"),
        (b"\x00" * 10_000_001, "image_too_large"),
    ):
        refused = client.post("/v1/paintings", files=upload(data))
        assert refused.status_code == 422 and refused.json()["reason"] == reason, reason

    camera = {"id": "door", "url": "a.mp4", "style": style}
    assert client.put("/v1/cameras/door", json=camera).status_code == 200
    assert registry.get("door").style == style
    unknown = {**camera, "style": "painting:0123456789abcdef"}
    assert client.put("/v1/cameras/door", json=unknown).status_code == 404

    content = (shared_data / "style" / "content" / "golden_gate.jpg").read_bytes()
    files = {**upload(content, "image"), **upload(painting_files["shipwreck"])}
    painted = client.post("/v1/stylize", files=files)
    assert painted.status_code == 200 and painted.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(painted.content, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == original.shape
    assert np.abs(image.astype(int) - original).mean() > 20  # repainted
    bad = client.post("/v1/stylize", files={**upload(content, "image"), **upload(b"nope")})
    assert bad.status_code == 422 and bad.json()["reason"] == "corrupt_image"


def test_the_redis_store_is_shared_by_content_hash(redis_settings, painting_files) -> None:
    from shared.redis_client import create_redis
    from shared.style.paintings import RedisPaintingStore

    one = RedisPaintingStore(create_redis(redis_settings), redis_settings.key_prefix)
    other = RedisPaintingStore(create_redis(redis_settings), redis_settings.key_prefix)
    style = one.add(painting_files["shipwreck"], LIMIT)
    assert other.exists(style) and other.get(style) == painting_files["shipwreck"]
    assert not other.exists("painting:0123456789abcdef")


def test_the_cli_uploads_a_painting_styles_a_camera_and_paints_a_file(
    tmp_path: Path, shared_data: Path
) -> None:
    from tests.test_cli import facestream

    painting = shared_data / "style" / "paintings" / "the_scream.jpg"
    added = facestream("paintings", "add", str(painting), tmp_path=tmp_path)
    assert added.returncode == 0, added.stderr
    style = added.stdout.strip()
    assert style.startswith("painting:")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    refused = facestream("paintings", "add", str(bad), tmp_path=tmp_path)
    assert refused.returncode == 2 and "corrupt_image" in refused.stderr
    assert (
        facestream("cameras", "add", "door", "0", "--no-check", tmp_path=tmp_path).returncode == 0
    )
    assert facestream("cameras", "style", "door", style, tmp_path=tmp_path).returncode == 0
    assert f"style={style}" in facestream("cameras", "list", tmp_path=tmp_path).stdout
    unknown = facestream("cameras", "style", "door", "painting:0123456789abcdef", tmp_path=tmp_path)
    assert unknown.returncode == 2 and "paintings add" in unknown.stderr
    out = tmp_path / "painted.png"
    content = shared_data / "style" / "content" / "tubingen.jpg"
    args = ("stylize", str(content), "--painting", str(painting), "-o", str(out))
    result = facestream(*args, tmp_path=tmp_path, timeout=600)  # TensorFlow start, loaded host
    assert result.returncode == 0, result.stderr
    image, original = cv2.imread(str(out)), cv2.imread(str(content))
    assert image.shape == original.shape and np.abs(image.astype(int) - original).mean() > 20
