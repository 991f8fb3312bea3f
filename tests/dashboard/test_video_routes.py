"""Video routes and the rules API on a plain Flask app with a real SQLite database."""

from __future__ import annotations

import time

import cv2
import flask
import numpy as np
import pytest

from dashboard.context import AccessHooks, AppContext
from dashboard.routes import rules, video
from layers.db import Database
from layers.models import Camera
from layers.services import cameras as camera_service
from layers.settings import Settings, SettingsError, load_settings
from streams.hub import HubSettings

SECRET = "Camera-Pa55word"
FULL_MASK = {"points": [[0, 0], [1, 0], [1, 1], [0, 1]], "method": "fill"}
FLOOR_TARGETS = ["faces", "persons", "plates"]  # the built-in privacy floor


@pytest.fixture
def app(tmp_path, shared_data):
    db = Database(f"sqlite:///{tmp_path / 'video.sqlite'}")
    db.migrate()
    vtest = str(shared_data / "vtest.avi")
    with db.session() as s:
        s.add_all(
            [
                Camera(id=1, gb_id="53010200001320000001", name="cam 1", cls=1, lon=102.7, lat=25.0, stream_url=vtest),
                Camera(id=2, gb_id="53010200001320000002", name="cam 2", cls=2, lon=102.7, lat=25.0, stream_url=vtest),
                Camera(id=3, gb_id="53010200001320000003", name="no url", cls=3, lon=102.7, lat=25.0, stream_url=""),
                Camera(id=4, gb_id="53010200001320000004", name="bad", cls=3, lon=102.7, lat=25.0,
                       stream_url=f"rtsp://admin:{SECRET}@127.0.0.1:9/live"),
            ]
        )  # fmt: skip
    ctx = AppContext(
        settings=Settings(),
        db=db,
        hub_settings=HubSettings(stale_after_s=1, offline_after_s=2, backoff_max_s=1),
        # access hooks are what dashboard.auth installs; here they allow everything so
        # the tests exercise the video path (test_missing_hooks_fail_closed drops them)
        hooks=AccessHooks(
            authorize_video=lambda request, camera_id: True,
            authorize_rules=lambda request, action: True,
            viewer_still_allowed=lambda viewer, camera_id: True,
        ),
    )
    server = flask.Flask("video-test")
    video.register(server, ctx)
    rules.register(server, ctx)  # the rules API the tests below change rules through
    server.testing = True
    yield server, ctx
    ctx.stream_hub.close()
    db.dispose()


def _decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def _part(chunk: bytes) -> tuple[dict[str, str], np.ndarray]:
    """Return (headers, image) of one multipart MJPEG part."""
    head, body = chunk.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "--" + video.BOUNDARY
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    return headers, _decode(body)


def _parts(chunks, raw: list | None = None):
    """Yield (headers, image) of each MJPEG part of a streamed response's chunks."""
    for chunk in chunks:
        if raw is not None:
            raw.append(chunk)
        if chunk != video.PART_END:
            yield _part(chunk)


def _assert_multipart_wire_format(raw: list[bytes]) -> None:
    """Every boundary after the first is preceded by CRLF, as multipart requires."""
    wire = b"".join(raw)
    boundary = b"--" + video.BOUNDARY.encode()
    assert wire.startswith(boundary)
    assert wire.count(boundary) - 1 == wire.count(b"\r\n" + boundary)


#: What the default rules redact: faces, plates and persons (moving blobs).
DEFAULT_MARKER = "faces,persons,plates"


def _past_warmup(client, path: str = "/video/1.jpg"):
    """Return the first snapshot response after the persons detector's warm-up.

    The default rules cover persons; their motion model needs a few frames first, which are
    served fully pixelated and marked ``failed-closed``.
    """
    deadline = time.monotonic() + 15
    while (r := client.get(path)).headers["X-Redacted"] == "failed-closed":
        assert time.monotonic() < deadline, "still warming up after 15 s"
        time.sleep(0.05)
    return r


def test_snapshot_is_redacted_jpeg_and_status_written_back(app):
    server, ctx = app
    r = _past_warmup(server.test_client())
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    assert r.headers["X-Redacted"] == DEFAULT_MARKER and r.headers["Cache-Control"] == "no-store"
    assert _decode(r.data).shape == (576, 768, 3)
    deadline = time.monotonic() + 30  # the status is written right after the frame is published
    while camera_service.get_camera(ctx.db, 1).status != "online":
        assert time.monotonic() < deadline, "camera status never written back as online"
        time.sleep(0.05)
    assert camera_service.get_camera(ctx.db, 1).last_seen is not None


def test_mjpeg_stream_serves_parts_and_releases_viewer(app):
    server, ctx = app
    r = server.test_client().get("/video/2.mjpg", buffered=False)
    assert r.status_code == 200
    assert r.mimetype == "multipart/x-mixed-replace"
    chunks = _parts(iter(r.response))
    parts = [next(chunks) for _ in range(3)]
    while parts[0][0]["X-Redacted"] == "failed-closed":  # the persons detector warming up
        parts = parts[1:] + [next(chunks)]
    for headers, img in parts:
        assert img.shape == (576, 768, 3)
        assert headers["X-Redacted"] == DEFAULT_MARKER and float(headers["X-Timestamp"]) > 0
    hub = ctx.stream_hub
    assert hub.streams()[2].viewers == 1
    r.close()
    assert hub.streams()[2].viewers == 0


def test_unknown_camera_404_and_authorize_hook_403(app):
    server, ctx = app
    client = server.test_client()
    assert client.get("/video/99.jpg").status_code == 404
    ctx.hooks.authorize_video = lambda request, camera_id: camera_id != 1
    assert client.get("/video/1.jpg").status_code == 403
    assert client.get("/video/1.mjpg").status_code == 403


def test_unmask_only_through_the_grant_hook(app):
    server, ctx = app
    client = server.test_client()
    assert _past_warmup(client).headers["X-Redacted"] == DEFAULT_MARKER
    ctx.hooks.unmask_grant = lambda request, camera_id: "UNMASKED test-user grant#1"
    r = client.get("/video/1.jpg")
    assert r.status_code == 200 and r.headers["X-Redacted"] == "none; grant=1"


def test_source_errors_never_show_credentials(app):
    server, _ = app
    client = server.test_client()
    # a camera that never delivered a frame: its snapshot is the placeholder, drawn from nothing
    r = client.get("/video/4.jpg?wait=3")
    assert r.status_code == 200 and r.headers["X-Redacted"] == "placeholder"
    assert SECRET.encode() not in r.data
    r = client.get("/video/3.jpg?wait=3")
    assert r.headers["X-Redacted"] == "placeholder"
    assert client.get("/video/3.jpg?wait=0").status_code in (200, 503)
    streams = client.get("/api/v1/video/streams").get_data(as_text=True)
    assert SECRET not in streams and "***@127.0.0.1" in streams


def test_rule_change_through_api_reaches_live_stream(app):
    server, ctx = app
    client = server.test_client()
    assert client.get("/video/1.jpg").status_code == 200
    r = client.put(
        "/api/v1/rules/camera/1",
        json={"targets": FLOOR_TARGETS, "masks": [FULL_MASK], "fill_color": [0, 0, 0]},
    )
    assert r.status_code == 201
    deadline = time.monotonic() + 30  # generous: a busy machine redacts slowly
    while True:
        img = _decode(client.get("/video/1.jpg").data)
        if img.max() < 10:
            break
        assert time.monotonic() < deadline, "the new rule never reached the stream"
        time.sleep(0.05)
    assert ctx.stream_hub.streams()[1].counters["rules_reloads"] >= 1


def test_many_viewers_over_real_http_share_one_reader(app):
    """Three concurrent HTTP clients on a threaded server; our own MJPEG reader parses it."""
    import threading

    from werkzeug.serving import make_server

    from streams.sources import MjpegSourceConfig, create_source

    server, ctx = app
    http = make_server("127.0.0.1", 0, server, threaded=True)
    t = threading.Thread(target=http.serve_forever, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{http.server_port}/video/1.mjpg"
    shapes: list = []
    errors: list = []

    def view():
        src = create_source(MjpegSourceConfig(url=url, timeout_s=10))
        try:
            src.open()
            shapes.extend(src.read().shape for _ in range(3))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            src.close()

    try:
        viewers = [threading.Thread(target=view) for _ in range(3)]
        [v.start() for v in viewers]
        [v.join(30) for v in viewers]
    finally:
        http.shutdown()
    assert errors == []
    assert shapes == [(576, 768, 3)] * 9
    assert ctx.stream_hub.streams()[1].counters["connects"] == 1


def test_mjpeg_response_ends_when_the_hub_closes(app):
    server, ctx = app
    r = server.test_client().get("/video/2.mjpg", buffered=False)
    chunks = iter(r.response)
    next(chunks)
    ctx.stream_hub.close()
    rest = [c for c in chunks if c != video.PART_END]  # must terminate, not spin
    assert len(rest) <= 2
    r.close()


def test_unredacted_view_falls_back_to_redacted_when_grant_ends(app, monkeypatch):
    server, ctx = app
    monkeypatch.setattr(video, "GRANT_RECHECK_S", 0.3)
    liftable = dict(FULL_MASK, permanent=False)
    client = server.test_client()
    assert (
        client.put(
            "/api/v1/rules/camera/2",
            json={"targets": FLOOR_TARGETS, "masks": [liftable], "fill_color": [0, 0, 0]},
        ).status_code
        == 201
    )
    grant = {"valid": True}
    ctx.hooks.unmask_grant = lambda request, camera_id: "UNMASKED tester grant#7"
    ctx.hooks.unmask_grant_for = lambda user, camera_id: (
        "UNMASKED tester grant#7" if grant["valid"] else None
    )
    r = client.get("/video/2.mjpg", buffered=False)
    raw: list[bytes] = []
    chunks = _parts(iter(r.response), raw)
    deadline = time.monotonic() + 20
    # the view sends the "waiting" placeholder until the lifted stream has its first frame
    # (while the persons detector warms up, frames fail closed and none is lifted)
    while (headers := next(chunks)[0])["X-Redacted"] == "placeholder":
        assert time.monotonic() < deadline, "no lifted frame"
    headers, img = next(chunks)
    assert img.mean() > 40  # lifted: the liftable mask is off, video visible
    assert headers["X-Redacted"] == "none; grant=7"  # and the part says so
    grant["valid"] = False
    deadline = time.monotonic() + 30
    while True:  # back to redacted: the liftable mask is burned in again
        headers, img = next(chunks)
        if img.mean() <= 5:
            break
        assert "grant=7" in headers["X-Redacted"]
        assert time.monotonic() < deadline, "the view stayed unredacted after the grant ended"
    assert headers["X-Redacted"] == DEFAULT_MARKER + ",masks"
    next(chunks)
    r.close()
    _assert_multipart_wire_format(raw)  # also across the switch back to the redacted stream


def test_missing_access_hooks_fail_closed(app):
    """Without the access hook no video is served: fail closed (rules: test_rules_api.py)."""
    server, ctx = app
    ctx.hooks.authorize_video = None
    client = server.test_client()
    assert client.get("/video/1.jpg").status_code == 403
    assert client.get("/video/1.mjpg").status_code == 403


def test_grant_frame_with_a_permanent_mask_says_masks_and_grant(app):
    server, ctx = app
    client = server.test_client()
    permanent = dict(FULL_MASK, points=[[0, 0], [0.2, 0], [0.2, 0.2], [0, 0.2]], permanent=True)
    assert (
        client.put(
            "/api/v1/rules/camera/1", json={"targets": FLOOR_TARGETS, "masks": [permanent]}
        ).status_code
        == 201
    )
    deadline = time.monotonic() + 60
    while (
        marker := client.get("/video/1.jpg").headers["X-Redacted"]
    ) != "faces,persons,plates,masks":
        assert marker in ("failed-closed", DEFAULT_MARKER), marker  # warm-up, then the old rule
        assert time.monotonic() < deadline, marker
        time.sleep(0.1)
    ctx.hooks.unmask_grant = lambda request, camera_id: "UNMASKED ann 2026-12-02T10:00Z grant#42"
    deadline = time.monotonic() + 60
    while (marker := client.get("/video/1.jpg").headers["X-Redacted"]) != "masks; grant=42":
        assert "faces" not in marker or "grant" not in marker  # never "redacted" with a grant
        assert time.monotonic() < deadline, marker
        time.sleep(0.1)


def test_stream_cap_leaves_half_the_threads_to_pages_with_several_workers():
    one = load_settings({}, video_max_streams=48, workers=1, threads=32)
    many = load_settings({}, video_max_streams=48, workers=3, threads=32,
                         redis_url="redis://127.0.0.1:6379/0")  # fmt: skip
    assert video.stream_cap(one) == 48 and video.stream_cap(many) == 16


def test_stream_cap_must_leave_stream_threads_for_refusals():
    with pytest.raises(SettingsError, match="GRIDSIGHT_VIDEO_MAX_STREAMS=70 must be at most"):
        load_settings(stream_threads=64, video_max_streams=70)
