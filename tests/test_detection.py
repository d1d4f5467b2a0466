"""Face detectors on real photos: counts, landmark geometry, odd inputs, no-face images.

Photo tests need ``FACESTREAM_SHARED_DATA`` (../shared/data by default) and skip without it; the
input-normalisation and pyramid tests run everywhere. Each detector is built once per module.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shared.face.detection import (
    DETECTOR_NAMES,
    DlibHogDetector,
    HaarCascadeDetector,
    MtcnnDetector,
    create_detector,
    mtcnn_scales,
    order_landmarks,
    to_bgr,
)
from shared.face.types import Detection
from tests.conftest import SHARED_DATA

PROBE = SHARED_DATA / "faces" / "people" / "probe"


@pytest.fixture(scope="module")
def mtcnn() -> MtcnnDetector:
    return MtcnnDetector()


@pytest.fixture(scope="module")
def dlib_hog() -> DlibHogDetector:
    return DlibHogDetector()


@pytest.fixture(scope="module")
def haar() -> HaarCascadeDetector:
    return HaarCascadeDetector()


def probe(name: str, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """A probe photo, or a skip when the shared data is absent."""
    path = PROBE / name
    if not path.is_file():
        pytest.skip(f"no probe photo at {path} (set FACESTREAM_SHARED_DATA)")
    return cv2.imread(str(path), flags)


def expected_people() -> dict[str, list[str]]:
    path = PROBE / "EXPECTED.tsv"
    if not path.is_file():
        pytest.skip(f"no {path} (set FACESTREAM_SHARED_DATA)")
    rows = [line.split("\t") for line in path.read_text().splitlines() if line[:1] not in ("#", "")]
    return {name: people.split(",") for name, people in rows}


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def assert_landmarks_sensible(face: Detection) -> None:
    """Inside the box (with a little slack) and in face order: eyes above nose above mouth."""
    points = face.landmarks
    assert points is not None and points.shape == (5, 2) and points.dtype == np.float32
    x, y, w, h = face.box
    slack = 0.1 * max(w, h)
    assert (points[:, 0] >= x - slack).all() and (points[:, 0] <= x + w + slack).all(), points
    assert (points[:, 1] >= y - slack).all() and (points[:, 1] <= y + h + slack).all(), points
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert left_eye[0] < nose[0] < right_eye[0]


# --- everywhere: input normalisation, pyramid, factory --------------------------------------------


def test_to_bgr_normalises_grayscale_bgra_and_16_bit() -> None:
    gray = np.full((4, 5), 100, np.uint8)
    assert to_bgr(gray).shape == (4, 5, 3) and (to_bgr(gray) == 100).all()
    assert to_bgr(gray[:, :, None]).shape == (4, 5, 3)
    bgra = np.dstack([np.full((4, 5, 3), 200, np.uint8), np.full((4, 5), 255, np.uint8)])
    assert (to_bgr(bgra) == 200).all()
    bgra[0, 0, 3] = 0  # a transparent pixel: composited over black
    assert to_bgr(bgra)[0, 0].tolist() == [0, 0, 0] and to_bgr(bgra)[1, 1].tolist() == [200] * 3
    assert (to_bgr(np.full((2, 2, 3), 0xAB00, np.uint16)) == 0xAB).all()
    with pytest.raises(TypeError):
        to_bgr(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError):
        to_bgr(np.zeros((2, 2, 2), np.uint8))


def test_order_landmarks_sorts_pairs_by_image_x() -> None:
    mirrored = [(60, 40), (30, 40), (45, 60), (55, 80), (35, 80)]
    ordered = order_landmarks(np.array(mirrored))
    assert ordered.dtype == np.float32
    assert ordered.tolist() == [[30, 40], [60, 40], [45, 60], [35, 80], [55, 80]]


@pytest.mark.parametrize("min_side", [12, 100, 250, 360, 1080, 1920])
@pytest.mark.parametrize("min_face", [12, 20, 40, 80])
def test_mtcnn_pyramid_starts_at_min_face_and_stops_at_pnet_window(
    min_side: int, min_face: int
) -> None:
    """mtcnn 1.0.0's own pyramid goes below 12 px for min faces over ~24 px and finds nothing."""
    scales = mtcnn_scales(min_side, min_face)
    if min_side < min_face:
        return
    assert scales[0] == pytest.approx(12 / min_face)
    assert min_side * scales[-1] >= 12 > min_side * scales[-1] * 0.709


def test_create_detector_knows_every_name() -> None:
    assert create_detector("haar").name == "haar"
    assert set(DETECTOR_NAMES) >= {"mtcnn", "dlib-hog", "haar"}
    with pytest.raises(ValueError, match="unknown detector"):
        create_detector("retinaface")


def test_images_without_faces_give_nothing(mtcnn: MtcnnDetector, haar: HaarCascadeDetector) -> None:
    gradient = np.tile(np.linspace(0, 255, 640, dtype=np.uint8), (480, 1))
    for detector in (mtcnn, haar):
        assert detector.detect(gradient) == []
        assert detector.detect(np.zeros((8, 8, 3), np.uint8)) == []


# --- real photos ----------------------------------------------------------------------------------


PROBES = [
    "kit_with_rose.jpg",
    "two_people.jpg",
    "obama_and_biden.jpg",
    "obama-480p.jpg",
    "32bit.png",
]


@pytest.mark.data
@pytest.mark.parametrize("name", PROBES)
def test_mtcnn_finds_the_expected_people(mtcnn: MtcnnDetector, name: str) -> None:
    """At least everyone EXPECTED.tsv lists; one extra (a background face) is tolerated."""
    people = expected_people()[name]
    faces = mtcnn.detect(probe(name, cv2.IMREAD_UNCHANGED))
    extras = len(faces) - len(people)
    if extras:
        print(f"{name}: {len(faces)} faces for {len(people)} people listed")
    assert len(people) <= len(faces) <= len(people) + 1
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    for face in faces[: len(people)]:
        assert_landmarks_sensible(face)
        assert face.score > 0.9


@pytest.mark.data
def test_dlib_hog_finds_both_people_with_landmarks(dlib_hog: DlibHogDetector) -> None:
    faces = dlib_hog.detect(probe("kit_with_rose.jpg"))
    assert len(faces) == 2
    for face in faces:
        assert_landmarks_sensible(face)
        assert 0 < face.score < 1


@pytest.mark.data
def test_haar_finds_a_face_without_landmarks(haar: HaarCascadeDetector) -> None:
    faces = haar.detect(probe("obama-480p.jpg"))
    assert faces and all(f.landmarks is None for f in faces)


@pytest.mark.data
def test_mtcnn_graphs_give_the_library_eager_results(mtcnn: MtcnnDetector) -> None:
    """The graph-compiled cascade must be a speed-up only: rows equal to ``MTCNN.detect_faces``."""
    from mtcnn import MTCNN
    from mtcnn.stages import StageONet, StageRNet

    from shared.face.detection import _pnet_stage

    library = MTCNN(stages=[_pnet_stage(), StageRNet, StageONet], device="CPU:0")
    group = cv2.cvtColor(probe("two_people.jpg"), cv2.COLOR_BGR2RGB)
    single = cv2.cvtColor(probe("obama-480p.jpg"), cv2.COLOR_BGR2RGB)
    for batch in ([group], [single, single[:, ::-1].copy()]):
        ours = mtcnn._cascade(batch, 40.0)
        theirs = library.detect_faces(
            batch,
            box_format="xyxy",
            output_type="numpy",
            min_face_size=40.0,
            threshold_pnet=0.6,
            threshold_rnet=0.7,
            threshold_onet=0.8,
        )
        assert len(ours) >= len(batch)
        np.testing.assert_allclose(ours, np.asarray(theirs).reshape(-1, 16), rtol=0, atol=1e-3)


@pytest.mark.data
@pytest.mark.parametrize("layout", ["gray", "bgra", "uint16"])
def test_other_layouts_find_the_same_face(mtcnn: MtcnnDetector, layout: str) -> None:
    bgr = probe("obama-480p.jpg")
    image = {
        "gray": lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        "bgra": lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "uint16": lambda: bgr.astype(np.uint16) * 257,
    }[layout]()
    reference, faces = mtcnn.detect(bgr), mtcnn.detect(image)
    assert len(faces) == len(reference) == 1
    assert iou(faces[0].box, reference[0].box) > 0.8


@pytest.mark.data
def test_huge_image_is_downscaled_and_mapped_back(mtcnn: MtcnnDetector) -> None:
    small = probe("obama-480p.jpg")
    factor = 8000 / small.shape[1]
    huge = cv2.resize(small, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    (reference,), faces = mtcnn.detect(small), mtcnn.detect(huge)
    assert len(faces) == 1
    scaled = tuple(v * factor for v in reference.box)
    assert iou(faces[0].box, scaled) > 0.7
    eye_distance = np.linalg.norm(reference.landmarks[1] - reference.landmarks[0]) * factor
    assert np.abs(faces[0].landmarks - reference.landmarks * factor).max() < 0.15 * eye_distance


@pytest.mark.data
def test_partial_face_at_the_edge_has_a_box_inside_the_image(mtcnn: MtcnnDetector) -> None:
    image = probe("obama_partial_face.jpg")
    face = mtcnn.detect(image)[0]
    x, y, w, h = face.box
    assert x >= 0 and y >= 0 and x + w <= image.shape[1] and y + h <= image.shape[0]


@pytest.mark.data
def test_min_face_px_drops_small_faces(
    mtcnn: MtcnnDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kit_with_rose's face boxes are about 100 and 117 px tall: a 110 px minimum keeps one."""
    image = probe("kit_with_rose.jpg")
    monkeypatch.setattr(mtcnn, "min_face_px", 110)
    faces = mtcnn.detect(image)
    assert len(faces) == 1 and max(faces[0].box[2:]) >= 110


@pytest.mark.data
def test_landscape_photo_has_no_faces(mtcnn: MtcnnDetector) -> None:
    path = SHARED_DATA / "style" / "content" / "golden_gate.jpg"
    if not path.is_file():
        pytest.skip(f"no {path}")
    assert mtcnn.detect(cv2.imread(str(path))) == []


@pytest.mark.data
def test_refine_measures_a_known_face_again_and_loses_a_missing_one(mtcnn: MtcnnDetector) -> None:
    """ONet on an expected box (off by a tenth of the face, as flow leaves it) gives the
    detection's landmarks again; on a box without a face it gives None; order is kept."""
    image = probe("obama-480p.jpg")
    (face,) = mtcnn.detect(image)
    x, y, w, h = face.box
    shifted = (x + 0.1 * w, y - 0.08 * h, w * 1.05, h * 1.05)
    empty = (5.0, 5.0, 60.0, 60.0)  # the top left corner: background
    again, missing = mtcnn.refine(image, [shifted, empty])
    assert missing is None
    assert again is not None and again.score > 0.8
    assert_landmarks_sensible(again)
    eye_distance = np.linalg.norm(face.landmarks[1] - face.landmarks[0])
    assert np.linalg.norm(again.landmarks - face.landmarks, axis=1).mean() < 0.1 * eye_distance
    assert iou(again.box, face.box) > 0.8
    assert mtcnn.refine(image, []) == []


def test_only_mtcnn_refines(haar: HaarCascadeDetector) -> None:
    assert MtcnnDetector.can_refine and not haar.can_refine
    with pytest.raises(NotImplementedError, match="haar"):
        haar.refine(np.zeros((64, 64, 3), np.uint8), [(0.0, 0.0, 10.0, 10.0)])
