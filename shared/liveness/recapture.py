"""Recapture cues: numbers per face and frame that describe the medium, not the head's motion.

A face shown on a screen or a print and filmed again passes through a second display and a
second camera. The field's hand-made cues for that (measured here leave-one-source-out, see
docs/liveness.md, not assumed to work):

- **frequency**: a screen's pixel grid resampled by the camera aliases into moire, peaks in the
  2-D spectrum of the face; a print's halftone does the same; a second defocus and a video
  re-encode take away fine detail (the high-pass share of the face's energy);
- **sharpness against the surround**: a live head stands in front of its background, a
  recaptured face lies in one plane with whatever is around it on the medium;
- **colour**: a display's gamut and tone curve (saturation, clipped highlights, raised black),
  specular glare on glass (bright, colourless pixels);
- **blockiness**: a replayed video was compressed once more, so 8x8 block edges show;
- **moire at the camera's own resolution**: a screen's pixel grid filmed close up beats with the
  camera's sensor grid into stripes a few camera pixels apart (``monitor_replay_wolfhuo.mp4``
  shows them across the whole face). Any resampling averages them away, so this one cue is
  measured on a patch of the face at the frame's native pixels: how far the sharpest peak of
  its spectrum stands above its neighbours. Skin, hair and eyes give broad spectra; a beat
  between two pixel grids gives a narrow peak.

Every cue is a ratio or a share, so it does not depend on the face's size in pixels or on the
image's brightness. They are computed by the detector from the full-resolution frame around
the face's box (the chip and the context crop the liveness service receives are too small and
re-compressed to keep a screen's grid), ``CUES`` numbers per face.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CUES = (
    "face_highpass",
    "context_highpass",
    "face_vs_context_sharpness",
    "spectrum_peak",
    "spectrum_high_share",
    "saturation",
    "saturated_share",
    "clipped_share",
    "specular_share",
    "chroma_spread",
    "context_dark_share",
    "blockiness",
    "moire",
)
SPECTRUM_SIDE = 64
"""The face is resampled (area averaging) to this side for its spectrum: fixed frequency bands
whatever the face's size."""
MAX_SIDE = 160
"""Face and context regions larger than this are area-averaged down to it first: the cost per
face stays bounded (about a millisecond) on any camera, and the cues compare faces at similar
sampling whatever their size."""
MOIRE_SIDES = (64, 32)
"""Sides of the native-resolution face patch for ``moire``: the largest that fits in the face
(a 64 px patch resolves a beat's peak better; faces under 64 px get 32)."""
_EPS = 1e-6


def _bounded(image: np.ndarray) -> np.ndarray:
    side = max(image.shape[:2])
    if side <= MAX_SIDE:
        return image
    scale = MAX_SIDE / side
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _clip_box(box: Sequence[float], span: float, shape) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the box scaled by ``span`` about its centre, inside the frame."""
    x, y, w, h = box
    side = span * max(w, h, 1.0)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(shape[1], cx + side / 2)), int(min(shape[0], cy + side / 2))
    return x0, y0, max(x1, x0 + 2), max(y1, y0 + 2)


def _highpass(gray: np.ndarray) -> float:
    """log of the Laplacian's variance over the image's: the share of fine detail."""
    g = gray.astype(np.float32)
    return float(np.log((cv2.Laplacian(g, cv2.CV_32F).var() + _EPS) / (g.var() + _EPS)))


def _radius() -> np.ndarray:
    f = np.fft.fftfreq(SPECTRUM_SIDE)
    return np.hypot(*np.meshgrid(f, f)) / 0.5  # 1 at Nyquist


_R = _radius()
_HANN = np.outer(np.hanning(SPECTRUM_SIDE), np.hanning(SPECTRUM_SIDE)).astype(np.float32)


def _spectrum(gray: np.ndarray) -> tuple[float, float]:
    """(peak, high share): the strongest mid/high-frequency peak of the windowed face's log
    spectrum over the band's median (moire), and log power above half Nyquist over power in
    0.1-0.25 Nyquist (fine detail kept)."""
    g = cv2.resize(gray, (SPECTRUM_SIDE, SPECTRUM_SIDE), interpolation=cv2.INTER_AREA)
    g = g.astype(np.float32)
    power = np.abs(np.fft.fft2((g - g.mean()) * _HANN)) ** 2
    log_power = np.log(power + _EPS)
    band = log_power[(_R >= 0.25) & (_R <= 0.9)]
    peak = float(band.max() - np.median(band))
    high = power[_R > 0.5].mean()
    low = power[(_R >= 0.1) & (_R <= 0.25)].mean()
    return peak, float(np.log((high + _EPS) / (low + _EPS)))


def _blockiness(gray: np.ndarray) -> float:
    """log of the mean jump across the frame's 8-pixel grid over the mean jump elsewhere."""
    g = gray.astype(np.float32)
    dx = np.abs(np.diff(g, axis=1))
    dy = np.abs(np.diff(g, axis=0))
    on_x = dx[:, 7::8].mean() if dx.shape[1] > 8 else 0.0
    on_y = dy[7::8, :].mean() if dy.shape[0] > 8 else 0.0
    off = (dx.mean() + dy.mean()) / 2
    return float(np.log((on_x + on_y) / 2 + _EPS) - np.log(off + _EPS))


def _moire_grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    """The patch's window and the band 0.2-0.95 Nyquist (where a beat lies; lower is the face's
    own shape, the corner of the spectrum is noise), in ``fftshift`` order."""
    f = np.fft.fftshift(np.fft.fftfreq(side))
    radius = np.hypot(*np.meshgrid(f, f)) / 0.5
    window = np.outer(np.hanning(side), np.hanning(side)).astype(np.float32)
    return window, (radius >= 0.2) & (radius <= 0.95)


_MOIRE = {side: _moire_grid(side) for side in MOIRE_SIDES}


def moire_peak(frame_bgr: np.ndarray, box: Sequence[float]) -> float:
    """The sharpest peak of the spectrum of a native-resolution patch of the face (centred a
    little below the eyes, kept inside the frame), over the median of its 5x5 neighbourhood in
    the log spectrum. The patch is high-passed first (minus a blur of sigma 2), so the face's
    shading does not leak into the band."""
    x, y, w, h = box
    side = next((s for s in MOIRE_SIDES if min(w, h) >= s), MOIRE_SIDES[-1])
    height, width = frame_bgr.shape[:2]
    if height < side or width < side:
        return 0.0
    x0 = int(np.clip(x + w / 2 - side / 2, 0, width - side))
    y0 = int(np.clip(y + 0.55 * h - side / 2, 0, height - side))
    patch = frame_bgr[y0 : y0 + side, x0 : x0 + side]
    patch = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY).astype(np.float32)
    patch -= cv2.GaussianBlur(patch, (0, 0), 2.0)
    window, band = _MOIRE[side]
    log_power = np.log(np.abs(np.fft.fftshift(np.fft.fft2(patch * window))) ** 2 + _EPS)
    log_power = log_power.astype(np.float32)
    return float((log_power - cv2.medianBlur(log_power, 5))[band].max())


def frame_cues(frame_bgr: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """(len(CUES),) float32: the recapture cues of the face in ``box`` (x, y, w, h) of the frame."""
    fx0, fy0, fx1, fy1 = _clip_box(box, 0.8, frame_bgr.shape)
    cx0, cy0, cx1, cy1 = _clip_box(box, 2.5, frame_bgr.shape)
    face = frame_bgr[fy0:fy1, fx0:fx1]
    context = frame_bgr[cy0:cy1, cx0:cx1]
    # block grid of the whole frame: the face region starting on a multiple of 8
    bx0, by0 = fx0 - fx0 % 8, fy0 - fy0 % 8
    blocks = cv2.cvtColor(frame_bgr[by0:fy1, bx0:fx1][: 8 * 20, : 8 * 20], cv2.COLOR_BGR2GRAY)
    # the ring around the face: the context with the face's box blanked out of the statistics
    ring = np.ones(context.shape[:2], np.uint8)
    ring[fy0 - cy0 : fy1 - cy0, fx0 - cx0 : fx1 - cx0] = 0
    face, context = _bounded(face), _bounded(context)
    ring = cv2.resize(ring, context.shape[1::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    face_gray = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    context_gray = cv2.cvtColor(context, cv2.COLOR_BGR2GRAY)
    face_hp, context_hp = _highpass(face_gray), _highpass(context_gray)
    peak, high = _spectrum(face_gray)
    hsv = cv2.cvtColor(face, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.float32) / 255.0
    ycrcb = cv2.cvtColor(face, cv2.COLOR_BGR2YCrCb).reshape(-1, 3).astype(np.float32)
    saturation, value = hsv[:, 1], hsv[:, 2]
    dark = (context_gray[ring] <= 8).mean() if ring.any() else 0.0
    return np.array(
        [
            face_hp,
            context_hp,
            face_hp - context_hp,
            peak,
            high,
            saturation.mean(),
            (saturation > 0.8).mean(),
            (value >= 250 / 255).mean(),
            ((value > 0.9) & (saturation < 0.15)).mean(),
            np.log(ycrcb[:, 1].std() + ycrcb[:, 2].std() + 1.0),
            dark,
            _blockiness(blocks),
            moire_peak(frame_bgr, box),
        ],
        np.float32,
    )
