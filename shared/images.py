"""Image decoding and encoding with errors that say what is wrong with the input.

Every image that enters the system (API uploads, camera frames on the bus, face chips and context
crops in ``faces/1`` messages, the stylizer, the CLI) is decoded here, and its size is read from
the file's header and checked **before** the decoder runs: a 1 MB PNG can declare 30000x30000
pixels, which the decoder would allocate (2.7 GB as BGR) before noticing anything (a
decompression bomb). Only formats whose header this module parses are decoded at all (JPEG, PNG,
WebP, BMP); anything else OpenCV could read (TIFF, JPEG 2000, OpenEXR, PxM ...) is refused, since
its size would not be known in advance.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from shared.errors import ProcessingError


def max_pixels() -> int:
    """The configured ceiling on one image's width x height (``FACESTREAM_IMAGES__MAX_PIXELS``,
    64 MP by default): larger images are refused from their header, before decoding."""
    from shared.settings import get_settings

    return get_settings().images.max_pixels


def max_frame_pixels() -> int:
    """The ceiling for camera frames on the bus (``FACESTREAM_IMAGES__MAX_FRAME_PIXELS``)."""
    from shared.settings import get_settings

    return get_settings().images.max_frame_pixels


JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
"""Start-of-frame markers (baseline, progressive, lossless, arithmetic ...); C4/C8/CC are not."""


def image_size(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the header alone; ``ProcessingError('corrupt_image')`` when the
    format is not one we decode or the header is damaged. Reads at most a few kilobytes."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ("png", *_png_size(data))
    if data[:3] == b"\xff\xd8\xff":
        return ("jpeg", *_jpeg_size(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("webp", *_webp_size(data))
    if data[:2] == b"BM":
        return ("bmp", *_bmp_size(data))
    raise ProcessingError(
        "corrupt_image", f"{len(data)} bytes in an unsupported format (JPEG, PNG, WebP or BMP)"
    )


def check_size(
    data: bytes, limit: int | None = None, expected: tuple[int, int] | None = None
) -> tuple[int, int]:
    """(width, height) of an encoded image if it may be decoded: at most ``limit`` pixels (None:
    the configured ``max_pixels()``), and exactly ``expected`` (width, height) when given.
    Raises ``ProcessingError`` otherwise."""
    limit = max_pixels() if limit is None else limit
    if not data:
        raise ProcessingError("corrupt_image", "empty image")
    kind, width, height = image_size(data)
    if width <= 0 or height <= 0:
        raise ProcessingError("corrupt_image", f"{kind} header declares {width}x{height} pixels")
    if width * height > limit:
        raise ProcessingError(
            "image_too_large", f"{kind} of {width}x{height} pixels; the limit is {limit} pixels"
        )
    if expected is not None and (width, height) != expected:
        raise ProcessingError(
            "corrupt_image",
            f"{kind} of {width}x{height} pixels, expected {expected[0]}x{expected[1]}",
        )
    return width, height


def decode_image(
    data: bytes, limit: int | None = None, expected: tuple[int, int] | None = None
) -> np.ndarray:
    """BGR uint8 image from encoded bytes, or ``ProcessingError``: ``image_too_large`` when the
    header declares more than ``limit`` pixels (None: ``max_pixels()``), ``corrupt_image`` when
    its size is not ``expected`` (width, height) or it does not decode.
    The size is checked before any pixel is decoded."""
    width, height = check_size(data, limit, expected)
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None:
        raise ProcessingError("corrupt_image", f"{len(data)} bytes that do not decode as an image")
    if (image.shape[1], image.shape[0]) not in ((width, height), (height, width)):  # EXIF rotation
        raise ProcessingError(
            "corrupt_image",
            f"decoded {image.shape[1]}x{image.shape[0]}, the header said {width}x{height}",
        )
    return image


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ProcessingError("encode_failed", "JPEG encoding failed")
    return data.tobytes()


def fit_width(image: np.ndarray, max_width: int | None) -> np.ndarray:
    """``image`` scaled down, aspect kept, to at most ``max_width`` pixels wide (None: as is).

    Shrinking must average away detail finer than the new pixels, or it comes back as false
    stripes (aliasing) that the detector and the liveness cues would read as the scene. Area
    averaging does that, but OpenCV runs it fast only for whole factors (0.9 ms for 1920 -> 960,
    12-18 ms for 1920 -> 1280 on this CPU). So a whole factor goes by area averaging (the last
    rows and columns that fill no block are dropped), and what remains, less than 2x, by a 3x3
    Gaussian (which removes the finest pattern entirely) and bilinear interpolation: 5 ms at
    1080p, where bilinear alone turns one-pixel stripes into coarser ones (tests)."""
    height, width = image.shape[:2]
    if max_width is None or width <= max_width:
        return image
    factor = width // max_width
    if factor >= 2:
        height, width = height // factor, width // factor
        block = image[: height * factor, : width * factor]
        image = cv2.resize(block, (width, height), interpolation=cv2.INTER_AREA)
    if width > max_width:
        size = (max_width, max(1, round(height * max_width / width)))
        image = cv2.resize(cv2.GaussianBlur(image, (3, 3), 0), size, interpolation=cv2.INTER_LINEAR)
    return image


def _damaged(kind: str) -> ProcessingError:
    return ProcessingError("corrupt_image", f"damaged {kind} header")


def _png_size(data: bytes) -> tuple[int, int]:
    """IHDR must be the first chunk (PNG spec 5.6): width and height, big-endian."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise _damaged("PNG")
    return struct.unpack(">II", data[16:24])


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walk the marker segments to the first start-of-frame; its height and width are the image's.
    (A JPEG with height 0, to be defined by a later DNL marker, is refused: size unknown.)"""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise _damaged("JPEG")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers: no length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2:
            raise _damaged("JPEG")
        if marker in JPEG_SOF_MARKERS:
            if i + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            break
        i += 2 + length
    raise _damaged("JPEG")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    raise _damaged("WebP")


def _bmp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise _damaged("BMP")
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
        return width, height
    width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)  # negative height: rows stored top-down


def to_bgr(image: np.ndarray) -> np.ndarray:
    """A contiguous 3-channel uint8 BGR view of a grayscale, BGR or BGRA, 8- or 16-bit image.

    Cameras send BGR, but files give grayscale and 32-bit PNGs (``cv2.IMREAD_UNCHANGED``) and the
    networks all want 3 channels. Transparent pixels are composited over black (their colour is
    undefined); 16-bit images keep their top 8 bits.
    """
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 or uint16 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    if image.shape[2] == 4:
        alpha = image[:, :, 3:4]
        if alpha.min() == 255:
            return np.ascontiguousarray(image[:, :, :3])
        blended = image[:, :, :3].astype(np.uint16) * alpha // 255
        return blended.astype(np.uint8)
    return np.ascontiguousarray(image)
