"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document of the incident API (public).

The document is static: built from the request models and limits of ``dashboard.routes.api``
(``tests/dashboard/test_api_incidents.py`` checks that it covers every route and
``test_api_fuzz.py`` fuzzes the API from it).
"""

from __future__ import annotations

import flask
from pydantic import BaseModel

from dashboard.context import AppContext
from dashboard.policy import declare_policy
from dashboard.routes.api import MAX_BATCH, MAX_ID, MAX_LIMIT, PREFIX, ActionIn
from layers.services import incidents as incident_service
from layers.services import kpi as kpi_service
from layers.services import workflow
from layers.services.incidents import IncidentIn


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Add ``GET /api/v1/openapi.json`` (public) to ``server``."""

    @server.get(f"{PREFIX}/openapi.json")
    def openapi():
        return flask.jsonify(openapi_document())

    declare_policy(server, f"{PREFIX}/openapi.json", "public")


def _err(desc: str) -> dict:
    return {"description": desc,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}  # fmt: skip


def _ok(desc: str, ref: str) -> dict:
    return {"description": desc,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}  # fmt: skip


def _q(name: str, desc: str, schema: dict, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": desc,
            "schema": schema}  # fmt: skip


def _schema(model: type[BaseModel]) -> dict:
    doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
    doc.pop("$defs", None)
    return doc


def openapi_document() -> dict:
    """Return the OpenAPI 3.1 document of the incident API."""
    auth_errors = {"401": _err("not signed in / no valid token"),
                   "403": _err("the role may not do this")}  # fmt: skip
    incident_ref = {"$ref": "#/components/schemas/Incident"}
    id_param = {"name": "incident_id", "in": "path", "required": True,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}  # fmt: skip
    statuses = list(incident_service.OPEN_STATUSES) + ["closed", "evaluated", "open"]
    return {
        "openapi": "3.1.0",
        "info": {"title": "GridSight incident API", "version": "1.0.0",
                 "description": "Incident intake, queries, GB/T 30428 workflow actions and KPIs. "
                 "Machine clients send Authorization: Bearer <token>."},
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "IncidentIn": _schema(IncidentIn),
                "ActionIn": _schema(ActionIn),
                "BatchIn": {"type": "object", "additionalProperties": False,
                            "required": ["incidents"],
                            "properties": {"incidents": {"type": "array", "minItems": 1,
                                                         "maxItems": MAX_BATCH,
                                                         "items": {"$ref": "#/components/schemas/IncidentIn"}}}},
                "Incident": {"type": "object", "required": ["id", "lon", "lat", "category", "status"],
                             "properties": {"id": {"type": "integer"}, "lon": {"type": "number"},
                                            "lat": {"type": "number"}, "category": {"type": "string"},
                                            "status": {"type": "string"},
                                            "grid_id": {"type": ["integer", "null"]},
                                            "center_id": {"type": ["integer", "null"]},
                                            "assignee_id": {"type": ["integer", "null"]},
                                            "due_at": {"type": ["string", "null"]}}},
                "Error": {"type": "object", "required": ["error", "status", "errors"],
                          "properties": {"error": {"type": "string"}, "status": {"type": "integer"},
                                         "errors": {"type": "array", "items": {"type": "object",
                                                    "properties": {"field": {"type": "string"},
                                                                   "message": {"type": "string"}}}}}},
                "IncidentPage": {"type": "object", "required": ["items", "total"],
                                 "properties": {"items": {"type": "array", "items": incident_ref},
                                                "total": {"type": "integer"},
                                                "limit": {"type": "integer"},
                                                "offset": {"type": "integer"},
                                                "next": {"type": ["string", "null"]}}},
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            f"{PREFIX}/incidents": {
                "post": {
                    "operationId": "createIncident",
                    "summary": "File one incident (committed before the 201)",
                    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                    "schema": {"type": "string", "pattern": "^[!-~]{1,128}$"},
                                    "description": "retries with the same key return the first incident"}],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/IncidentIn"}}}},
                    "responses": {"201": _ok("created", "Incident"),
                                  "200": _ok("replay of an Idempotency-Key", "Incident"),
                                  "400": _err("not JSON / bad header"),
                                  "409": _err("external_id or Idempotency-Key conflict"),
                                  "422": _err("invalid field"), "503": _err("database busy"),
                                  **auth_errors},
                },
                "get": {
                    "operationId": "listIncidents",
                    "summary": "Incidents, newest first, with filters and paging",
                    "parameters": [
                        _q("bbox", "minx,miny,maxx,maxy WGS-84", {"type": "string"}),
                        _q("start", "created at or after (ISO 8601 with zone)", {"type": "string", "format": "date-time"}),
                        _q("end", "created before (ISO 8601 with zone)", {"type": "string", "format": "date-time"}),
                        _q("category", "comma-separated category codes (parents match children)", {"type": "string"}),
                        _q("status", "comma-separated: " + ", ".join(statuses), {"type": "string"}),
                        _q("grid_id", "only this grid", {"type": "integer", "minimum": 1, "maximum": MAX_ID}),
                        _q("limit", "page size", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
                        _q("offset", "items to skip", {"type": "integer", "minimum": 0}),
                    ],
                    "responses": {"200": _ok("a page", "IncidentPage"), "400": _err("bad parameter"),
                                  "503": _err("database busy"), **auth_errors},
                },
            },
            f"{PREFIX}/incidents/batch": {
                "post": {
                    "operationId": "importIncidents",
                    "summary": "File up to 1000 incidents; valid ones are committed",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/BatchIn"}}}},
                    "responses": {"200": {"description": "per-item results", "content": {
                        "application/json": {"schema": {"type": "object"}}}},
                                  "400": _err("not JSON"), "422": _err("not a batch"),
                                  "503": _err("database busy"), **auth_errors},
                },
            },
            f"{PREFIX}/incidents/{{incident_id}}": {
                "get": {
                    "operationId": "getIncident",
                    "parameters": [id_param],
                    "responses": {"200": _ok("the incident with history", "Incident"),
                                  "404": _err("no such incident"), "503": _err("database busy"),
                                  **auth_errors},
                },
            },
            f"{PREFIX}/incidents/{{incident_id}}/actions": {
                "post": {
                    "operationId": "actOnIncident",
                    "summary": "A workflow action: " + ", ".join(workflow.ACTIONS),
                    "parameters": [id_param],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/ActionIn"}}}},
                    "responses": {"200": _ok("the incident after the action", "Incident"),
                                  "400": _err("not JSON"), "404": _err("no such incident"),
                                  "409": _err("not allowed in the current status"),
                                  "422": _err("invalid action body"),
                                  "503": _err("database busy"), **auth_errors},
                },
            },
            f"{PREFIX}/categories": {
                "get": {"operationId": "listCategories",
                        "responses": {"200": {"description": "the dictionary", "content": {
                            "application/json": {"schema": {"type": "object"}}}},
                                      "400": _err("unknown parameter"),
                                      "503": _err("database busy"), **auth_errors}},
            },
            f"{PREFIX}/kpi": {
                "get": {
                    "operationId": "getKpis",
                    "parameters": [
                        _q("start", "window start", {"type": "string", "format": "date-time"}, True),
                        _q("end", "window end", {"type": "string", "format": "date-time"}, True),
                        _q("group_by", "grouping", {"type": "string", "enum": list(kpi_service.GROUPS)}),
                        _q("period", "split", {"type": "string", "enum": ["day", "week", "month"]}),
                        _q("format", "output", {"type": "string", "enum": ["json", "csv", "xlsx"]}),
                        _q("lang", "column names", {"type": "string", "enum": ["zh", "en"]}),
                    ],
                    "responses": {"200": {"description": "KPI rows (JSON, CSV or XLSX)", "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "text/csv": {"schema": {"type": "string"}},
                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
                            {"schema": {"type": "string", "format": "binary"}}}},
                                  "400": _err("bad parameter"), "503": _err("database busy"),
                                  **auth_errors},
                },
            },
            f"{PREFIX}/openapi.json": {
                "get": {"operationId": "openapi", "security": [],
                        "responses": {"200": {"description": "this document", "content": {
                            "application/json": {"schema": {"type": "object"}}}}}},
            },
        },
    }  # fmt: skip
