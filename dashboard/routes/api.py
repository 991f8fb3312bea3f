"""The incident REST API (``/api/v1``): intake, queries, workflow actions, KPIs, OpenAPI.

Routes
------
``POST /api/v1/incidents``                 one incident (JSON); ``Idempotency-Key`` makes
                                           retries safe; 201 once committed (group commit)
``POST /api/v1/incidents/batch``           ``{"incidents": [...]}`` up to 1000; per-item results
``GET  /api/v1/incidents``                 bbox / start / end / category / status filters, paging
``GET  /api/v1/incidents/<id>``            one incident, its history, duplicates, linked reports
``POST /api/v1/incidents/<id>/actions``    a workflow action (register, dispatch, close, ...)
``GET  /api/v1/categories``                the category dictionary
``GET  /api/v1/kpi``                       KPIs as JSON, CSV or XLSX
``GET  /api/v1/openapi.json``              the OpenAPI 3.1 document of all of the above
                                           (``dashboard.routes.openapi``)

Errors are JSON ``{"error": ..., "errors": [{"field", "message"}]}`` with a 4xx status;
database failures become 503 with a retry hint, never a 500 with a traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal

import flask
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from werkzeug.exceptions import HTTPException

from dashboard.auth import current_principal
from dashboard.context import AppContext
from dashboard.policy import declare_policy
from dashboard.scoping import request_reveal, request_scope
from layers.services import MAX_ROW_ID, NotFoundError, ServiceError, audit, cases, workflow
from layers.services import incidents as incident_service
from layers.services import kpi as kpi_service
from layers.services.incidents import IncidentInputError
from layers.services.transaction import QueryError, run

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_ID = MAX_ROW_ID  # ids are INTEGER (32-bit on PostgreSQL): a larger one cannot exist
MAX_BATCH = 1000
MAX_LIMIT = 1000
_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
INTAKE_ROLES = {"dispatcher", "admin", "intake"}
READ_ROLES = {"operator", "dispatcher", "admin"}
KPI_ROLES = {"operator", "dispatcher", "admin", "auditor"}


class ApiError(Exception):
    """An error answered as JSON with ``status``; ``errors`` lists {field, message}."""

    def __init__(self, status: int, message: str, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


def error_response(status: int, message: str, errors: list[dict] | None = None) -> flask.Response:
    """Return a Flask JSON error response."""
    resp = flask.jsonify({"error": message, "status": status, "errors": errors or []})
    resp.status_code = status
    return resp


class ActionIn(BaseModel):
    """A workflow action request."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    action: Literal[tuple(workflow.ACTIONS)] = Field(  # type: ignore[valid-type]
        ..., description="one of " + ", ".join(workflow.ACTIONS)
    )
    reason: str = Field("", max_length=2000)
    assignee_id: int | None = Field(None, ge=1, le=MAX_ID)
    into: int | None = Field(None, ge=1, le=MAX_ID)
    hours: float | None = Field(None, gt=0, le=10_000)
    rework_to: Literal["handling", "dispatched"] = "handling"
    distinct: bool = Field(
        False,
        description="dispatch: confirm it is not the same problem as a nearby dispatched report",
    )


class BatchIn(BaseModel):
    """A batch of incidents."""

    model_config = ConfigDict(extra="forbid")

    incidents: list[dict[str, Any]] = Field(..., min_length=1, max_length=MAX_BATCH)


def _pydantic_errors(exc: ValidationError) -> list[dict]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "body",
         "message": e["msg"].removeprefix("Value error, ")}
        for e in exc.errors()
    ]  # fmt: skip


def principal() -> tuple[str, str]:
    """Return (actor, role) of the request's principal (``anonymous``/``none`` if unknown)."""
    p = current_principal()
    if p is None:
        return "anonymous", "none"
    return p.actor, p.role


def json_body() -> Any:
    """Return the parsed JSON body or raise ApiError 400 saying how to send it."""
    try:
        data = flask.request.get_json(silent=True)
    except RecursionError:  # the JSON parser gave up on a body nested too deeply
        data = _TOO_DEEP
    if data is not _TOO_DEEP and json_depth(data) > MAX_JSON_DEPTH:
        data = _TOO_DEEP
    if data is _TOO_DEEP:
        raise ApiError(400, "the body is nested too deeply", [{"field": "body", "message":
                       f"JSON nested more than {MAX_JSON_DEPTH} levels; send a flat object"}])  # fmt: skip
    if data is None:
        raise ApiError(400, "the body must be JSON; send Content-Type: application/json",
                       [{"field": "body", "message": "not valid JSON"}])  # fmt: skip
    return data


MAX_JSON_DEPTH = 32
_TOO_DEEP = object()


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Return how deeply ``value`` nests lists/dicts, counting no further than ``limit + 1``."""
    depth, level = 0, [value]
    while level and depth <= limit:
        level = [v for c in level if isinstance(c, dict | list)
                 for v in (c.values() if isinstance(c, dict) else c)]  # fmt: skip
        depth += 1
    return depth - 1 if not level else depth


def parse_int(name: str, value: str | None, default: int, lo: int, hi: int) -> int:
    """Return ``value`` as an int in [lo, hi] or raise ApiError 400 naming the parameter."""
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer",
                       [{"field": name, "message": f"{value!r} is not an integer"}]) from None  # fmt: skip
    if not lo <= n <= hi:
        raise ApiError(400, f"{name} out of range",
                       [{"field": name, "message": f"give {lo}..{hi}, not {n}"}])  # fmt: skip
    return n


def parse_time(name: str, value: str | None) -> dt.datetime | None:
    """Return an aware datetime from ISO 8601 or raise ApiError 400 naming the parameter."""
    if value is None or value == "":
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name} is not a date-time", [{"field": name, "message":
                       "use ISO 8601 with a timezone, e.g. 2026-11-23T08:00:00+08:00"}]) from None  # fmt: skip
    if t.tzinfo is None:
        raise ApiError(400, f"{name} needs a timezone", [{"field": name, "message":
                       "add a UTC offset, e.g. 2026-11-23T08:00:00+08:00"}])  # fmt: skip
    if not 1970 <= t.year <= 2200:  # also keeps the UTC conversion from overflowing
        raise ApiError(400, f"{name} out of range", [{"field": name, "message":
                       "give a date between 1970 and 2200"}])  # fmt: skip
    return t


def parse_bbox(value: str | None) -> tuple[float, float, float, float] | None:
    """Return the bbox query parameter (minx,miny,maxx,maxy WGS-84) or raise ApiError 400."""
    if value is None or value == "":
        return None
    import math

    parts = value.split(",")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) != 4 or not all(math.isfinite(v) for v in nums):
        raise ApiError(400, "bad bbox", [{"field": "bbox", "message":
                       "give four numbers minx,miny,maxx,maxy in WGS-84 degrees"}])  # fmt: skip
    if nums[0] > nums[2] or nums[1] > nums[3]:
        raise ApiError(400, "bad bbox", [{"field": "bbox", "message":
                       "min > max; give west,south,east,north"}])  # fmt: skip
    return nums[0], nums[1], nums[2], nums[3]


_CATEGORY = re.compile(r"^[A-Za-z0-9_]{1,32}(\.[A-Za-z0-9_]{1,32}){0,3}$")
MAX_CATEGORIES = 50


def parse_categories(value: str | None) -> list[str] | None:
    """Return the comma-separated category codes of a query, or raise ApiError 400.

    Codes are compared for equality (or as a dotted parent), never as LIKE patterns, so
    ``%`` or ``_`` can never widen the filter; a code is letters, digits and ``_`` parts.
    """
    if not value:
        return None
    codes = [c for c in value.split(",", MAX_CATEGORIES) if c]
    if len(codes) > MAX_CATEGORIES:
        raise ApiError(400, "too many categories", [{"field": "category", "message":
                       f"give at most {MAX_CATEGORIES} comma-separated codes"}])  # fmt: skip
    bad = [c for c in codes if not _CATEGORY.match(c)]
    if bad:
        raise ApiError(400, "bad category", [{"field": "category", "message":
                       f"{bad[0][:40]!r} is not a category code (e.g. DISPUTE or "
                       "DISPUTE.NEIGHBOR; see /api/v1/categories)"}])  # fmt: skip
    return codes or None


def check_params(allowed: set[str]) -> None:
    """Raise ApiError 400 for query parameters the endpoint does not know."""
    unknown = sorted(set(flask.request.args) - allowed)
    if unknown:
        raise ApiError(400, "unknown query parameter", [{"field": unknown[0], "message":
                       f"not a parameter here; use {', '.join(sorted(allowed))}"}])  # fmt: skip


def intake_writer(ctx: AppContext) -> incident_service.IntakeWriter:
    """Return the app's group-commit IntakeWriter (created and started on first use)."""
    if ctx.intake_writer is None:
        ctx.intake_writer = incident_service.IntakeWriter(ctx.db)
    return ctx.intake_writer.start()


def create_one(
    ctx: AppContext, data: Any, key: str | None, actor: str, role: str
) -> tuple[dict, bool]:
    """Return (incident dict, created) after the incident is committed; raise ApiError."""
    if not isinstance(data, dict):
        raise ApiError(422, "an incident must be a JSON object",
                       [{"field": "body", "message": "send an object with lon, lat, category"}])  # fmt: skip
    try:
        return intake_writer(ctx).create(data, idempotency_key=key, actor=actor, role=role)
    except incident_service.DuplicateExternalIdError as exc:
        raise ApiError(409, "external_id already used", exc.errors) from None
    except incident_service.IdempotencyConflictError as exc:
        raise ApiError(409, "Idempotency-Key reused with another body", exc.errors) from None
    except IncidentInputError as exc:
        raise ApiError(422, "the incident is not valid", exc.errors) from None
    except FutureTimeout:
        raise ApiError(503, "the database is busy; retry with the same Idempotency-Key") from None


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Add the ``/api/v1`` incident routes and their access policies to ``server``."""
    bp = flask.Blueprint("incident_api", __name__, url_prefix=PREFIX)

    @bp.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.errors)

    @bp.errorhandler(QueryError)
    def _db_error(exc: QueryError):
        log.warning("database error in %s: %s", flask.request.path, type(exc).__name__)
        resp = error_response(503, "the database is unavailable; retry in a few seconds")
        resp.headers["Retry-After"] = "5"
        return resp

    @bp.errorhandler(NotFoundError)
    def _not_found(exc: NotFoundError):
        return error_response(404, str(exc).strip("'\""))

    @bp.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        msg = str(exc)
        field = msg.split(":", 1)[0] if ":" in msg else "query"
        return error_response(400, msg, [{"field": field, "message": msg}])

    @bp.errorhandler(404)
    def _404(_exc):
        return error_response(404, "no such resource; see /api/v1/openapi.json")

    @bp.errorhandler(405)
    def _405(_exc):
        return error_response(405, f"{flask.request.method} is not allowed here")

    @bp.post("/incidents")
    def post_incident():
        key = flask.request.headers.get("Idempotency-Key")
        if key is not None and not _KEY.match(key):
            raise ApiError(400, "bad Idempotency-Key", [{"field": "Idempotency-Key", "message":
                           "1-128 printable ASCII characters without spaces, e.g. a UUID"}])  # fmt: skip
        actor, role = principal()
        doc, created = create_one(ctx, json_body(), key, actor, role)
        # possible duplicates are not computed on this hot path: GET /incidents/<id> and the
        # dispatcher queue show them
        resp = flask.jsonify(doc)
        resp.status_code = 201 if created else 200
        resp.headers["Location"] = f"{PREFIX}/incidents/{doc['id']}"
        if not created:
            resp.headers["Idempotent-Replayed"] = "true"
        return resp

    @bp.post("/incidents/batch")
    def post_batch():
        try:
            batch = BatchIn.model_validate(json_body())
        except ValidationError as exc:
            raise ApiError(422, "the batch is not valid", _pydantic_errors(exc)) from None
        actor, role = principal()
        writer = intake_writer(ctx)
        futures = []
        errors = []
        for i, item in enumerate(batch.incidents):
            try:
                futures.append((i, writer.submit(item, actor=actor, role=role)))
            except IncidentInputError as exc:
                errors.append({"index": i, "errors": exc.errors})
        created = []
        for i, fut in futures:
            try:
                doc, _ = fut.result(timeout=120)
                created.append({"index": i, "id": doc["id"], "grid_id": doc["grid_id"]})
            except IncidentInputError as exc:
                errors.append({"index": i, "errors": exc.errors})
            except QueryError:
                errors.append({"index": i, "errors": [{"field": "body", "message":
                               "database error; resend this item"}]})  # fmt: skip
        errors.sort(key=lambda e: e["index"])
        return flask.jsonify({"created": created, "errors": errors,
                              "counts": {"created": len(created), "failed": len(errors)}})  # fmt: skip

    @bp.get("/incidents")
    def get_incidents():
        check_params({"bbox", "start", "end", "category", "status", "grid_id", "limit", "offset"})
        args = flask.request.args
        limit = parse_int("limit", args.get("limit"), 100, 1, MAX_LIMIT)
        offset = parse_int("offset", args.get("offset"), 0, 0, 10**9)
        grid_id = args.get("grid_id")
        statuses = [s for s in (args.get("status") or "").split(",") if s]
        known = {"open", "closed", "evaluated", *incident_service.OPEN_STATUSES}
        bad = [s for s in statuses if s not in known]
        if bad:
            raise ApiError(400, "unknown status", [{"field": "status", "message":
                           f"{bad[0]!r}; use open or one of collected, registered, dispatched, "
                           "handling, reported, closed, evaluated"}])  # fmt: skip
        items, total = run(
            ctx.db,
            cases.list_documents,
            scope=request_scope(),
            reveal=request_reveal(),
            bbox=parse_bbox(args.get("bbox")),
            start=parse_time("start", args.get("start")),
            end=parse_time("end", args.get("end")),
            category=parse_categories(args.get("category")),
            status=statuses or None,
            grid_id=parse_int("grid_id", grid_id, 0, 1, MAX_ID) if grid_id else None,
            limit=limit,
            offset=offset,
        )
        nxt = None
        if offset + len(items) < total:
            q = args.to_dict()
            q["offset"] = str(offset + limit)
            q["limit"] = str(limit)
            nxt = flask.url_for("incident_api.get_incidents", **q)
        return flask.jsonify({"items": items, "total": total, "limit": limit, "offset": offset,
                              "next": nxt})  # fmt: skip

    @bp.get("/incidents/<int:incident_id>")
    def get_incident(incident_id: int):
        if incident_id > MAX_ID:
            raise ApiError(404, f"no incident with id {incident_id}")
        doc = run(ctx.db, cases.case_document, incident_id, scope=request_scope(),
                  role=principal()[1], reveal=request_reveal())  # fmt: skip
        return flask.jsonify(doc)

    @bp.post("/incidents/<int:incident_id>/actions")
    def post_action(incident_id: int):
        if incident_id > MAX_ID:
            raise ApiError(404, f"no incident with id {incident_id}")
        try:
            req = ActionIn.model_validate(json_body())
        except ValidationError as exc:
            raise ApiError(422, "the action is not valid", _pydantic_errors(exc)) from None
        actor, role = principal()
        try:
            doc = run(
                ctx.db, cases.act, incident_id, req.action, scope=request_scope(), actor=actor,
                role=role, reveal=request_reveal(), reason=req.reason,
                assignee_id=req.assignee_id, into=req.into, hours=req.hours,
                rework_to=req.rework_to, distinct=req.distinct,
            )  # fmt: skip
        except workflow.ActionNotPermittedError as exc:
            raise ApiError(403, str(exc), [{"field": "action", "message": str(exc)}]) from None
        except workflow.TransitionError as exc:
            raise ApiError(409, str(exc), [{"field": "action", "message": str(exc)}]) from None
        return flask.jsonify(doc)

    @bp.get("/categories")
    def get_categories():
        check_params(set())
        return flask.jsonify({"categories": run(ctx.db, incident_service.list_categories)})

    @bp.get("/kpi")
    def get_kpi():
        check_params({"start", "end", "group_by", "period", "format", "lang"})
        args = flask.request.args
        start, end = parse_time("start", args.get("start")), parse_time("end", args.get("end"))
        if start is None or end is None:
            raise ApiError(400, "start and end are required", [{"field": "start" if start is None
                           else "end", "message": "give an ISO 8601 date-time with timezone"}])  # fmt: skip
        fmt = args.get("format", "json")
        if fmt not in ("json", "csv", "xlsx"):
            raise ApiError(400, "bad format", [{"field": "format", "message": "json, csv or xlsx"}])
        lang = args.get("lang", "zh")
        if lang not in ("zh", "en"):
            raise ApiError(400, "bad lang", [{"field": "lang", "message": "zh or en"}])
        rows = run(
            ctx.db, kpi_service.compute_kpis, start, end, scope=request_scope(),
            group_by=args.get("group_by", "city"), period=args.get("period") or None, lang=lang,
        )  # fmt: skip
        if fmt == "json":
            return flask.jsonify({"rows": rows})
        name = f"kpi_{start.date()}_{end.date()}"
        if fmt == "csv":
            body, mime = kpi_service.to_csv(rows, lang), "text/csv; charset=utf-8"
        else:
            body = kpi_service.to_xlsx(rows, lang)
            mime = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        actor, role = principal()
        _audit_export(ctx, actor, role, fmt, len(rows))
        return flask.Response(body, mimetype=mime, headers={
            "Content-Disposition": f'attachment; filename="{name}.{fmt}"'})  # fmt: skip

    server.register_blueprint(bp)
    _routing_errors_as_json(server)
    _declare(server)


# Unknown paths and wrong methods fail in Flask's router, before any blueprint runs; answer
# those as JSON under the machine prefixes (each in its own error format), HTML elsewhere.
JSON_ERROR_PREFIXES = {PREFIX + "/": "api", "/open311/": "open311", "/ogc": "ogc"}


def routing_error_response(exc: HTTPException) -> flask.Response | HTTPException:
    """Return a JSON error for a routing 404/405 under /api/v1, /open311 or /ogc, else ``exc``."""
    path = flask.request.path
    kind = next((k for p, k in JSON_ERROR_PREFIXES.items() if path.startswith(p)), None)
    code = exc.code or 500
    message = "no such resource" if code == 404 else f"{flask.request.method} is not allowed here"
    if kind == "api":
        resp = error_response(code, f"{message}; see {PREFIX}/openapi.json")
    elif kind == "open311":
        resp = flask.jsonify([{"code": code, "description": message}])
    elif kind == "ogc":
        resp = flask.jsonify({"code": "NotFound" if code == 404 else "MethodNotAllowed",
                              "description": message})  # fmt: skip
    else:
        return exc
    resp.status_code = code
    if code == 405 and getattr(exc, "valid_methods", None):
        resp.headers["Allow"] = ", ".join(exc.valid_methods)
    return resp


def _routing_errors_as_json(server: flask.Flask) -> None:
    for code in (404, 405):
        server.register_error_handler(code, routing_error_response)


def _audit_export(ctx: AppContext, actor: str, role: str, fmt: str, n: int) -> None:
    run(ctx.db, audit.record, actor=actor, role=role, action="kpi.export",
        target=f"kpi.{fmt}", detail={"rows": n})  # fmt: skip


def _declare(server: flask.Flask) -> None:
    declare_policy(server, f"{PREFIX}/incidents", INTAKE_ROLES, methods=("POST",))
    declare_policy(server, f"{PREFIX}/incidents", READ_ROLES, methods=("GET",))
    declare_policy(server, f"{PREFIX}/categories", READ_ROLES | {"intake", "gis"})
    declare_policy(server, f"{PREFIX}/kpi", KPI_ROLES)
