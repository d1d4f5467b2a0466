"""Presentation attacks synthesised from real frames: printed photos and screen replays.

The liveness model is trained on live sequences from real videos and on attacks made here from
the frames of *other* videos (never from ``liveness/``, which is evaluation-only). What the
synthesis must get right is what tells an attack from a face:

- **It moves as a plane.** A photo or a phone is rigid and flat, so everything on it, face
  included, moves by one homography per frame; a live head rotates in depth, blinks and talks.
  The medium's pose follows a smooth random trajectory (``smooth_trajectory``): rotation, tilt
  (perspective), shift and scale drift slowly, as in a hand, never jump.
- **It was captured twice.** Print: reduced dynamic range and gamma, paper tint, a halftone
  pattern that beats with the camera's sampling (moire), a white paper margin. Screen: boosted
  gamma and a blue cast, the pixel grid (moire again once resampled), a dark bezel, a new frame
  per camera frame (a replayed clip). Both: defocus blur, a moving glare spot, sensor noise and
  double JPEG compression (the medium was a JPEG, the camera encodes again), drawn once per clip
  (``Recapture``): one camera, one focus, one lamp.

Every function takes a ``numpy.random.Generator``: the same seed gives the same attack.
Images are BGR uint8, as OpenCV reads them.

Over 400 lines for a reason: one attack model (a hand holding a print or a screen, its
motion, the display's pixels) whose parts share the geometry and the random state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PRINT = "print"
SCREEN = "screen"


@dataclass(frozen=True)
class Motion:
    """Bounds of the hand's motion over a clip, relative to the frame size."""

    rotation_deg: float = 6.0
    tilt: float = 0.0004
    """Perspective terms of the homography, per pixel of the medium (a 300 px medium's far edge
    appears up to ~6% smaller or larger than its near edge)."""
    shift: float = 0.05
    scale: float = 0.08
    control_points: int = 4
    """Knots of the random path: fewer knots, slower and smoother motion."""


def _smooth_path(frames: int, knots: int, bound: float, rng: np.random.Generator) -> np.ndarray:
    """A random path through ``knots`` values in [-bound, bound], interpolated by a cubic."""
    values = rng.uniform(-bound, bound, knots)
    positions = np.linspace(0, frames - 1, knots)
    t = np.arange(frames)
    if knots < 4:
        return np.interp(t, positions, values)
    coefficients = np.polyfit(positions, values, 3)
    return np.clip(np.polyval(coefficients, t), -bound, bound)


def smooth_trajectory(
    frames: int, medium_size: tuple[int, int], rng: np.random.Generator, motion: Motion = Motion()
) -> np.ndarray:
    """(frames, 3, 3) homographies moving a (width, height) medium about its centre."""
    width, height = medium_size
    paths = {
        name: _smooth_path(frames, motion.control_points, bound, rng)
        for name, bound in {
            "angle": np.deg2rad(motion.rotation_deg),
            "tilt_x": motion.tilt,
            "tilt_y": motion.tilt,
            "shift_x": motion.shift * width,
            "shift_y": motion.shift * height,
            "scale": motion.scale,
        }.items()
    }
    centre = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]], np.float64)
    back = np.linalg.inv(centre)
    homographies = np.empty((frames, 3, 3))
    for i in range(frames):
        cos, sin = np.cos(paths["angle"][i]), np.sin(paths["angle"][i])
        scale = 1.0 + paths["scale"][i]
        similarity = np.array(
            [
                [scale * cos, -scale * sin, paths["shift_x"][i]],
                [scale * sin, scale * cos, paths["shift_y"][i]],
                [0, 0, 1],
            ]
        )
        perspective = np.array([[1, 0, 0], [0, 1, 0], [paths["tilt_x"][i], paths["tilt_y"][i], 1]])
        homographies[i] = back @ similarity @ perspective @ centre
    return homographies


def placement(medium_size: tuple[int, int], frame_size: tuple[int, int], fill: float) -> np.ndarray:
    """The homography that puts the medium, scaled to ``fill`` of the frame height, at its centre."""
    (mw, mh), (fw, fh) = medium_size, frame_size
    scale = fill * fh / mh
    return np.array(
        [[scale, 0, (fw - scale * mw) / 2], [0, scale, (fh - scale * mh) / 2], [0, 0, 1]]
    )


def _halftone(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Multiply by a sinusoidal dot screen at a random pitch and angle (print moire)."""
    height, width = image.shape[:2]
    pitch = rng.uniform(2.2, 4.0)
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    screen = 0.5 * (np.cos(2 * np.pi * u / pitch) + np.cos(2 * np.pi * v / pitch))
    return image * (1.0 - strength * (0.5 - 0.5 * screen))[..., None]


def print_look(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A photo as printed on paper: compressed range, gamma, warm tint, halftone, white margin."""
    image = photo.astype(np.float32) / 255.0
    low, high = rng.uniform(0.04, 0.12), rng.uniform(0.82, 0.95)
    image = low + (high - low) * image ** rng.uniform(0.8, 1.25)
    image *= np.array([rng.uniform(0.85, 0.95), rng.uniform(0.93, 1.0), 1.0], np.float32)  # BGR
    image = _halftone(image, rng, rng.uniform(0.08, 0.2))
    margin = max(2, int(0.06 * min(photo.shape[:2])))
    paper = np.full((photo.shape[0] + 2 * margin, photo.shape[1] + 2 * margin, 3), high)
    paper[margin:-margin, margin:-margin] = image
    return np.clip(paper * 255.0, 0, 255).astype(np.uint8)


def screen_look(frame: np.ndarray, rng: np.random.Generator, pixel_pitch: int = 3) -> np.ndarray:
    """A frame as shown on a phone: bright, blue cast, a visible RGB pixel grid, a bezel (the
    phone's body, black to silver)."""
    image = frame.astype(np.float32) / 255.0
    image = image ** rng.uniform(0.7, 0.9)
    image *= np.array([rng.uniform(1.0, 1.12), 1.0, rng.uniform(0.85, 0.97)], np.float32)  # BGR
    height, width = image.shape[:2]
    grid = np.ones((height, width, 3), np.float32)
    grid[::pixel_pitch, :, :] = rng.uniform(0.6, 0.8)  # dark rows between pixel rows
    grid[:, ::pixel_pitch, :] *= rng.uniform(0.6, 0.8)
    image *= grid
    bezel = max(3, int(0.08 * min(height, width)))
    shade = rng.uniform(0.02, 0.15) if rng.random() < 0.5 else rng.uniform(0.5, 0.9)
    phone = np.full((height + 2 * bezel, width + 2 * bezel, 3), shade, np.float32)
    phone[bezel:-bezel, bezel:-bezel] = image
    return np.clip(phone * 255.0, 0, 255).astype(np.uint8)


def _composite(background: np.ndarray, medium: np.ndarray, homography: np.ndarray) -> np.ndarray:
    height, width = background.shape[:2]
    warped = cv2.warpPerspective(medium, homography, (width, height), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(
        np.ones(medium.shape[:2], np.float32), homography, (width, height), flags=cv2.INTER_LINEAR
    )[..., None]
    return (mask * warped + (1.0 - mask) * background).astype(np.float32)


@dataclass(frozen=True)
class Recapture:
    """How the camera films a medium; drawn once per clip (one camera, one focus, one lamp)."""

    blur_sigma: float
    glare_radius: float
    """Fraction of the shorter frame side; 0: no glare in this clip."""
    glare_gain: float
    noise_sd: float
    jpeg_qualities: tuple[int, int]

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Recapture:
        glare = rng.random() < 0.5  # glare depends on the light: half the clips have it
        return cls(
            blur_sigma=float(rng.uniform(0.3, 1.4)),
            glare_radius=float(rng.uniform(0.05, 0.15)) if glare else 0.0,
            glare_gain=float(rng.uniform(40, 120)),
            noise_sd=float(rng.uniform(1.0, 4.0)),
            jpeg_qualities=(int(rng.integers(60, 90)), int(rng.integers(70, 95))),
        )

    def apply(
        self, frame: np.ndarray, glare_at: tuple[float, float], rng: np.random.Generator
    ) -> np.ndarray:
        """Defocus, the glare spot at ``glare_at`` (fractions of width, height), noise, 2 JPEGs."""
        image = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), self.blur_sigma)
        if self.glare_radius > 0:
            height, width = image.shape[:2]
            y, x = np.mgrid[0:height, 0:width].astype(np.float32)
            cx, cy = glare_at[0] * width, glare_at[1] * height
            radius = self.glare_radius * min(height, width)
            glare = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))
            image += self.glare_gain * glare[..., None]
        image += rng.normal(0, self.noise_sd, image.shape)
        image = np.clip(image, 0, 255).astype(np.uint8)
        for quality in self.jpeg_qualities:
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        return image


def _glare_path(frames: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Where the highlight sits in each frame: drifting slowly across the medium."""
    start, end = rng.uniform(0.2, 0.8, 2), rng.uniform(0.2, 0.8, 2)
    return [tuple(start + (end - start) * t / max(frames - 1, 1)) for t in range(frames)]


def _attack(
    media: Sequence[np.ndarray],
    backgrounds: Sequence[np.ndarray],
    rng: np.random.Generator,
    fill: float,
    motion: Motion,
) -> list[np.ndarray]:
    frames = len(backgrounds)
    medium_size = (media[0].shape[1], media[0].shape[0])
    frame_size = (backgrounds[0].shape[1], backgrounds[0].shape[0])
    base = placement(medium_size, frame_size, fill)
    path = smooth_trajectory(frames, medium_size, rng, motion)
    camera, glare = Recapture.draw(rng), _glare_path(frames, rng)
    return [
        camera.apply(
            _composite(backgrounds[i], media[i % len(media)], base @ path[i]), glare[i], rng
        )
        for i in range(frames)
    ]


def print_attack(
    photo: np.ndarray,
    backgrounds: Sequence[np.ndarray],
    rng: np.random.Generator,
    fill: float | None = None,
    motion: Motion = Motion(),
) -> list[np.ndarray]:
    """One printed ``photo`` held in front of the camera over the ``backgrounds`` frames."""
    fill = fill if fill is not None else rng.uniform(0.55, 0.95)
    return _attack([print_look(photo, rng)], backgrounds, rng, fill, motion)


def selfie_region(
    face_box: Sequence[float], frame_size: tuple[int, int], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A portrait crop of a clip around its face, as a selfie video shows it on a phone.

    The face fills 40-65% of the crop's width, a little above its centre: what an attacker
    replays is a video of the face, not a wide shot in which it is a speck.
    """
    x, y, w, h = face_box
    width = max(w, h) / rng.uniform(0.40, 0.65)
    height = width * rng.uniform(1.3, 1.8)
    left = x + w / 2 - width / 2 + rng.uniform(-0.1, 0.1) * width
    top = y + h / 2 - height * rng.uniform(0.35, 0.5)
    frame_width, frame_height = frame_size
    left = float(np.clip(left, 0, max(0.0, frame_width - width)))
    top = float(np.clip(top, 0, max(0.0, frame_height - height)))
    return (
        int(left),
        int(top),
        int(min(width, frame_width - left)),
        int(min(height, frame_height - top)),
    )


def screen_replay(
    clip: Sequence[np.ndarray],
    backgrounds: Sequence[np.ndarray],
    rng: np.random.Generator,
    fill: float | None = None,
    motion: Motion = Motion(),
    region: tuple[int, int, int, int] | None = None,
) -> list[np.ndarray]:
    """A live ``clip`` replayed on a phone held in front of the camera, frame for frame.

    ``region`` (x, y, w, h): the part of the clip the phone shows (``selfie_region``); the
    whole frame by default.
    """
    if fill is None:  # a portrait phone held close fills more of the frame's height
        fill = rng.uniform(0.75, 1.0) if region is not None else rng.uniform(0.45, 0.85)
    if region is not None:
        x, y, w, h = region
        clip = [frame[y : y + h, x : x + w] for frame in clip]
    screen_width = int(rng.integers(160, 420))
    shown = [
        cv2.resize(f, (screen_width, round(screen_width * f.shape[0] / f.shape[1]))) for f in clip
    ]
    seed = int(rng.integers(2**32))  # one phone: the same look for every frame of the clip
    looks = [screen_look(frame, np.random.default_rng(seed)) for frame in shown]
    return _attack(looks, backgrounds, rng, fill, motion)


# --- Recaptures as real attack videos look (issue 19): the screen filling the view, moire from
# --- a pixel grid, display gamma and colour, glare, shake, video re-compression; prints with
# --- paper texture, bending and a trembling hand.

FULLVIEW = "screen"
"""A monitor or phone filling the view is still a screen attack: the label is the medium."""


@dataclass(frozen=True)
class Display:
    """How a screen shows a frame: gamma, white point, black level, subpixel pitch (camera px)."""

    gamma: float
    white: tuple[float, float, float]
    """BGR gains: a cool (blue) or warm white point."""
    black: float
    pitch: float
    """Size of one screen pixel on the camera's sensor, in camera pixels: near 1-3 the grid
    beats with the sensor's own grid, which is what moire is."""
    angle_deg: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Display:
        cool = rng.random() < 0.6
        white = (
            (rng.uniform(1.0, 1.15), 1.0, rng.uniform(0.82, 0.96))
            if cool
            else (rng.uniform(0.85, 0.97), 1.0, rng.uniform(1.0, 1.08))
        )
        return cls(
            gamma=float(rng.uniform(0.65, 1.1)),
            white=(float(white[0]), float(white[1]), float(white[2])),
            black=float(rng.uniform(0.02, 0.10)),
            pitch=float(rng.uniform(1.1, 3.2)),
            angle_deg=float(rng.uniform(-4, 4)),
        )

    def show(self, frame: np.ndarray) -> np.ndarray:
        """The frame as the screen emits it: tone curve, white point, raised black (float 0-1)."""
        image = (frame.astype(np.float32) / 255.0) ** self.gamma
        image = self.black + (1.0 - self.black) * image * np.array(self.white, np.float32)
        return np.clip(image, 0.0, 1.0)

    def subpixel_grid(self, height: int, width: int) -> np.ndarray:
        """(H, W, 3) gains of an RGB-stripe panel seen at ``pitch`` camera px and a small angle:
        each channel lit in its third of a pixel, dark gaps between rows. Sampled at the camera's
        pixels, it aliases into the low-frequency bands seen on filmed screens (moire)."""
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        angle = np.deg2rad(self.angle_deg)
        u = (x * np.cos(angle) + y * np.sin(angle)) / self.pitch
        v = (-x * np.sin(angle) + y * np.cos(angle)) / self.pitch
        rows = 0.75 + 0.25 * np.cos(2 * np.pi * v)
        grid = np.empty((height, width, 3), np.float32)
        for channel, phase in zip((2, 1, 0), (0.0, 1 / 3, 2 / 3), strict=True):  # R, G, B stripes
            grid[..., channel] = rows * (0.7 + 0.3 * np.cos(2 * np.pi * (u - phase)))
        return grid


def shake_path(frames: int, rng: np.random.Generator, amplitude_px: float) -> np.ndarray:
    """(frames, 2) hand tremor: a small random walk pulled back to the centre (a few px/frame)."""
    position: np.ndarray = np.zeros(2)
    path = []
    for _ in range(frames):
        position = 0.8 * position + rng.normal(0, amplitude_px, 2)
        path.append(position.copy())
    return np.array(path)


def recompress_video(frames: Sequence[np.ndarray], quality: int, fps: float = 15.0):
    """The clip encoded as a video and decoded again, as an attacker's upload or a camera's
    stream is: block DCT with motion compensation (MPEG-4 Part 2, the encoder every OpenCV
    build has; H.264 leaves the same kind of blocks and smearing). ``quality``: 2 (best) to 31."""
    import os
    import tempfile

    height, width = frames[0].shape[:2]
    handle, path = tempfile.mkstemp(suffix=".mp4")
    os.close(handle)
    try:
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, float(quality))
        for frame in frames:
            writer.write(np.ascontiguousarray(frame))
        writer.release()
        capture, decoded = cv2.VideoCapture(path), list[np.ndarray]()
        while len(decoded) < len(frames):
            ok, frame = capture.read()
            if not ok:
                break
            decoded.append(frame)
        capture.release()
    finally:
        os.unlink(path)
    if len(decoded) != len(frames):  # no usable encoder here: double JPEG instead
        return [_jpeg(_jpeg(f, 60), 75) for f in frames]
    return decoded


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def fullview_replay(
    clip: Sequence[np.ndarray],
    rng: np.random.Generator,
    output_size: tuple[int, int] | None = None,
    zoom: float | None = None,
) -> list[np.ndarray]:
    """A live clip replayed on a monitor or phone filmed so close that the screen fills the
    whole view: no bezel, no background, so no frame lines to find. What is left is the
    recapture itself: the display's tone and white point, the subpixel grid aliasing into moire,
    a glare patch, defocus, a shaking hand (the whole screen moves rigidly, face and surround
    alike), sensor noise, and the video's re-compression."""
    height, width = clip[0].shape[:2]
    out_w, out_h = output_size or (width, height)
    display, camera = Display.draw(rng), Recapture.draw(rng)
    zoom = zoom if zoom is not None else float(rng.uniform(1.05, 1.3))  # cropped: no bezel
    angle = float(rng.uniform(-3, 3))
    shake = shake_path(len(clip), rng, float(rng.uniform(0.3, 2.0)))
    glare = _glare_path(len(clip), rng)
    grid = display.subpixel_grid(out_h, out_w)
    frames = []
    for i, frame in enumerate(clip):
        shown = display.show(cv2.resize(frame, (out_w, out_h)))
        centre = (out_w / 2 + shake[i, 0], out_h / 2 + shake[i, 1])
        warp = cv2.getRotationMatrix2D(centre, angle, zoom)
        warp[:, 2] += (out_w / 2 - centre[0], out_h / 2 - centre[1])
        view = cv2.warpAffine(shown, warp, (out_w, out_h), borderMode=cv2.BORDER_REFLECT)
        frames.append(camera.apply(np.clip(view * grid, 0, 1) * 255.0, glare[i], rng))
    return recompress_video(frames, int(rng.integers(4, 16)))


def paper_texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 1) gains of paper: fibres (fine grain) and uneven ink uptake (blotches)."""
    grain = rng.normal(0, 1, (height, width)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), 0.7) * rng.uniform(0.01, 0.03)
    blotch = cv2.resize(
        rng.normal(0, 1, (max(2, height // 24), max(2, width // 24))).astype(np.float32),
        (width, height),
        interpolation=cv2.INTER_CUBIC,
    )
    return (1.0 + grain + blotch * rng.uniform(0.01, 0.04))[..., None]


def bend(image: np.ndarray, curvature: float) -> np.ndarray:
    """A sheet bent about its vertical axis (held at its sides): the middle bulges towards the
    camera and the sides fall away, compressing them and curving horizontal lines."""
    height, width = image.shape[:2]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (x - width / 2) / (width / 2)  # -1 .. 1 across the view
    theta = max(float(curvature), 1e-3) * np.pi / 2  # half the arc the sheet is bent through
    arc = np.arcsin(np.clip(t * np.sin(theta), -1, 1)) / theta  # where on the sheet t shows
    source_x = (width / 2 + arc * width / 2).astype(np.float32)
    source_y = (height / 2 + (y - height / 2) * (1 + curvature * 0.1 * (1 - t**2))).astype(
        np.float32
    )
    return cv2.remap(image, source_x, source_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def textured_print_attack(
    photo: np.ndarray,
    backgrounds: Sequence[np.ndarray],
    rng: np.random.Generator,
    fill: float | None = None,
) -> list[np.ndarray]:
    """A print on real paper, bent, in a trembling hand: ``print_look`` plus paper texture and a
    bend, moved by the smooth hand path plus tremor, and the clip re-compressed as video."""
    printed = print_look(photo, rng).astype(np.float32)
    printed *= paper_texture(printed.shape[0], printed.shape[1], rng)
    printed = bend(np.clip(printed, 0, 255).astype(np.uint8), float(rng.uniform(0.0, 0.35)))
    fill = fill if fill is not None else float(rng.uniform(0.55, 1.1))
    frames = _attack([printed], backgrounds, rng, fill, Motion())
    tremor = shake_path(len(frames), rng, float(rng.uniform(0.2, 1.2)))
    height, width = frames[0].shape[:2]
    shaken = [
        cv2.warpAffine(
            f,
            np.array([[1, 0, dx], [0, 1, dy]], np.float32),
            (width, height),
            borderMode=cv2.BORDER_REFLECT,
        )
        for f, (dx, dy) in zip(frames, tremor, strict=True)
    ]
    return recompress_video(shaken, int(rng.integers(4, 14)))
