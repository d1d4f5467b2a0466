"""Decompression bombs, built for the tests: small files that declare huge images.

``png_bomb`` is a real, valid PNG (grey, all zeros, deflate-compressed): 30000x30000 is ~0.9 MB
and decodes to 2.7 GB as BGR. ``jpeg_bomb`` is a real baseline JPEG whose frame header declares
the given size: a decoder allocates the whole image and fills what the data lacks with grey.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from shared.images import encode_jpeg


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int) -> bytes:
    """A valid 8-bit greyscale PNG of zeros, compressed a block of rows at a time (no 900 MB
    buffer in the test either)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    rows = 256
    block = bytes((width + 1) * rows)  # each row: filter byte 0, then zeros
    parts = []
    for start in range(0, height, rows):
        parts.append(compressor.compress(block[: (width + 1) * min(rows, height - start)]))
    parts.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def jpeg_bomb(width: int, height: int) -> bytes:
    """A small real JPEG with its start-of-frame size rewritten to ``width`` x ``height``."""
    data = bytearray(encode_jpeg(np.full((16, 16, 3), 128, np.uint8)))
    i = 2
    while data[i + 1] != 0xC0:
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)
