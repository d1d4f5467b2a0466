"""API routes for styles from any painting: upload a painting, paint an image with one.

``POST /v1/paintings`` checks and stores an uploaded painting and answers its style name
(``painting:<id>``, 201), which ``PUT /v1/cameras/{id}`` accepts as a camera's ``style``: the
stylizer service then paints that camera in it. ``POST /v1/stylize`` with a ``painting`` upload
paints one image (app.py). A bad upload gets a 422 with a reason: ``corrupt_image`` (not a JPEG,
PNG, WebP or BMP, or undecodable), ``image_too_large`` (more bytes than the upload limit, or a
header declaring more pixels than ``FACESTREAM_IMAGES__MAX_PIXELS``, refused before decoding),
``image_too_small`` (a side under 32 px).
"""

# No "from __future__ import annotations": FastAPI must evaluate the routes' annotations.
from collections.abc import Awaitable, Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, UploadFile

from shared.images import decode_image, max_frame_pixels, max_pixels
from shared.style.arbitrary import ArbitraryStylizer, StyleVectorCache
from shared.style.paintings import PaintingStore, check_painting, content_hash

Painter = Callable[[bytes, bytes, float], np.ndarray]


def paintings_routes(
    app: FastAPI,
    auth: list,
    read: Callable[[UploadFile], Awaitable[bytes]],
    paintings: PaintingStore,
    models_dir: Path | None,
    painting_side: int,
) -> Painter:
    """Mount ``POST /v1/paintings``; return the function that paints content with a painting."""

    @lru_cache(maxsize=1)
    def vectors() -> StyleVectorCache:
        """The arbitrary-style network, built on the first request that needs it."""
        return StyleVectorCache(ArbitraryStylizer(models_dir, painting_side))

    @app.post("/v1/paintings", dependencies=auth, status_code=201)
    async def upload_painting(painting: Annotated[UploadFile, File()]) -> dict[str, str]:
        """Store a painting; answer ``{"style": "painting:<id>"}`` for cameras to use."""
        data = await read(painting)
        return {"style": paintings.add(data, max_pixels())}

    def paint(content: bytes, painting: bytes, strength: float) -> np.ndarray:
        """RGB uint8 of ``content`` in the painting's style (its bottleneck cached by hash)."""
        painting_rgb = check_painting(painting, max_pixels())
        content_rgb = np.ascontiguousarray(decode_image(content, max_frame_pixels())[..., ::-1])
        cache = vectors()
        vector = cache.vector(content_hash(painting), painting_rgb)
        return cache.stylizer.stylize(content_rgb, vector, strength)

    return paint
