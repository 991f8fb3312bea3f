"""Video routes and the rules API on a plain Flask app with a real SQLite database."""

from __future__ import annotations

import time
from types import SimpleNamespace

import cv2
import flask
import numpy as np
import pytest

from dashboard.routes import rules, video
from layers.db import Database
from layers.models import Camera
from layers.services import cameras as camera_service
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
    ctx = SimpleNamespace(
        settings=SimpleNamespace(sample_video=None),
        db=db,
        services={
            "hub_settings": HubSettings(stale_after_s=1, offline_after_s=2, backoff_max_s=1),
            # access hooks are what dashboard.auth installs; here they allow everything so
            # the tests exercise the video path (test_missing_hooks_fail_closed drops them)
            "authorize_video": lambda request, camera_id: True,
            "authorize_rules": lambda request, action: True,
        },
    )
    server = flask.Flask("video-test")
    video.register(server, ctx)
    rules.register(server, ctx)  # the rules API the tests below change rules through
    server.testing = True
    yield server, ctx
    ctx.services["stream_hub"].close()
    db.dispose()


def _decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_snapshot_is_redacted_jpeg_and_status_written_back(app):
    server, ctx = app
    r = server.test_client().get("/video/1.jpg")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    assert r.headers["X-Redacted"] == "true" and r.headers["Cache-Control"] == "no-store"
    assert _decode(r.data).shape == (576, 768, 3)
    deadline = time.monotonic() + 3  # the status is written right after the frame is published
    while camera_service.get_camera(ctx.db, 1).status != "online":
        assert time.monotonic() < deadline, "camera status never written back as online"
        time.sleep(0.05)
    assert camera_service.get_camera(ctx.db, 1).last_seen is not None


def test_mjpeg_stream_serves_parts_and_releases_viewer(app):
    server, ctx = app
    r = server.test_client().get("/video/2.mjpg", buffered=False)
    assert r.status_code == 200
    assert r.mimetype == "multipart/x-mixed-replace"
    chunks = iter(r.response)
    parts = [next(chunks) for _ in range(3)]
    for part in parts:
        head, body = part.split(b"\r\n\r\n", 1)
        assert head.startswith(b"--" + video.BOUNDARY.encode())
        assert _decode(body[:-2]).shape == (576, 768, 3)
    hub = ctx.services["stream_hub"]
    assert hub.streams()[2].viewers == 1
    r.close()
    assert hub.streams()[2].viewers == 0


def test_unknown_camera_404_and_authorize_hook_403(app):
    server, ctx = app
    client = server.test_client()
    assert client.get("/video/99.jpg").status_code == 404
    ctx.services["authorize_video"] = lambda request, camera_id: camera_id != 1
    assert client.get("/video/1.jpg").status_code == 403
    assert client.get("/video/1.mjpg").status_code == 403


def test_unmask_only_through_the_grant_hook(app):
    server, ctx = app
    client = server.test_client()
    assert client.get("/video/1.jpg").headers["X-Redacted"] == "true"
    ctx.services["unmask_grant"] = lambda request, camera_id: "UNMASKED test-user grant#1"
    r = client.get("/video/1.jpg")
    assert r.status_code == 200 and r.headers["X-Redacted"] == "false"


def test_source_errors_never_show_credentials(app):
    server, _ = app
    client = server.test_client()
    r = client.get("/video/4.jpg?wait=2")
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert SECRET not in r.get_data(as_text=True)
    r = client.get("/video/3.jpg?wait=1")
    assert r.status_code == 503
    streams = client.get("/api/v1/video/streams").get_data(as_text=True)
    assert SECRET not in streams and "***@127.0.0.1" in streams


def test_rule_change_through_api_reaches_live_stream_within_a_second(app):
    server, _ = app
    client = server.test_client()
    assert client.get("/video/1.jpg").status_code == 200
    r = client.put(
        "/api/v1/rules/camera/1",
        json={"targets": FLOOR_TARGETS, "masks": [FULL_MASK], "fill_color": [0, 0, 0]},
    )
    assert r.status_code == 201
    t0 = time.monotonic()
    while True:
        img = _decode(client.get("/video/1.jpg").data)
        if img.max() < 10:
            break
        assert time.monotonic() - t0 < 1.0, "the new rule was not applied within a second"
        time.sleep(0.05)


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
    assert ctx.services["stream_hub"].streams()[1].counters["connects"] == 1


def test_mjpeg_response_ends_when_the_hub_closes(app):
    server, ctx = app
    r = server.test_client().get("/video/2.mjpg", buffered=False)
    chunks = iter(r.response)
    next(chunks)
    ctx.services["stream_hub"].close()
    rest = list(chunks)  # must terminate, not spin
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
    ctx.services["unmask_grant"] = lambda request, camera_id: "UNMASKED tester grant#7"
    ctx.services["unmask_grant_for"] = lambda user, camera_id: (
        "UNMASKED tester grant#7" if grant["valid"] else None
    )
    r = client.get("/video/2.mjpg", buffered=False)
    assert r.headers["X-Redacted"] == "false"
    chunks = iter(r.response)

    def next_image():
        head, body = next(chunks).split(b"\r\n\r\n", 1)
        return _decode(body[:-2])

    assert next_image().mean() > 40  # lifted: the liftable mask is off, video visible
    grant["valid"] = False
    deadline = time.monotonic() + 5
    while next_image().mean() > 5:  # back to redacted: the liftable mask is burned in again
        assert time.monotonic() < deadline, "the view stayed unredacted after the grant ended"
    r.close()


def test_missing_access_hooks_fail_closed(app):
    """Without the access hook no video is served: fail closed (rules: test_rules_api.py)."""
    server, ctx = app
    del ctx.services["authorize_video"]
    client = server.test_client()
    assert client.get("/video/1.jpg").status_code == 403
    assert client.get("/video/1.mjpg").status_code == 403
