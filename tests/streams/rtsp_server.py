"""A real RTSP server for the stream tests: Debian's GStreamer RTSP server (run by /usr/bin/python3).

Plays a video file as H.264 (or MJPEG) over RTSP on 127.0.0.1, with fault knobs:
``--switch-after S --switch-size WxH`` changes the resolution mid-stream, ``--slow US`` sleeps
that many microseconds per frame (a source slower than real time), ``--user/--password``
requires Basic auth. Prints ``READY`` when it listens. Not imported by pytest.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--video", required=True)
    ap.add_argument("--mount", default="/cam")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--codec", choices=["h264", "jpeg"], default="h264")
    ap.add_argument("--switch-after", type=float, default=0.0)
    ap.add_argument("--switch-size", default="320x240")
    ap.add_argument("--slow", type=int, default=0, help="microseconds of sleep per frame")
    ap.add_argument("--user", default="")
    ap.add_argument("--password", default="")
    a = ap.parse_args()
    Gst.init(None)
    w, h = a.size.split("x")
    enc = (
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=5 bitrate=1500 "
        "! rtph264pay name=pay0 pt=96 config-interval=1"
        if a.codec == "h264"
        else "jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26"
    )
    slow = f"identity sleep-time={a.slow} ! " if a.slow else ""
    launch = (
        f"( filesrc location={a.video} ! decodebin ! videoconvert ! videoscale ! "
        f"videorate ! capsfilter name=cf caps=video/x-raw,format=I420,width={w},height={h},"
        f"framerate={a.fps}/1 ! {slow}{enc} )"
    )
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)

    def on_configure(_factory, media):
        if a.switch_after > 0:
            cf = media.get_element().get_by_name_recurse_up("cf")
            sw, sh = a.switch_size.split("x")

            def switch():
                caps = f"video/x-raw,format=I420,width={sw},height={sh},framerate={a.fps}/1"
                cf.set_property("caps", Gst.Caps.from_string(caps))
                print("SWITCHED", flush=True)
                return False

            GLib.timeout_add(int(a.switch_after * 1000), switch)

    factory.connect("media-configure", on_configure)
    if a.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        basic = GstRtspServer.RTSPAuth.make_basic(a.user, a.password)
        auth.add_basic(basic, token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_role_from_structure(
            Gst.Structure.from_string(
                "user, media.factory.access=true, media.factory.construct=true"
            )[0]
        )
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(a.mount, factory)
    if server.attach(None) == 0:
        print("cannot listen", file=sys.stderr, flush=True)
        sys.exit(1)
    print("READY", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
