"""A fake IP camera for tests, the bench and the demo: GStreamer's RTSP server, H.264 main and sub streams.

GStreamer's Python bindings import only in the system Python (Debian's ``python3-gi``,
``gir1.2-gst-rtsp-server-1.0``), so this file runs as its own process under ``/usr/bin/python3`` and
imports nothing of the project. It serves ``rtsp://127.0.0.1:PORT/main`` and ``/sub``:

- ``--raw FILE --size WxH --fps N``: a real clip, decoded beforehand into raw I420 frames (see
  ``kuzet_edge.devtools.write_raw_i420``), played in a loop at ``N`` fps;
- ``--pattern ball|black|smpte``: a synthetic live source (``black`` is a covered camera);
- ``--mp4 FILE [--sub-mp4 FILE]``: H.264 files served once as they are (no encoder: the bench).

Both are encoded with x264 (no B-frames, a keyframe every ``--gop`` frames), as an IP camera does.
Stop it with SIGTERM; SIGSTOP freezes it like a hung camera (the TCP connection stays open, silent).
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def encoder(gop: int, kbps: int) -> str:
    return (
        f"x264enc tune=zerolatency speed-preset=ultrafast bframes=0 key-int-max={gop} bitrate={kbps} "
        "! video/x-h264,profile=baseline ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=1"
    )


class RawLoop:
    """Feeds an appsrc from a raw I420 file in a loop, stamping frames at ``fps``."""

    def __init__(self, path: str, width: int, height: int, fps: int) -> None:
        with open(path, "rb") as f:
            data = f.read()
        size = width * height * 3 // 2
        self.frames = [data[i : i + size] for i in range(0, len(data) - size + 1, size)]
        if not self.frames:
            sys.exit(f"{path}: no whole {width}x{height} I420 frame")
        self.duration = Gst.SECOND // fps
        self.caps = f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"

    def configure(self, _factory: object, media: GstRtspServer.RTSPMedia) -> None:
        src = media.get_element().get_by_name("src")
        state = {"n": 0}

        def need_data(appsrc: Gst.Element, _length: int) -> None:
            n = state["n"]
            buf = Gst.Buffer.new_wrapped(self.frames[n % len(self.frames)])
            buf.pts = buf.dts = n * self.duration
            buf.duration = self.duration
            state["n"] = n + 1
            appsrc.emit("push-buffer", buf)

        src.connect("need-data", need_data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--raw", help="raw I420 frames to loop")
    parser.add_argument("--mp4", help="an H.264 MP4 served as it is, once, without re-encoding (the bench)")
    parser.add_argument("--sub-mp4", help="the same for /sub")
    parser.add_argument("--pattern", default="ball", choices=["ball", "black", "smpte", "snow"])
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--sub-size", default="320x180")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--gop", type=int, default=20, help="frames between keyframes")
    parser.add_argument("--kbps", type=int, default=1500)
    args = parser.parse_args()
    Gst.init(None)
    width, height = (int(v) for v in args.size.split("x"))
    sub_w, sub_h = (int(v) for v in args.sub_size.split("x"))
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    loops = []
    for path, scale in (("/main", ""), ("/sub", f"! videoscale ! video/x-raw,width={sub_w},height={sub_h} ")):
        if args.raw:
            loop = RawLoop(args.raw, width, height, args.fps)
            source = f"appsrc name=src is-live=true format=time block=true max-bytes=0 caps={loop.caps} ! queue "
        else:
            loop = None
            source = (
                f"videotestsrc is-live=true pattern={args.pattern} "
                f"! video/x-raw,width={width},height={height},framerate={args.fps}/1 "
            )
        factory = GstRtspServer.RTSPMediaFactory()
        kbps = args.kbps if not scale else max(200, args.kbps // 4)
        passthrough = args.mp4 if path == "/main" else args.sub_mp4
        if passthrough:
            factory.set_launch(
                f"( filesrc location={passthrough} ! qtdemux ! h264parse config-interval=-1 "
                "! rtph264pay name=pay0 pt=96 config-interval=1 )"
            )
            loop = None
        else:
            factory.set_launch(f"( {source}{scale}! videoconvert ! {encoder(args.gop, kbps)} )")
        factory.set_shared(True)
        if loop is not None:
            factory.connect("media-configure", loop.configure)
            loops.append(loop)
        mounts.add_factory(path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    main_loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, main_loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, main_loop.quit)
    print(f"rtsp://127.0.0.1:{args.port}/main", flush=True)
    main_loop.run()


if __name__ == "__main__":
    main()
