"""Validation in front of Dash's own routes: a malformed request gets a 4xx JSON, never a 500.

Dash answers a ``/_dash-update-component`` body it cannot read, or a
``/_dash-component-suites/`` path it does not serve, by raising inside its view (a 500 with
a traceback in the log). ``install(app)`` checks both before Dash sees them:

- the callback body must be the object Dash's renderer sends: ``output`` naming a registered
  server-side callback, ``outputs``, ``inputs`` and ``state`` lists of ``{id, property[,
  value]}`` of the callback's declared lengths, ``changedPropIds`` a list of text; else 400
  naming the field;
- every input and state value must be of the JSON type its component property holds
  (``dashboard.callback_types``: a dict where a text box's string belongs, a list for a
  slider's number, NaN, a negative click count...); else 400 naming ``id.property``;
- an unknown package or file under ``/_dash-component-suites/`` is a 404 JSON;
- a JSON body (any route) nested more than ``MAX_JSON_DEPTH`` levels is a 400;
- a filter or service value a callback cannot use (``MapFilterError``, ``ServiceError``)
  answers 400 with the field its message names; an object the user may not see, 404.

Nothing here catches other exceptions: a bug stays a bug (Flask's plain 500 page, no trace).
"""

from __future__ import annotations

import logging
from typing import Any

import flask
from dash import Dash
from dash.exceptions import DependencyException

from dashboard import callback_types
from dashboard.routes.api import MAX_JSON_DEPTH, json_depth
from layers.services import NotFoundError, ServiceError
from layers.services.mapdata import MapFilterError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 << 20
_TOO_DEEP = object()  # the operator refresh with every grid's count is well under 1 MB


def _error(status: int, field: str, message: str) -> tuple[flask.Response, int]:
    return flask.jsonify(error=message, field=field,
                         errors=[{"field": field, "message": message}]), status  # fmt: skip


def _is_dep(item: Any) -> bool:
    """Return True if ``item`` is a {id, property[, value]} dependency or a list of them."""
    if isinstance(item, list):
        return all(_is_dep(x) for x in item)
    return (isinstance(item, dict) and isinstance(item.get("property"), str)
            and isinstance(item.get("id"), str | dict))  # fmt: skip


def body_problem(body: Any, callback_map: dict) -> tuple[str, str] | None:
    """Return (field, message) of the first thing wrong with a callback body, or None."""
    if not isinstance(body, dict):
        return "body", "send the JSON object Dash's renderer sends"
    if json_depth(body) > MAX_JSON_DEPTH:
        return "body", f"JSON nested more than {MAX_JSON_DEPTH} levels"
    output = body.get("output")
    if not isinstance(output, str) or output not in callback_map:
        return "output", "no callback has these outputs; reload the page"
    cb = callback_map[output]
    outputs = body.get("outputs")
    if not (_is_dep(outputs) and (isinstance(outputs, list) or isinstance(outputs, dict))):
        return "outputs", "give the output dependencies as {id, property} objects"
    for name in ("inputs", "state"):
        deps = body.get(name, [] if name == "state" else None)
        declared = cb.get(name) or []
        if not isinstance(deps, list) or not all(_is_dep(d) for d in deps):
            return name, f"give a list of {{id, property, value}} objects for {name}"
        if len(deps) != len(declared):
            return name, f"this callback takes {len(declared)} {name}, not {len(deps)}"
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        return "changedPropIds", "give a list of 'id.property' strings"
    if "callback" not in cb:
        return "output", "this callback runs in the browser; the server computes nothing for it"
    for name in ("inputs", "state"):
        for dep in body.get(name) or []:
            problem = _value_problem(dep)
            if problem is not None:
                return problem
    return None


def _value_problem(dep: dict | list) -> tuple[str, str] | None:
    """Return (field, message) if a dependency's value (or pattern id) has the wrong type."""
    for item in dep if isinstance(dep, list) else [dep]:
        cid, prop = item["id"], item["property"]
        field = callback_types.field_name(cid, prop)
        wrong_id = callback_types.id_problem(cid)
        if wrong_id is not None:
            return field, wrong_id
        wrong = callback_types.value_problem(cid, prop, item.get("value"))
        if wrong is not None:
            return field, f"{wrong}; send what this component holds"
    return None


def install(app: Dash) -> None:
    """Add the Dash request checks and the typed error answers to ``app.server``."""
    server = app.server
    update_path = app.config.requests_pathname_prefix + "_dash-update-component"

    @server.before_request
    def _check_json_depth():
        # any JSON body, on any route: Python's parser gives up (RecursionError) near 1,000
        # levels, and deep bodies cost every later walk over them; no GridSight body nests
        # more than a few levels
        req = flask.request
        if req.method not in ("POST", "PUT", "PATCH") or not req.is_json:
            return None
        try:
            body = req.get_json(silent=True)
        except RecursionError:
            body = _TOO_DEEP
        if body is _TOO_DEEP or json_depth(body) > MAX_JSON_DEPTH:
            return _error(400, "body", f"JSON nested more than {MAX_JSON_DEPTH} levels; "
                          "send a flat object")  # fmt: skip
        return None

    # first of all hooks: Dash's own hook reads the body before any hook registered later
    hooks = server.before_request_funcs.setdefault(None, [])
    hooks.insert(0, hooks.pop(hooks.index(_check_json_depth)))

    @server.before_request
    def _check_callback_body():
        req = flask.request
        if req.path != update_path or req.method != "POST":
            return None
        if (req.content_length or 0) > MAX_BODY_BYTES:
            return _error(413, "body", f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            body = req.get_json(silent=True)
        except RecursionError:
            body = None
        problem = body_problem(body, app.callback_map)
        if problem is not None:
            return _error(400, *problem)
        return None

    @server.errorhandler(DependencyException)
    def _no_such_component_file(_exc):
        return _error(404, "path", "no such component file; reload the page")

    @server.errorhandler(MapFilterError)
    @server.errorhandler(ServiceError)
    def _bad_value(exc):
        msg = str(exc)
        return _error(400, msg.split(":", 1)[0] if ":" in msg else "value", msg)

    @server.errorhandler(NotFoundError)
    def _not_found(exc):
        return _error(404, "id", str(exc).strip("'\""))
