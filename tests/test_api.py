"""The HTTP API: token auth, enroll / identify / verify / delete, errors with reasons."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from shared.cameras import FileCameraRegistry
from shared.face.identity import IdentityService
from shared.gallery.file_store import FileGallery

pytestmark = pytest.mark.data
TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module")
def client(face_pipeline, calibration, tmp_path_factory) -> TestClient:
    folder = tmp_path_factory.mktemp("api")
    identity = IdentityService(face_pipeline, FileGallery(folder / "gallery"), calibration)
    app = create_app(identity, FileCameraRegistry(folder / "cameras.json"), TOKEN, 10_000_000)
    return TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})


def upload(path: Path, field: str = "image") -> dict:
    return {field: (path.name, path.read_bytes(), "image/jpeg")}


def test_requests_without_the_token_are_refused(client: TestClient) -> None:
    assert client.get("/v1/people", headers={"Authorization": ""}).status_code == 401
    assert client.get("/v1/people", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/healthz", headers={"Authorization": ""}).status_code == 200


def test_enroll_identify_verify_delete(client: TestClient, people_data: Path) -> None:
    enroll = people_data / "enroll" / "obama" / "obama.jpg"
    reply = client.post("/v1/people", data={"name": "obama"}, files=upload(enroll))
    assert reply.status_code == 201, reply.text
    person = reply.json()["person"]
    assert person["name"] == "obama" and person["encodings"] == 1

    probe = people_data / "probe" / "obama_and_biden.jpg"
    faces = client.post("/v1/identify", files=upload(probe)).json()["faces"]
    assert sorted(f["name"] or "" for f in faces)[-1] == "obama"
    assert all({"x", "y", "w", "h"} <= f["box"].keys() for f in faces)

    claimed = client.post(
        "/v1/verify",
        data={"person_id": person["id"]},
        files=upload(people_data / "probe" / "obama1.jpg"),
    ).json()
    assert claimed["same"] and claimed["distance"] < claimed["threshold"]

    assert client.delete(f"/v1/people/{person['id']}").status_code == 204
    assert client.get("/v1/people").json() == []
    assert client.delete(f"/v1/people/{person['id']}").status_code == 404


def test_bad_photos_get_a_reason(client: TestClient, people_data: Path) -> None:
    reply = client.post(
        "/v1/people", data={"name": "x"}, files={"image": ("x.jpg", b"not an image", "image/jpeg")}
    )
    assert reply.status_code == 422 and reply.json()["reason"] == "corrupt_image"
    two = people_data / "probe" / "two_people.jpg"
    reply = client.post("/v1/people", data={"name": "x"}, files=upload(two))
    assert reply.status_code == 422 and reply.json()["reason"] == "several_faces"
    reply = client.post(
        "/v1/people", data={"name": "../x"}, files=upload(people_data / "probe" / "obama1.jpg")
    )
    assert reply.status_code == 422 and reply.json()["reason"] == "invalid_name"


def test_cameras_can_be_managed(client: TestClient) -> None:
    camera = {"id": "door", "url": "rtsp://admin:secret@127.0.0.1:8554/door", "fps": 10}
    assert client.put("/v1/cameras/door", json=camera).status_code == 200
    [listed] = client.get("/v1/cameras").json()
    assert listed["id"] == "door" and "secret" not in listed["url"]  # credentials masked
    assert client.delete("/v1/cameras/door").status_code == 204


def test_the_openapi_document_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/people", "/v1/identify", "/v1/verify", "/v1/people/{person_id}"} <= paths.keys()


def test_styles_are_listed_and_a_network_stylizes_an_image(
    client: TestClient, shared_data: Path
) -> None:
    assert {"starry_night", "great_wave"} <= set(client.get("/v1/styles").json())
    content = shared_data / "style" / "content" / "golden_gate.jpg"
    reply = client.post("/v1/stylize", data={"network": "great_wave"}, files=upload(content))
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/jpeg"
    import cv2
    import numpy as np

    painted = cv2.imdecode(np.frombuffer(reply.content, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imread(str(content))
    assert painted.shape == original.shape
    assert np.abs(painted.astype(int) - original.astype(int)).mean() > 20  # repainted


def test_gatys_runs_on_request_within_bounds(client: TestClient, shared_data: Path) -> None:
    files = {
        **upload(shared_data / "style" / "content" / "tubingen.jpg"),
        **upload(shared_data / "style" / "paintings" / "the_scream.jpg", "style"),
    }
    reply = client.post("/v1/stylize", data={"size": "64", "iterations": "3"}, files=files)
    assert reply.status_code == 200 and reply.content[:2] == b"\xff\xd8"  # a JPEG
    too_big = client.post("/v1/stylize", data={"size": "4096"}, files=files)
    assert too_big.status_code == 422 and too_big.json()["reason"] == "out_of_range"


def test_stylize_needs_exactly_one_mode(client: TestClient, shared_data: Path) -> None:
    content = upload(shared_data / "style" / "content" / "tubingen.jpg")
    assert client.post("/v1/stylize", files=content).json()["reason"] == "missing_field"
    unknown = client.post("/v1/stylize", data={"network": "monet"}, files=content)
    assert unknown.status_code == 404
    refused = client.post(
        "/v1/stylize", data={"network": "great_wave"}, files=content, headers={"Authorization": ""}
    )
    assert refused.status_code == 401


def test_a_gallery_of_another_encoder_answers_409_naming_the_fix(
    face_pipeline, calibration, people_data: Path, tmp_path: Path
) -> None:
    gallery = FileGallery(tmp_path / "gallery")
    person = gallery.add_person("someone")
    gallery.add_encoding(person.id, [0.1] * 128, b"photo", encoder="other_encoder_v0")
    identity = IdentityService(face_pipeline, gallery, calibration)
    app = create_app(identity, FileCameraRegistry(tmp_path / "cameras.json"), TOKEN, 10_000_000)
    client = TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})
    for reply in (
        client.post("/v1/identify", files=upload(people_data / "probe" / "obama1.jpg")),
        client.post(
            "/v1/people",
            data={"name": "obama"},
            files=upload(people_data / "enroll" / "obama" / "obama.jpg"),
        ),
    ):
        assert reply.status_code == 409, reply.text
        assert reply.json()["reason"] == "encoder_mismatch"
        assert "facestream people reencode" in reply.json()["detail"]
    assert [p.name for p in gallery.people()] == ["someone"]
