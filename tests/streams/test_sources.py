"""Sources: URL scrubbing, config validation, registry, HTTP MJPEG / still / file readers."""

from __future__ import annotations

import http.server
import logging
import threading

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from streams.registry import UnknownVariantError
from streams.sources import (
    SOURCES,
    FileSourceConfig,
    FrameDecodeError,
    MjpegSourceConfig,
    RtspSourceConfig,
    SourceError,
    StillSourceConfig,
    create_source,
    redact_url,
    scrub_text,
    source_config_for,
)

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            f"rtsp://admin:{SECRET}@10.0.0.5:554/Streaming/Channels/101",
            "rtsp://***@10.0.0.5:554/Streaming/Channels/101",
        ),
        (f"rtsp://admin:{SECRET}@cam.local/live", "rtsp://***@cam.local/live"),
        (f"http://user:{SECRET}@192.168.1.2/video.mjpg", "http://***@192.168.1.2/video.mjpg"),
        ("rtsp://10.0.0.5/live", "rtsp://10.0.0.5/live"),
        (
            f"rtsp://10.0.0.5/live?user=a&password={SECRET}",
            "rtsp://10.0.0.5/live?user=a&password=***",
        ),
        (f"http://h/snap.jpg?token={SECRET}", "http://h/snap.jpg?token=***"),
        # passwords with reserved characters percent-encoded, and a bare @ in the password
        ("rtsp://admin:p%40ss%3Aw%2Frd@10.0.0.5/x", "rtsp://***@10.0.0.5/x"),
        ("", ""),
    ],
)
def test_redact_url_strips_credentials(url, expected):
    assert redact_url(url) == expected


def test_scrub_text_finds_urls_inside_messages():
    msg = f"open rtsp://admin:{SECRET}@1.2.3.4/a failed; retry http://u:{SECRET}@h/x?pwd={SECRET}"
    out = scrub_text(msg)
    assert SECRET not in out
    assert "rtsp://***@1.2.3.4/a" in out


def test_source_error_message_is_scrubbed():
    err = SourceError(f"cannot open rtsp://admin:{SECRET}@1.2.3.4/a")
    assert SECRET not in str(err)


def test_rtsp_open_failure_never_logs_credentials(caplog):
    caplog.set_level(logging.DEBUG)
    src = create_source(
        RtspSourceConfig(url=f"rtsp://admin:{SECRET}@127.0.0.1:9/none", open_timeout_s=1)
    )
    assert SECRET not in src.display_url
    with pytest.raises(SourceError) as info:
        src.open()
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text


def test_config_for_stream_urls():
    assert source_config_for("rtsp://a/b").type == "rtsp"
    assert source_config_for("rtsp://a/b?transport=udp").transport == "udp"
    assert source_config_for("http://a/video.mjpg").type == "mjpeg"
    assert source_config_for("http://a/snap.jpg").type == "still"
    assert source_config_for("/x/y.avi").type == "file"
    assert source_config_for("file:///x/y.png").type == "still"


def test_configs_forbid_unknown_keys_and_types():
    with pytest.raises(ValidationError):
        SOURCES.parse({"type": "rtsp", "url": "rtsp://a/b", "tranport": "tcp"})
    with pytest.raises(ValidationError):
        SOURCES.parse({"type": "webrtc", "url": "x"})
    with pytest.raises(ValidationError):
        RtspSourceConfig(url="http://not-rtsp/")
    assert isinstance(SOURCES.parse({"type": "mjpeg", "url": "http://a/b"}), MjpegSourceConfig)


def test_registry_rejects_unknown_variant_built_without_parse():
    class Fake:
        type = "nope"

    with pytest.raises((UnknownVariantError, ValidationError)):
        SOURCES.create(Fake())


def test_file_source_loops(vtest_path):
    src = create_source(FileSourceConfig(path=str(vtest_path), realtime=False))
    src.open()
    cap = cv2.VideoCapture(str(vtest_path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    src._cap.set(cv2.CAP_PROP_POS_FRAMES, n - 2)
    shapes = [src.read().shape for _ in range(5)]  # runs past the end and wraps around
    src.close()
    assert shapes == [(576, 768, 3)] * 5


def test_missing_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError):
        create_source(str(tmp_path / "nope.avi")).open()


def test_still_source_from_file(tmp_path, astronaut_bgr):
    path = tmp_path / "still.jpg"
    cv2.imwrite(str(path), astronaut_bgr)
    src = create_source(StillSourceConfig(url=str(path), refresh_s=0.01))
    src.open()
    assert src.read().shape == astronaut_bgr.shape


class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    parts: list[bytes] = []
    seen_auth: list[str | None] = []

    def do_GET(self):  # noqa: N802 - http.server API
        self.seen_auth.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=b")
        self.end_headers()
        for part in self.parts:
            self.wfile.write(b"--b\r\nContent-Type: image/jpeg\r\n\r\n" + part + b"\r\n")
        self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture
def mjpeg_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MjpegHandler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


def test_mjpeg_source_survives_garbage_parts(mjpeg_server, astronaut_bgr):
    ok, jpg = cv2.imencode(".jpg", astronaut_bgr)
    rng = np.random.default_rng(0)
    garbage = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes().replace(b"\xff", b"\x00")
    broken = b"\xff\xd8" + garbage + b"\xff\xd9"  # looks like a JPEG, is not one
    _MjpegHandler.parts = [jpg.tobytes(), garbage, broken, jpg.tobytes()]
    _MjpegHandler.seen_auth = []
    port = mjpeg_server.server_address[1]
    src = create_source(f"http://viewer:{SECRET}@127.0.0.1:{port}/video.mjpg")
    assert SECRET not in src.display_url
    src.open()
    assert src.read().shape == astronaut_bgr.shape
    with pytest.raises(FrameDecodeError):
        src.read()
    assert src.read().shape == astronaut_bgr.shape
    with pytest.raises(SourceError):
        src.read()  # server closed the stream
    src.close()
    assert _MjpegHandler.seen_auth[0].startswith("Basic ")


def test_config_repr_hides_urls_with_credentials():
    for cfg in (
        RtspSourceConfig(url=f"rtsp://a:{SECRET}@h/x"),
        MjpegSourceConfig(url=f"http://a:{SECRET}@h/x"),
        StillSourceConfig(url=f"http://a:{SECRET}@h/x.jpg"),
    ):
        assert SECRET not in repr(cfg) and SECRET not in str(cfg)


@pytest.mark.parametrize(
    "url, expected",
    [
        (f"http://h/x?api_key={SECRET}&channel=1", "http://h/x?api_key=***&channel=1"),
        (f"http://h/x?a=1;pwd={SECRET}", "http://h/x?a=1;pwd=***"),
        (f"https://h/x.m3u8?X-Amz-Signature={SECRET}", "https://h/x.m3u8?X-Amz-Signature=***"),
        (f"http://h/x#access_token={SECRET}&state=1", "http://h/x#access_token=***&state=1"),
        (f"http://h/x?pass%77ord={SECRET}", "http://h/x?pass%77ord=***"),
        ("rtsp://h/x?channel=1&subtype=0", "rtsp://h/x?channel=1&subtype=0"),
    ],
)
def test_redact_url_finds_secret_parameters_by_name(url, expected):
    assert redact_url(url) == expected
    assert SECRET not in scrub_text(f"opening {url} failed")
