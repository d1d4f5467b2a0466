"""Opening a camera through OpenCV's FFmpeg backend, with timeouts that bound every blocking call."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2

# TCP interleaving: no silent packet loss (smeared frames) on busy links, and it passes NAT.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class SourceError(RuntimeError):
    """A camera that cannot be opened or read; ``reason`` labels metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Source:
    """Where frames come from; ``live`` sources are paced by the wall clock, files by media time."""

    url: str

    @property
    def device_index(self) -> int | None:
        return int(self.url) if self.url.isdigit() else None

    @property
    def is_stream(self) -> bool:
        return self.url.lower().startswith(STREAM_SCHEMES)

    @property
    def is_file(self) -> bool:
        return not self.is_stream and self.device_index is None

    @property
    def live(self) -> bool:
        return not self.is_file

    def display(self) -> str:
        """The URL without credentials, for logs, errors and the API (see ``mask_url``)."""
        return mask_url(self.url) if self.is_stream else self.url


SECRET_QUERY = re.compile(
    r"([?&;](?:password|passwd|pass|pwd|secret|token|access_token|auth|key|apikey|api_key"
    r"|signature|sig|credential|credentials)=)[^&;#]*",
    re.IGNORECASE,
)
HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]+)(?::\d{1,5})?$")


def mask_url(url: str) -> str:
    """``url`` with its user info and secret query values replaced by ``***``, whatever they
    contain. Cameras are configured by hand, so passwords arrive unencoded, with ``@``, ``:``,
    ``/`` or ``?`` in them: the user info ends at the last ``@`` that is followed by a valid
    host[:port], searching from the end; secret query values (``password=``, ``token=`` ...) are
    masked first so an ``@`` inside them cannot be taken for that one. When unsure, more is
    masked, never less."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest = SECRET_QUERY.sub(r"\1***", rest)
    for at in reversed([i for i, c in enumerate(rest) if c == "@"]):
        host = re.split(r"[/?#]", rest[at + 1 :], maxsplit=1)[0]
        if HOST.match(host):
            return f"{scheme}://***@{rest[at + 1 :]}"
    if "@" in rest:  # an @ but no host after any of them: hide all but the scheme
        return f"{scheme}://***"
    return f"{scheme}://{rest}"


def open_capture(source: Source, open_timeout_s: float, read_timeout_s: float) -> cv2.VideoCapture:
    """An opened ``VideoCapture``, or ``SourceError`` saying why not."""
    if source.device_index is not None:
        capture = cv2.VideoCapture(source.device_index)
    else:
        if source.is_file and not Path(source.url).is_file():
            raise SourceError("not_found", f"no such video file: {source.url}")
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(read_timeout_s * 1000),
        ]
        capture = cv2.VideoCapture(source.url, cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        what = "not a readable video" if source.is_file else "unreachable or not a video stream"
        raise SourceError("open_failed", f"cannot open {source.display()}: {what}")
    return capture


def probe(source: Source, open_timeout_s: float = 10.0) -> tuple[int, int, float]:
    """Open the source and read one frame: (width, height, fps). ``SourceError`` if it cannot."""
    capture = open_capture(source, open_timeout_s, open_timeout_s)
    try:
        ok, frame = capture.read()
        if not ok or frame is None:
            raise SourceError("no_frames", f"{source.display()} opened but delivered no frame")
        return frame.shape[1], frame.shape[0], float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        capture.release()
