"""Redacted live video.

Routes
------
``GET /video/<camera_id>.mjpg``  multipart MJPEG of the camera's *redacted* stream; a part at
                                 least every second (the placeholder while nothing is fresh),
                                 each with its own ``X-Redacted`` and ``X-Timestamp`` headers;
                                 429 over the per-user or total cap of open streams
``GET /video/<camera_id>.jpg``   newest redacted snapshot (503 + Retry-After if none yet after
                                 ``?wait=`` seconds, 0-15, default 5; else 400 naming it), a
                                 frame whose detection ran on it; ``X-Redacted`` says what was
                                 applied (format in ``streams.frames``)
``GET /api/v1/video/streams``    running streams: status, viewers, counters (no URLs with secrets)

The redaction-rule API is ``dashboard/routes/rules.py``; the rules a stream gets are held to
the deployment's privacy floor inside ``layers.services.video.hub_bindings``.

Every frame served here went through ``streams.pipeline.RedactionPipeline`` inside the one
``StreamHub`` of the app (``ctx.stream_hub``): one reader per camera, however many
viewers. With ``GRIDSIGHT_RAY_ADDRESS`` set that hub is a ``streams.cluster.RayStreamRelay``
(same interface): each camera then runs once in the Ray cluster, whichever web process the
viewer reached, and only its redacted JPEGs (or a "stream restarting" placeholder) arrive
here. Hooks for access control, ``ctx.hooks`` (``dashboard.context.AccessHooks``):

- ``authorize_video(request, camera_id) -> bool``: False -> 403. Absent -> 403 as well:
  access control fails closed, a missing hook never opens video to everyone.
- ``unmask_grant(request, camera_id) -> str | None``: the ONLY way to switch redaction off.
  ``unmask_grant_for(user_name, camera_id)`` re-checks a running unredacted MJPEG view every
  ``GRANT_RECHECK_S``; when it returns None (or is absent) the view falls back to redacted.
  A string (e.g. "UNMASKED alice 2026-11-23T17:00Z grant#12") is burned into every frame as a
  watermark, detections and liftable masks are lifted, permanent masks stay. None (default,
  also when the hook is absent) -> redacted.
- ``viewer_still_allowed(viewer, camera_id) -> bool``: a running MJPEG view asks it every
  ``VIEWER_RECHECK_S`` (``viewer`` is the request's principal) and ends when it says False
  (logged out, account disabled, role or scope changed). Absent -> the view ends as well.
- ``audit(event, **fields)``: called for every video view (start and end, redacted or not).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask

from dashboard.context import AppContext
from dashboard.stream_caps import StreamLimiter
from layers.services import NotFoundError
from layers.services import cameras as camera_service
from layers.services import video as video_service
from layers.settings import Settings
from streams.cluster import RayStreamRelay, RedactionCluster, deployment_key
from streams.frames import (
    PLACEHOLDER,
    ServedFrame,
    cjk_font_path,
    placeholder_jpeg,
    placeholder_text,
)
from streams.hub import HubSettings, StreamHub
from streams.sources import redact_url, scrub_text

log = logging.getLogger(__name__)

BOUNDARY = "gridsightframe"
#: An MJPEG view sends a part at least this often: the newest frame, the last one again, or
#: the placeholder. A viewer who has gone is noticed when a write fails, so this bounds how
#: long a closed connection holds a stream thread.
PART_EVERY_S = 1.0
GRANT_RECHECK_S = 5.0


def stream_cap(settings: Settings) -> int:
    """Return the cap on open MJPEG views of one web process.

    One worker (waitress) serves streams from a pool of their own, sized above the cap. With
    several gunicorn workers, streams share a worker's ``threads``: at most half of them may
    be streams, so pages and ``/healthz`` keep the other half.
    """
    cap = settings.video.max_streams
    if settings.web.workers > 1:
        cap = min(cap, max(1, settings.web.threads // 2))
    return cap


def mjpeg_part(frame: ServedFrame) -> bytes:
    """Return one multipart MJPEG part with the frame's ``X-Redacted`` and ``X-Timestamp``.

    The CRLF that ends the part is sent on its own (``PART_END``) before the next one.
    """
    head = (
        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.jpeg)}\r\n"
        f"X-Redacted: {frame.marker}\r\n"
    )
    if frame.captured_utc is not None:
        head += f"X-Timestamp: {frame.captured_utc.timestamp():.3f}\r\n"
    return head.encode() + b"\r\n" + frame.jpeg


#: The CRLF between a part's JPEG and the next boundary, yielded on its own: the server
#: blocks on it until the previous frame has left its buffers, and only then is the next
#: (newest) frame picked, so a slow viewer skips frames instead of receiving old ones.
PART_END = b"\r\n"


def _waiting_placeholder(tz: str) -> ServedFrame:
    """Return the placeholder a view sends before its stream published anything."""
    text = placeholder_text(None, tz, cjk=cjk_font_path() is not None)
    return ServedFrame(0, placeholder_jpeg(1280, 720, text), PLACEHOLDER, None, True)


VIEWER_RECHECK_S = 2.5  # + one PART_EVERY_S wait at most: a revoked viewer is cut within 5 s


def build_hub(ctx: AppContext) -> StreamHub | RayStreamRelay:
    """Return the app's video hub: in-process ``StreamHub``, or the Ray relay in cluster mode.

    Both read cameras and rules and write status through ``layers.services.video.hub_bindings``
    (in cluster mode inside the redaction workers, on their own database connection).
    """
    video = ctx.settings.video
    sample_video = video.sample_video
    hub_settings: HubSettings = ctx.hub_settings or video.hub_settings()
    floor = ctx.settings.privacy.floor()
    if not video.ray_address:
        return StreamHub.from_bindings(
            video_service.hub_bindings(ctx.db, sample_video, floor), hub_settings
        )
    db_url = video_service.portable_db_url(ctx.db.url)
    video_path = str(Path(sample_video).resolve()) if sample_video else None
    floor_data = floor.model_dump(mode="json")
    cluster = RedactionCluster(
        video.ray_address,
        functools.partial(video_service.hub_bindings_for_url, db_url, video_path, floor_data),
        # a worker made under another privacy floor is refused, never reused
        deployment_key=deployment_key(db_url, video_path, floor.fingerprint()),
        workers=video.ray_workers,
        namespace=video.ray_namespace,
        hub_settings=hub_settings.model_copy(update={"idle_stop_s": video.ray_idle_s}),
        num_cpus=video.ray_worker_cpus,
        bind_cpus=video.ray_bind_cpus,
    )
    log.info("video: cluster mode, %d redaction workers", video.ray_workers)
    return RayStreamRelay(cluster)


def _user_name() -> str:
    user = None
    if flask.has_app_context():
        # dashboard.auth caches the request's principal on flask.g
        user = flask.g.get("principal") or flask.g.get("user")
    if user is None:
        return "unknown"
    return str(getattr(user, "name", None) or getattr(user, "username", None) or user)


def _error(status: int, message: str):
    return flask.jsonify({"error": scrub_text(message)}), status


def _field_error(status: int, field: str, message: str):
    text = f"{field}: {message}"
    return flask.jsonify({"error": text, "errors": [{"field": field, "message": message}]}), status


#: Longest a snapshot request may wait for a first frame (``?wait=``, seconds; default 5).
SNAPSHOT_WAIT_MAX_S = 15.0


def snapshot_wait(raw: str | None) -> float | None:
    """Return the seconds ``?wait=`` asks for (5 when absent), or None if not 0-15 seconds."""
    if raw is None:
        return 5.0
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 <= value <= SNAPSHOT_WAIT_MAX_S else None


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Add the video routes to ``server`` (the hub starts with the first stream)."""
    if ctx.stream_hub is None:
        ctx.stream_hub = build_hub(ctx)
    hub = ctx.stream_hub
    limiter = StreamLimiter(stream_cap(ctx.settings), ctx.settings.video.max_streams_per_user)
    ctx.video_streams = limiter
    tz = ctx.settings.video.timezone

    def check_camera(camera_id: int):
        authorize = ctx.hooks.authorize_video
        if authorize is None or not authorize(flask.request, camera_id):
            return _error(403, "not allowed to view this camera")
        try:
            camera_service.get_camera(ctx.db, camera_id)
        except NotFoundError:
            return _error(404, f"no camera {camera_id}")
        return None

    def watermark_for(camera_id: int) -> str | None:
        # The single switch between redacted and unredacted video: without a grant from the
        # issue-8 hook, every viewer gets the redacted stream.
        grant = ctx.hooks.unmask_grant
        return grant(flask.request, camera_id) if grant is not None else None

    def grant_still_valid(user: str, camera_id: int) -> str | None:
        # Without the context-free hook a running unredacted view cannot be re-checked, so it
        # is ended (None = back to redacted) rather than trusted until the viewer leaves.
        hook = ctx.hooks.unmask_grant_for
        if hook is None:
            return None
        try:
            return hook(user, camera_id)
        except Exception:  # noqa: BLE001 - cannot verify the grant: fail closed to redacted
            log.exception("re-checking the unmask grant of %s on camera %s failed", user, camera_id)
            return None

    def viewer_still_allowed(viewer: Any, camera_id: int) -> bool:
        # The viewer's session or account may end while the stream runs: no hook or a
        # failing one ends the view (fail closed), as a missing authorize hook refuses it.
        hook = ctx.hooks.viewer_still_allowed
        if hook is None:
            return False
        try:
            return bool(hook(viewer, camera_id))
        except Exception:  # noqa: BLE001 - cannot verify the viewer: end the view
            log.exception("re-checking the viewer of camera %s failed", camera_id)
            return False

    def audit(event: str, **fields) -> None:
        hook = ctx.hooks.audit
        if hook is not None:
            try:
                hook(event, **fields)
            except Exception:  # noqa: BLE001 - logged; the audit module reports its own failure
                log.exception("audit hook failed for %s", event)

    @server.get("/video/<int:camera_id>.mjpg")
    def video_mjpeg(camera_id: int):
        denied = check_camera(camera_id)
        if denied is not None:
            return denied
        mark = watermark_for(camera_id)
        user = _user_name()
        refused = limiter.acquire(user)
        if refused is not None:
            resp, status = _error(429, refused)
            resp.headers["Retry-After"] = "5"
            return resp, status
        released = threading.Event()
        viewer = flask.g.get("principal") or user  # re-checked by viewer_still_allowed

        def release() -> None:
            # called when the server closes the response: also for one never iterated
            if not released.is_set():
                released.set()
                limiter.release(user)

        def frames() -> Iterator[bytes]:
            # The subscription is taken inside the generator so that a response that is never
            # iterated (HEAD, client gone at once) holds no viewer slot. An unredacted view
            # re-checks its grant every GRANT_RECHECK_S (``unmask_grant_for``) and falls back
            # to the redacted stream when the grant has expired or was revoked.
            started = time.monotonic()
            audit("video.view.start", user=user, camera_id=camera_id, redacted=mark is None)
            current = mark
            sent = False  # every part after the first is preceded by PART_END
            viewer_at = time.monotonic() + VIEWER_RECHECK_S
            try:
                while True:
                    seq, last = 0, None
                    recheck_at = time.monotonic() + GRANT_RECHECK_S
                    with hub.subscribe(camera_id, watermark=current) as wait:
                        while True:
                            # -- viewer re-check (session, account, scope): one separate step
                            if time.monotonic() >= viewer_at:
                                viewer_at = time.monotonic() + VIEWER_RECHECK_S
                                if not viewer_still_allowed(viewer, camera_id):
                                    audit("video.view.revoked", user=user, camera_id=camera_id)
                                    return
                            if current is not None and time.monotonic() >= recheck_at:
                                recheck_at = time.monotonic() + GRANT_RECHECK_S
                                still = grant_still_valid(user, camera_id)
                                if still != current:
                                    audit("video.unmask.end", user=user, camera_id=camera_id)
                                    current = still
                                    break  # re-subscribe to the stream this viewer may see
                            if sent:
                                yield PART_END  # returns once the previous part has gone out
                            # only the newest frame is ever sent: a slow viewer skips frames
                            got = wait(seq, PART_EVERY_S)
                            if got is not None:
                                seq, last = got.seq, got
                            elif wait.stopped():
                                return  # the hub is shutting down: end the response
                            elif last is None:
                                last = _waiting_placeholder(tz)
                            # On a timeout the last part is sent again (the hub replaces a
                            # frame that is no longer fresh by its placeholder): bytes flow at
                            # least every second, so a viewer who has gone is noticed.
                            yield mjpeg_part(last)
                            sent = True
            finally:
                release()
                audit(
                    "video.view.end",
                    user=user,
                    camera_id=camera_id,
                    redacted=mark is None,
                    seconds=round(time.monotonic() - started, 1),
                )

        resp = flask.Response(frames(), mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        resp.call_on_close(release)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @server.get("/video/<int:camera_id>.jpg")
    def video_snapshot(camera_id: int):
        denied = check_camera(camera_id)
        if denied is not None:
            return denied
        timeout = snapshot_wait(flask.request.args.get("wait"))
        if timeout is None:
            return _field_error(400, "wait", f"give seconds between 0 and {SNAPSHOT_WAIT_MAX_S:g}")
        mark = watermark_for(camera_id)
        if mark is None:
            got = hub.snapshot(camera_id, timeout=timeout)
        else:
            with hub.subscribe(camera_id, watermark=mark) as wait:
                got = wait(0, timeout)
        audit("video.snapshot", user=_user_name(), camera_id=camera_id, redacted=mark is None)
        if got is None:
            stream = hub.streams().get(camera_id)
            resp, status = _error(503, f"no frame yet from camera {camera_id}: "
                                  f"{stream.last_error if stream else 'starting'}")  # fmt: skip
            resp.headers["Retry-After"] = "2"
            return resp, status
        resp = flask.Response(got.jpeg, mimetype="image/jpeg")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Redacted"] = got.marker
        if got.captured_utc is not None:
            resp.headers["X-Timestamp"] = f"{got.captured_utc.timestamp():.3f}"
        return resp

    @server.get("/api/v1/video/streams")
    def video_streams():
        out = []
        for camera_id, s in sorted(hub.streams().items()):
            out.append(
                {
                    "camera_id": camera_id,
                    "status": s.status,
                    "last_frame": s.last_frame_utc.isoformat() if s.last_frame_utc else None,
                    "viewers": s.viewers,
                    "source": redact_url(s.display_url),
                    "last_error": scrub_text(s.last_error),
                    "counters": s.stats(),
                }
            )
        return flask.jsonify({"streams": out})
