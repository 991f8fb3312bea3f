"""Open311 GeoReport v2 (JSON): existing civic-reporting clients file and read reports.

Routes (https://wiki.open311.org/GeoReport_v2)
------
``GET  /open311/v2/services.json``            the category dictionary as services
``GET  /open311/v2/services/<code>.json``     service definition (no extra attributes)
``POST /open311/v2/requests.json``            file a request (form-encoded, ``api_key``)
``GET  /open311/v2/requests.json``            requests, filtered (ids, service, dates, status)
``GET  /open311/v2/requests/<id>.json``       one request (a one-item list, per the spec)

``api_key`` (form field or query parameter) is a GridSight API token: a small WSGI shim turns
it into ``Authorization: Bearer`` before the access guard runs, so the usual token roles
apply. Coordinates are WGS-84. Errors follow the spec: ``[{"code": 400, "description": ...}]``.
Reporter names and phone numbers are stored but never returned.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from urllib.parse import parse_qs

import flask

from dashboard.context import AppContext
from dashboard.policy import declare_policy
from dashboard.routes.api import MAX_ID, intake_writer
from dashboard.scoping import request_scope
from layers.services import NotFoundError, cases
from layers.services import incidents as incident_service
from layers.services.published import center_names
from layers.services.transaction import QueryError, run

log = logging.getLogger(__name__)

PREFIX = "/open311/v2"
MAX_FORM_BYTES = 1 << 20
READ_ROLES = {"operator", "dispatcher", "admin", "intake"}
WRITE_ROLES = {"dispatcher", "admin", "intake"}
CLOSED = ("closed", "evaluated")
POST_FIELDS = {"api_key", "jurisdiction_id", "service_code", "lat", "long", "address_string",
               "address_id", "email", "device_id", "account_id", "first_name", "last_name",
               "phone", "description", "media_url"}  # fmt: skip


class Open311Error(Exception):
    """An error answered in the GeoReport v2 error format."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


class ApiKeyShim:
    """WSGI middleware: ``api_key`` (query or form) on /open311 becomes a Bearer header."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/open311/") and not environ.get("HTTP_AUTHORIZATION"):
            key = parse_qs(environ.get("QUERY_STRING", "")).get("api_key", [None])[0]
            ctype = environ.get("CONTENT_TYPE", "")
            if key is None and ctype.startswith("application/x-www-form-urlencoded"):
                try:
                    length = int(environ.get("CONTENT_LENGTH") or 0)
                except ValueError:
                    length = 0
                if 0 < length <= MAX_FORM_BYTES:
                    body = environ["wsgi.input"].read(length)
                    environ["wsgi.input"] = io.BytesIO(body)
                    form = parse_qs(body.decode("utf-8", "replace"))
                    key = form.get("api_key", [None])[0]
            if key:
                environ["HTTP_AUTHORIZATION"] = f"Bearer {key.strip()}"
        return self.app(environ, start_response)


def _is_request_id(text: str) -> bool:
    """Return True if ``text`` can be a request id (digits, at most MAX_ID; no huge ints)."""
    return text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= MAX_ID


def _service_codes(value: str | None) -> list[str]:
    """Return the comma-separated service codes of a query, or raise Open311Error 400."""
    from dashboard.routes.api import ApiError, parse_categories

    try:
        return parse_categories(value) or []
    except ApiError as exc:
        raise Open311Error(400, "service_code: " + exc.errors[0]["message"]) from None


def _error(code: int, description: str):
    resp = flask.jsonify([{"code": code, "description": description}])
    resp.status_code = code
    return resp


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _time(name: str, value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(
            400, f"{name}: use W3C date-time, e.g. 2026-11-23T08:00:00+08:00"
        ) from None
    if t.tzinfo is None:
        raise Open311Error(400, f"{name}: add a timezone, e.g. 2026-11-23T08:00:00+08:00")
    if not 1970 <= t.year <= 2200:
        raise Open311Error(400, f"{name}: give a date between 1970 and 2200")
    return t


def request_doc(row, services: dict[str, dict], centers: dict[int, str]) -> dict:
    """Return one incident as a GeoReport v2 service request."""
    svc = services.get(row.category_code, {})
    closed = row.status in CLOSED
    notes = f"GridSight status: {row.status}"
    if row.duplicate_of:
        notes += f"; merged into request {row.duplicate_of}"
    updated = max(
        (t for t in (row.created_at, row.registered_at, row.dispatched_at, row.reported_at,
                     row.closed_at, row.evaluated_at) if t is not None),
    )  # fmt: skip
    return {
        "service_request_id": str(row.id), "status": "closed" if closed else "open",
        "status_notes": notes, "service_name": svc.get("name_zh", row.category_code),
        "service_code": row.category_code, "description": row.description,
        "agency_responsible": centers.get(row.center_id, ""), "service_notice": "",
        "requested_datetime": _iso(row.created_at), "updated_datetime": _iso(updated),
        "expected_datetime": _iso(row.due_at), "address": "", "address_id": "", "zipcode": "",
        "lat": row.lat, "long": row.lon, "media_url": "",
    }  # fmt: skip


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Add the Open311 GeoReport v2 routes, the api_key shim and their policies."""
    bp = flask.Blueprint("open311", __name__, url_prefix=PREFIX)

    @bp.errorhandler(Open311Error)
    def _o311(exc: Open311Error):
        return _error(exc.code, exc.description)

    @bp.errorhandler(QueryError)
    def _db(exc: QueryError):
        log.warning("open311 database error: %s", type(exc).__name__)
        return _error(503, "database unavailable; retry in a few seconds")

    @bp.errorhandler(404)
    def _404(_exc):
        return _error(404, "not found; see /open311/v2/services.json")

    @bp.errorhandler(405)
    def _405(_exc):
        return _error(405, f"{flask.request.method} not allowed here")

    def services_by_code() -> dict[str, dict]:
        return {c["code"]: c for c in run(ctx.db, incident_service.list_categories)}

    @bp.get("/services.json")
    def services():
        out = [
            {"service_code": c["code"], "service_name": c["name_zh"],
             "description": f"{c['name_zh']} / {c['name_en']}", "metadata": False,
             "type": "realtime", "keywords": c["name_en"],
             "group": (c["parent_code"] or c["code"]).split(".")[0]}
            for c in services_by_code().values()
        ]  # fmt: skip
        return flask.jsonify(out)

    @bp.get("/services/<code>.json")
    def service_definition(code: str):
        if code not in services_by_code():
            raise Open311Error(404, f"service_code {code!r} is unknown; see services.json")
        return flask.jsonify({"service_code": code, "attributes": []})

    @bp.post("/requests.json")
    def post_request():
        form = flask.request.form
        unknown = [k for k in form if k not in POST_FIELDS and not k.startswith("attribute[")]
        if unknown:
            raise Open311Error(400, f"{unknown[0]}: not a GeoReport v2 field")
        code = form.get("service_code", "").strip()
        if not code:
            raise Open311Error(400, "service_code: required; see services.json")
        if not form.get("lat") or not form.get("long"):
            raise Open311Error(400, "lat/long: required (WGS-84 degrees); addresses are not "
                               "geocoded on this offline system")  # fmt: skip
        try:
            lat, lon = float(form["lat"]), float(form["long"])
        except ValueError:
            raise Open311Error(400, "lat/long: must be decimal degrees (WGS-84)") from None
        name = " ".join(p for p in (form.get("last_name", ""), form.get("first_name", "")) if p)
        data = {"lon": lon, "lat": lat, "category": code, "source": "open311",
                "description": form.get("description", ""), "reporter_name": name[:64],
                "reporter_phone": form.get("phone", "")}  # fmt: skip
        from dashboard.routes.api import principal

        actor, role = principal()
        try:
            doc, _ = intake_writer(ctx).create(data, actor=actor, role=role)
        except incident_service.IncidentInputError as exc:
            first = exc.errors[0]
            field = {"lon": "long", "category": "service_code", "lon/lat": "lat/long"}.get(
                first["field"], first["field"]
            )
            raise Open311Error(400, f"{field}: {first['message']}") from None
        resp = flask.jsonify([{"service_request_id": str(doc["id"]),
                               "service_notice": "received; check status at "
                               f"{PREFIX}/requests/{doc['id']}.json", "account_id": None}])  # fmt: skip
        resp.status_code = 201
        return resp

    def _answer(rows) -> flask.Response:
        svcs = services_by_code()
        centers = run(ctx.db, center_names, {r.center_id for r in rows if r.center_id})
        return flask.jsonify([request_doc(r, svcs, centers) for r in rows])

    @bp.get("/requests.json")
    def get_requests():
        args = flask.request.args
        known = {"api_key", "jurisdiction_id", "service_request_id", "service_code",
                 "start_date", "end_date", "status"}  # fmt: skip
        unknown = sorted(set(args) - known)
        if unknown:
            raise Open311Error(
                400, f"{unknown[0]}: not a parameter; use {', '.join(sorted(known))}"
            )
        status = args.get("status")
        if status not in (None, "", "open", "closed"):
            raise Open311Error(400, "status: open or closed")
        ids = []
        for part in (args.get("service_request_id") or "").split(",", 1000):
            if part.strip():
                if not _is_request_id(part.strip()):
                    raise Open311Error(
                        400, f"service_request_id: {part[:40]!r} is not a request id"
                    )
                ids.append(int(part))
        end = _time("end_date", args.get("end_date")) or dt.datetime.now(dt.UTC)
        start = _time("start_date", args.get("start_date")) or end - dt.timedelta(days=90)
        if ids:
            rows = run(ctx.db, cases.find_many, ids[:1000], scope=request_scope())
        else:
            codes = _service_codes(args.get("service_code"))
            statuses = {"open": ["open"], "closed": list(CLOSED)}.get(status or "", None)
            rows, _ = run(
                ctx.db, incident_service.list_incidents, scope=request_scope(), start=start,
                end=end, category=codes or None, status=statuses, limit=1000,
            )  # fmt: skip
        return _answer(rows)

    @bp.get("/requests/<request_id>.json")
    def get_request(request_id: str):
        if not _is_request_id(request_id):
            raise Open311Error(404, f"no service request {request_id[:40]!r}")
        try:
            row = run(ctx.db, incident_service.get_incident, int(request_id), scope=request_scope())
        except NotFoundError:
            raise Open311Error(404, f"no service request {request_id!r}") from None
        return _answer([row])

    server.register_blueprint(bp)
    server.wsgi_app = ApiKeyShim(server.wsgi_app)
    declare_policy(server, f"{PREFIX}/services.json", "public")
    declare_policy(server, f"{PREFIX}/services", "public")
    declare_policy(server, f"{PREFIX}/requests.json", READ_ROLES, methods=("GET",))
    declare_policy(server, f"{PREFIX}/requests.json", WRITE_ROLES, methods=("POST",))
    declare_policy(server, f"{PREFIX}/requests", READ_ROLES, methods=("GET",))
