"""The redaction-rule JSON API: rule versions, the privacy floor, two-person rule changes.

Routes
------
``GET /api/v1/rules``                      every rule version (``?kind=&value=`` one scope)
``PUT /api/v1/rules/<kind>[/<value>]``     save a rule (body: RedactionRules JSON; ``?reason=``)
``DELETE /api/v1/rules/<kind>/<value>``    remove a scope's rule (falls back to broader rules)
``GET /api/v1/rules/floor``                the deployment's privacy floor
``GET /api/v1/rules/changes``              rule changes (``?status=pending|approved|rejected|all``)
``POST /api/v1/rules/changes/<id>/approve``  a second privacy officer applies a pending change
``POST /api/v1/rules/changes/<id>/reject``   any privacy officer rejects it (``?reason=``)
``GET /api/v1/cameras/<camera_id>/rules``  the rule in force for a camera, its scope, the floor

A rule below the privacy floor (``GRIDSIGHT_PRIVACY_FLOOR_*``) is refused with 422 naming the
floor. A change that lowers protection answers 202 with the pending change when the two-person
rule is on (``GRIDSIGHT_UNMASK_REQUIRES_SECOND_APPROVER``): the old rule stays in force until
a different privacy officer approves it. Everything else answers 201/200 and is in force for
running streams within this request (``stream_hub.notify_rules_changed``). The service
(``layers.services.rule_changes``) writes the audit entry with the change, naming both people.

Access: the ``authorize_rules(request, "read"|"write")`` hook of ``dashboard.auth``
(``ctx.hooks.authorize_rules``); absent -> 403 (otherwise anyone could PUT ``targets: []``).
"""

from __future__ import annotations

import logging
from typing import Any

import flask
from pydantic import ValidationError

from dashboard.auth import declare_policy
from dashboard.context import AppContext
from layers.services import NotFoundError
from layers.services import rule_changes as change_service
from layers.services import rules as rule_service
from streams.rules import RuleScope
from streams.sources import scrub_text

log = logging.getLogger(__name__)

CHANGE_STATUSES = ("pending", "approved", "rejected", "all")
MAX_REASON = 2000


def _error(status: int, message: str, **extra: Any):
    return flask.jsonify({"error": scrub_text(message), **extra}), status


def _who() -> tuple[str, str]:
    """Return (name, role) of the caller; the write hook has already vouched for the role."""
    p = flask.g.get("principal") if flask.has_app_context() else None
    if p is None:
        return "unknown", "privacy_officer"
    return str(getattr(p, "actor", None) or p.name), str(p.role)


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Add the rules API to ``server``."""
    floor = ctx.settings.privacy.floor()
    two_person = ctx.settings.privacy.unmask_requires_second_approver
    declare_policy(server, "/api/v1/rules/changes", {"privacy_officer"}, ("POST",))

    def allowed(action: str):
        hook = ctx.hooks.authorize_rules
        if hook is None or not hook(flask.request, action):
            return _error(403, f"not allowed to {action} redaction rules")
        return None

    def streams_follow() -> None:
        hub = ctx.stream_hub
        if hub is not None:
            hub.notify_rules_changed()  # running streams switch within this request

    def reason() -> str:
        return (flask.request.args.get("reason") or "")[:MAX_REASON]

    def refused(exc: Exception):
        if isinstance(exc, rule_service.RuleFloorError):
            return _error(422, str(exc), floor=exc.floor.as_dict())
        if isinstance(exc, change_service.NotAllowedError):
            return _error(403, str(exc))
        if isinstance(exc, change_service.ChangeNotFoundError):
            return _error(404, str(exc))
        if isinstance(exc, change_service.StaleChangeError):
            return _error(409, str(exc))
        return _error(422, str(exc))

    def answer(result: change_service.ChangeResult):
        if result.status == "pending":
            return flask.jsonify(result.as_dict()), 202
        streams_follow()
        if result.rule is not None:
            return flask.jsonify({**result.rule, **result.as_dict()}), 201
        return flask.jsonify(result.as_dict()), 200

    @server.get("/api/v1/rules")
    def rules_list():
        denied = allowed("read")
        if denied is not None:
            return denied
        kind = flask.request.args.get("kind")
        try:
            scope = RuleScope(kind=kind, value=flask.request.args.get("value")) if kind else None
        except ValidationError as exc:
            return _error(400, f"kind/value: {exc.errors()[0]['msg']}")
        return flask.jsonify({"rules": rule_service.list_versions(ctx.db, scope)})

    @server.get("/api/v1/rules/floor")
    def rules_floor():
        denied = allowed("read")
        if denied is not None:
            return denied
        return flask.jsonify({"floor": floor.as_dict(), "two_person": two_person})

    @server.put("/api/v1/rules/<kind>")
    @server.put("/api/v1/rules/<kind>/<value>")
    def rules_put(kind: str, value: str | None = None):
        denied = allowed("write")
        if denied is not None:
            return denied
        body = flask.request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error(400, "send the rule as a JSON object (Content-Type: application/json)")
        actor, role = _who()
        try:
            result = change_service.change_rule(
                ctx.db, {"kind": kind, "value": value}, body, actor=actor, role=role,
                floor=floor, require_approval=two_person, reason=reason(),
            )  # fmt: skip
        except (ValidationError, rule_service.RuleConfigError) as exc:
            return refused(exc)
        return answer(result)

    @server.delete("/api/v1/rules/<kind>/<value>")
    def rules_delete(kind: str, value: str):
        denied = allowed("write")
        if denied is not None:
            return denied
        actor, role = _who()
        try:
            result = change_service.change_rule(
                ctx.db, {"kind": kind, "value": value}, None, actor=actor, role=role,
                floor=floor, require_approval=two_person, reason=reason(),
            )  # fmt: skip
        except (ValidationError, rule_service.RuleConfigError) as exc:
            return refused(exc)
        return answer(result)

    @server.get("/api/v1/rules/changes")
    def rule_changes_list():
        denied = allowed("read")
        if denied is not None:
            return denied
        status = flask.request.args.get("status", "pending")
        if status not in CHANGE_STATUSES:
            return _error(400, f"status must be one of {', '.join(CHANGE_STATUSES)}")
        changes = change_service.list_changes(ctx.db, None if status == "all" else status)
        return flask.jsonify({"changes": changes, "two_person": two_person})

    @server.post("/api/v1/rules/changes/<int:change_id>/<decision>")
    def rule_change_decide(change_id: int, decision: str):
        denied = allowed("write")
        if denied is not None:
            return denied
        if decision not in ("approve", "reject"):
            return _error(404, f"no such action {decision!r}: approve or reject")
        actor, role = _who()
        try:
            if decision == "reject":
                change = change_service.reject_change(
                    ctx.db, change_id, actor=actor, role=role, reason=reason()
                )
                return flask.jsonify({"status": "rejected", "change": change})
            result = change_service.approve_change(
                ctx.db, change_id, approver=actor, role=role, floor=floor
            )
        except (ValidationError, rule_service.RuleConfigError) as exc:
            return refused(exc)
        streams_follow()
        return flask.jsonify(result.as_dict())

    @server.get("/api/v1/cameras/<int:camera_id>/rules")
    def camera_rules(camera_id: int):
        denied = allowed("read")
        if denied is not None:
            return denied
        try:
            eff = rule_service.effective_rule(ctx.db, camera_id, floor)
        except NotFoundError:
            return _error(404, f"no camera {camera_id}")
        except rule_service.RuleConfigError as exc:
            return _error(500, str(exc))
        return flask.jsonify(
            {
                "camera_id": camera_id,
                "scope": eff.scope.model_dump(),
                "rule_id": eff.rule_id,
                "version": eff.version,
                "config": eff.rules.model_dump(mode="json"),
                "raised_to_floor": list(eff.raised),
                "floor": floor.as_dict(),
            }
        )
