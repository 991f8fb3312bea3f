"""Redacted live video.

Routes
------
``GET /video/<camera_id>.mjpg``  multipart MJPEG of the camera's *redacted* stream
``GET /video/<camera_id>.jpg``   newest redacted snapshot (503 + Retry-After if none yet)
``GET /api/v1/video/streams``    running streams: status, viewers, counters (no URLs with secrets)

The redaction-rule API is ``dashboard/routes/rules.py``; the rules a stream gets are held to
the deployment's privacy floor inside ``layers.services.video.hub_bindings``.

Every frame served here went through ``streams.pipeline.RedactionPipeline`` inside the one
``StreamHub`` of the app (``ctx.services["stream_hub"]``): one reader per camera, however many
viewers. With ``GRIDSIGHT_RAY_ADDRESS`` set that hub is a ``streams.cluster.RayStreamRelay``
(same interface): each camera then runs once in the Ray cluster, whichever web process the
viewer reached, and only its redacted JPEGs (or a "stream restarting" placeholder) arrive
here. Hooks for access control (issue 8), looked up on ``ctx`` or in ``ctx.services``:

- ``authorize_video(request, camera_id) -> bool``: False -> 403. Absent -> 403 as well:
  access control fails closed, a missing hook never opens video to everyone.
- ``unmask_grant(request, camera_id) -> str | None``: the ONLY way to switch redaction off.
  ``unmask_grant_for(user_name, camera_id)`` re-checks a running unredacted MJPEG view every
  ``GRANT_RECHECK_S``; when it returns None (or is absent) the view falls back to redacted.
  A string (e.g. "UNMASKED alice 2026-11-23T17:00Z grant#12") is burned into every frame as a
  watermark, detections and liftable masks are lifted, permanent masks stay. None (default,
  also when the hook is absent) -> redacted.
- ``audit(event, **fields)``: called for every video view (start and end, redacted or not).
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

import flask

from dashboard.settings import floor_of
from layers.services import NotFoundError
from layers.services import cameras as camera_service
from layers.services import video as video_service
from streams.cluster import RayStreamRelay, RedactionCluster, deployment_key
from streams.hub import HubSettings, StreamHub
from streams.sources import redact_url, scrub_text

log = logging.getLogger(__name__)

BOUNDARY = "gridsightframe"
KEEPALIVE_S = 5.0
GRANT_RECHECK_S = 5.0


def _hook(ctx: Any, name: str):
    hook = getattr(ctx, name, None)
    if hook is None:
        hook = getattr(ctx, "services", {}).get(name)
    return hook


def build_hub(ctx: Any) -> StreamHub | RayStreamRelay:
    """Return the app's video hub: in-process ``StreamHub``, or the Ray relay in cluster mode.

    Both read cameras and rules and write status through ``layers.services.video.hub_bindings``
    (in cluster mode inside the redaction workers, on their own database connection).
    """
    settings = ctx.settings
    sample_video = getattr(settings, "sample_video", None)
    hub_settings = getattr(ctx, "services", {}).get("hub_settings") or HubSettings()
    address = getattr(settings, "ray_address", None)
    floor = floor_of(settings)
    if not address:
        return StreamHub.from_bindings(
            video_service.hub_bindings(ctx.db, sample_video, floor), hub_settings
        )
    db_url = video_service.portable_db_url(ctx.db.url)
    video_path = str(Path(sample_video).resolve()) if sample_video else None
    floor_data = floor.model_dump(mode="json")
    cluster = RedactionCluster(
        address,
        functools.partial(video_service.hub_bindings_for_url, db_url, video_path, floor_data),
        # a worker made under another privacy floor is refused, never reused
        deployment_key=deployment_key(db_url, video_path, floor.fingerprint()),
        workers=settings.ray_workers,
        namespace=settings.ray_namespace,
        hub_settings=hub_settings.model_copy(update={"idle_stop_s": settings.ray_idle_s}),
        num_cpus=settings.ray_worker_cpus,
        bind_cpus=settings.ray_bind_cpus,
    )
    log.info("video: cluster mode, %d redaction workers", settings.ray_workers)
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


def register(server: flask.Flask, ctx: Any) -> None:
    """Add the video routes to ``server`` (the hub starts with the first stream)."""
    services = getattr(ctx, "services", None)
    hub = services.get("stream_hub") if services is not None else None
    if hub is None:
        hub = build_hub(ctx)
        if services is not None:
            services["stream_hub"] = hub

    def check_camera(camera_id: int):
        authorize = _hook(ctx, "authorize_video")
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
        grant = _hook(ctx, "unmask_grant")
        return grant(flask.request, camera_id) if grant is not None else None

    def grant_still_valid(user: str, camera_id: int) -> str | None:
        # Without the context-free hook a running unredacted view cannot be re-checked, so it
        # is ended (None = back to redacted) rather than trusted until the viewer leaves.
        hook = _hook(ctx, "unmask_grant_for")
        if hook is None:
            return None
        try:
            return hook(user, camera_id)
        except Exception:  # noqa: BLE001 - cannot verify the grant: fail closed to redacted
            log.exception("re-checking the unmask grant of %s on camera %s failed", user, camera_id)
            return None

    def audit(event: str, **fields) -> None:
        hook = _hook(ctx, "audit")
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

        def frames():
            # The subscription is taken inside the generator so that a response that is never
            # iterated (HEAD, client gone at once) holds no viewer slot. An unredacted view
            # re-checks its grant every GRANT_RECHECK_S (``unmask_grant_for``) and falls back
            # to the redacted stream when the grant has expired or was revoked.
            started = time.monotonic()
            audit("video.view.start", user=user, camera_id=camera_id, redacted=mark is None)
            current = mark
            try:
                while True:
                    seq, last = 0, None
                    recheck_at = time.monotonic() + GRANT_RECHECK_S
                    with hub.subscribe(camera_id, watermark=current) as wait:
                        while True:
                            if current is not None and time.monotonic() >= recheck_at:
                                recheck_at = time.monotonic() + GRANT_RECHECK_S
                                still = grant_still_valid(user, camera_id)
                                if still != current:
                                    audit("video.unmask.end", user=user, camera_id=camera_id)
                                    current = still
                                    break  # re-subscribe to the stream this viewer may see
                            got = wait(seq, KEEPALIVE_S if current is None else 1.0)
                            if got is not None:
                                seq, last = got
                            elif wait.stopped():
                                return  # the hub is shutting down: end the response
                            elif last is None:
                                continue
                            # On a timeout the last frame is sent again: that keeps proxies
                            # open and lets us notice a viewer who has gone.
                            yield (
                                (
                                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                    f"Content-Length: {len(last)}\r\n\r\n"
                                ).encode()
                                + last
                                + b"\r\n"
                            )
            finally:
                audit(
                    "video.view.end",
                    user=user,
                    camera_id=camera_id,
                    redacted=mark is None,
                    seconds=round(time.monotonic() - started, 1),
                )

        resp = flask.Response(frames(), mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Redacted"] = "true" if mark is None else "false"
        return resp

    @server.get("/video/<int:camera_id>.jpg")
    def video_snapshot(camera_id: int):
        denied = check_camera(camera_id)
        if denied is not None:
            return denied
        mark = watermark_for(camera_id)
        timeout = max(0.0, min(flask.request.args.get("wait", 5.0, type=float), 15.0))
        if mark is None:
            data = hub.snapshot(camera_id, timeout=timeout)
        else:
            with hub.subscribe(camera_id, watermark=mark) as wait:
                got = wait(0, timeout)
                data = got[1] if got else None
        audit("video.snapshot", user=_user_name(), camera_id=camera_id, redacted=mark is None)
        if data is None:
            stream = hub.streams().get(camera_id)
            resp, status = _error(503, f"no frame yet from camera {camera_id}: "
                                  f"{stream.last_error if stream else 'starting'}")  # fmt: skip
            resp.headers["Retry-After"] = "2"
            return resp, status
        resp = flask.Response(data, mimetype="image/jpeg")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Redacted"] = "true" if mark is None else "false"
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
