#!/usr/bin/python3
"""A real RTSP server for tests and demos: serves a video file as live camera streams.

Runs on Debian's system Python with GStreamer's RTSP server library (gir1.2-gst-rtsp-server-1.0),
which is why it is a standalone script and not part of the facestream package. Each client of a
mount gets its file from the first frame (the video's H.264 is re-payloaded, not re-encoded) at
the file's own frame rate, as a camera would deliver it, and the stream ends with the file.
(infra.sh serves the clip once at ``/cam`` and a long concatenation of it at ``/loop``.)

    rtsp_server.py --mount /cam=VIDEO.mp4 [--mount /loop=LONG.mp4] [--host 127.0.0.1] [--port 8554]
"""

import argparse
import signal

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mount", action="append", required=True, metavar="PATH=FILE", help="serve FILE at PATH"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554)
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    # decodebin + x264enc would cost CPU; demux and re-payload the file's own H.264 instead.
    for mount in args.mount:
        path, video = mount.split("=", 1)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f'( filesrc location="{video}" ! qtdemux name=d d.video_0 ! queue ! h264parse '
            "! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        factory.set_shared(False)
        server.get_mount_points().add_factory(path, factory)
        print(f"serving {video} at rtsp://{args.host}:{args.port}{path}", flush=True)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on {args.host}:{args.port}")

    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    loop.run()


if __name__ == "__main__":
    main()
