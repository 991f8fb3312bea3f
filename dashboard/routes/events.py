"""``GET /api/v1/events``: the live event feed as Server-Sent Events (video walls, machines).

Each message is one committed change::

    id: 1718000000000-0
    event: incident.created
    data: {"id": 5, "grid_id": 17, "category": "ENV", "priority": 3, ...}

Kinds: ``incident.created``, ``incident.updated`` (workflow transitions: status, assignee,
escalation) and ``camera.status``. The ``id`` is the event id (the Redis stream id with
several workers); a reconnecting ``EventSource`` sends it back as ``Last-Event-ID`` and the
stream resumes right after it, from any worker. When events may have been lost in between
(the id is older than what the server still holds, or the bus lost its connection for
longer than Redis keeps events) the stream sends ``event: resync``: reload the state from
``/api/v1/incidents``. Idle streams carry a comment line every ``heartbeat`` seconds; a
stream ends after ``MAX_STREAM_S`` (the client reconnects and resumes), and within
``RECHECK_S`` of its session ending or its account or token being disabled or revoked
(``dashboard.auth.principal_still_valid``, asked of the database).

Open streams are capped per user or token (``GRIDSIGHT_EVENTS_MAX_STREAMS_PER_USER``) and per
web process (``GRIDSIGHT_EVENTS_MAX_STREAMS``): each holds a server thread, and one more
answers 429 with ``Retry-After`` and the setting's name (``dashboard.stream_caps``, the
mechanism of the MJPEG caps).

Who: operators, dispatchers and admins (session or token) and ``gis`` tokens. A user with a
district scope only gets the incidents of those districts and the cameras in scope.
Payloads carry no personal data: fetch details from ``/api/v1/incidents/<id>``.

Query parameters: ``kinds`` (comma list), ``heartbeat`` (1-60 s, default 15),
``last_event_id`` (for clients that cannot send the header).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import flask

from dashboard.context import AppContext
from dashboard.stream_caps import StreamLimiter
from layers.events import EVENT_KINDS
from layers.services.scope import visible_grid_ids
from layers.services.transaction import run
from streams.events import Event, EventBus, is_event_id

log = logging.getLogger(__name__)

PATH = "/api/v1/events"
EVENT_ROLES = frozenset({"operator", "dispatcher", "admin", "gis"})
HEARTBEAT_S = 15
MAX_STREAM_S = 600  # threads are held per stream: end now and then, the client resumes
RECHECK_S = 5.0  # a logged-out session, disabled account or revoked token: the stream ends
RETRY_MS = 3000
PARAMS = {"kinds", "heartbeat", "last_event_id"}


def _error(status: int, field: str, message: str) -> flask.Response:
    resp = flask.jsonify({"error": message, "status": status,
                          "errors": [{"field": field, "message": message}]})  # fmt: skip
    resp.status_code = status
    return resp


def sse_message(event: Event) -> str:
    """Return one Server-Sent Events message for ``event`` (id, event kind, JSON data)."""
    data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"


def _resync_message(cursor: str) -> str:
    data = json.dumps({"reason": "events may have been lost; reload the state from "
                       "/api/v1/incidents"})  # fmt: skip
    return f"id: {cursor}\nevent: resync\ndata: {data}\n\n"


class _Viewer:
    """Who reads a stream and what they may see (captured at connect, re-checked later)."""

    def __init__(self, ctx: AppContext) -> None:
        from dashboard.auth import current_principal
        from dashboard.scoping import request_scope

        self.ctx = ctx
        self.principal = current_principal()
        self.scope = request_scope()
        self.grid_ids = run(ctx.db, visible_grid_ids, self.scope)

    def may_see(self, event: Event) -> bool:
        """Return True if the viewer's scopes include the event's incident or camera."""
        if event.kind.startswith("incident."):
            return self.grid_ids is None or event.data.get("grid_id") in self.grid_ids
        if event.kind == "camera.status":
            return self.scope.allows_camera(event.data.get("gb_id", ""), event.data.get("id"))
        return False

    def still_allowed(self) -> bool:
        """Return True if the session, account or token may still read (asks the database)."""
        from dashboard.auth import principal_still_valid

        return principal_still_valid(self.principal, self.ctx)


def stream_events(
    bus: EventBus,
    viewer: _Viewer,
    after: str | None,
    kinds: frozenset[str],
    heartbeat_s: float,
    max_s: float = MAX_STREAM_S,
) -> Iterator[str]:
    """Yield the SSE text of the stream: events after ``after`` the viewer may see, heartbeats."""
    yield f"retry: {RETRY_MS}\n: GridSight live events ({bus.backend})\n\n"
    cursor = after if after is not None else bus.last_id
    generation = None  # the first read judges the client's id by the gaps the ring recorded
    started = last_check = last_sent = time.monotonic()
    while not bus.ring.closed:
        now = time.monotonic()
        if now - started >= max_s:
            return
        if now - last_check >= RECHECK_S:
            last_check = now
            if not viewer.still_allowed():
                log.info("event stream of %s ended: access revoked", viewer.principal.actor)
                return
        # wake for the next access check even when the heartbeat is longer
        wait = max(0.05, min(heartbeat_s - (now - last_sent), RECHECK_S - (now - last_check)))
        batch = bus.read(cursor, generation=generation, timeout=wait)
        if batch.gap:
            yield _resync_message(batch.cursor)
        sent = 0
        for ev in batch.events:
            if ev.kind in kinds and viewer.may_see(ev):
                sent += 1
                yield sse_message(ev)
        cursor, generation = batch.cursor, batch.generation
        if batch.events and not sent:
            # nothing for this viewer, but move its Last-Event-ID along
            yield f"id: {cursor}\n: filtered\n\n"
        if batch.events or batch.gap:
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent >= heartbeat_s:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"


def events_cap(settings) -> int:
    """Return the cap on open event streams of one web process.

    One worker (waitress) serves them from the stream pool. With several gunicorn workers
    they share a worker's ``threads`` with pages and MJPEG views (at most half): event
    streams may take at most a quarter.
    """
    cap = settings.events.max_streams
    if settings.web.workers > 1:
        cap = min(cap, max(1, settings.web.threads // 4))
    return cap


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Add ``GET /api/v1/events`` (SSE) and its access policy to ``server``."""
    from dashboard.auth import current_principal, declare_policy

    limiter = StreamLimiter(
        events_cap(ctx.settings),
        ctx.settings.events.max_streams_per_user,
        what="live event streams",
        total_setting="GRIDSIGHT_EVENTS_MAX_STREAMS",
        per_user_setting="GRIDSIGHT_EVENTS_MAX_STREAMS_PER_USER",
    )
    ctx.event_streams = limiter

    @server.get(PATH)
    def live_events():
        args = flask.request.args
        unknown = sorted(set(args) - PARAMS)
        if unknown:
            return _error(400, unknown[0], f"not a parameter here; use {', '.join(sorted(PARAMS))}")
        kinds = frozenset(k for k in (args.get("kinds") or "").split(",") if k) or frozenset(
            EVENT_KINDS
        )
        bad = sorted(kinds - set(EVENT_KINDS))
        if bad:
            return _error(400, "kinds", f"{bad[0]!r} is unknown; use {', '.join(EVENT_KINDS)}")
        try:
            heartbeat = int(args.get("heartbeat") or HEARTBEAT_S)
        except ValueError:
            return _error(400, "heartbeat", "give whole seconds between 1 and 60")
        if not 1 <= heartbeat <= 60:
            return _error(400, "heartbeat", "give whole seconds between 1 and 60")
        after = flask.request.headers.get("Last-Event-ID") or args.get("last_event_id") or None
        if after is not None and not is_event_id(after.strip()):
            field = (
                "Last-Event-ID" if flask.request.headers.get("Last-Event-ID") else "last_event_id"
            )
            return _error(400, field, "an event id such as 1718000000000-0, as sent in id: lines")
        bus: EventBus | None = ctx.events
        if bus is None:
            return _error(503, "events", "the live event bus is not running; retry shortly")
        principal = current_principal()
        who = principal.actor if principal is not None else "unknown"
        refused = limiter.acquire(who)
        if refused is not None:
            resp = _error(429, "events", refused)
            resp.headers["Retry-After"] = "5"
            return resp
        release = limiter.releaser(who)
        try:
            viewer = _Viewer(ctx)
        except BaseException:
            release()
            raise

        def body() -> Iterator[str]:
            try:
                yield from stream_events(bus, viewer, after.strip() if after else None, kinds,
                                         heartbeat)  # fmt: skip
            finally:
                release()

        resp = flask.Response(body(), mimetype="text/event-stream")
        resp.call_on_close(release)
        resp.headers["Cache-Control"] = "no-cache"
        resp.headers["X-Accel-Buffering"] = "no"  # a reverse proxy must not hold messages back
        return resp

    declare_policy(server, PATH, EVENT_ROLES, methods=("GET",))
