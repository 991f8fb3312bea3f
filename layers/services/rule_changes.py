"""Rule changes by people: the floor, the two-person rule for lowering, and the audit trail.

``change_rule`` is how a privacy officer saves a rule version or removes a scope's rule
(``config=None``: its cameras fall back to broader rules). The change is compared with what
the cameras it reaches get now (``effect``): one that lowers protection for any of them
(``streams.floor.lowering_reasons``) is, when the two-person rule is on
(``GRIDSIGHT_UNMASK_REQUIRES_SECOND_APPROVER``, the setting unmask grants use), stored as
pending, and the rule in force stays until a *different* privacy officer approves it
(``approve_change``) or somebody rejects it (``reject_change``). A change that keeps or
raises protection applies at once; so does a lowering one when the rule is off, audited as
lowering (``rules.save.lowering``). A rule below the privacy floor is refused either way.

Every step is one audit entry written in the same transaction as the change, naming the
person who asked and the one who approved or rejected: ``rules.save``, ``rules.deactivate``,
``rules.save.lowering``, ``rules.deactivate.lowering``, ``rules.pending``, ``rules.approve``,
``rules.reject``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from layers.db import Database
from layers.models import Camera, Grid, RedactionRule, RuleChange
from layers.models.base import utcnow
from layers.services import audit, get_row, use_session
from layers.services import rules as rule_service
from layers.streams_seam import (
    PrivacyFloor,
    RedactionRules,
    RuleScope,
    lowering_reasons,
    parse_rules,
)

log = logging.getLogger(__name__)

CHANGER_ROLES = ("privacy_officer",)
MAX_REASONS = 20


class RuleChangeError(rule_service.RuleConfigError):
    """A change cannot be made, approved or rejected; the message says why and what to do."""


class StaleChangeError(RuleChangeError):
    """A pending change was proposed against a rule that has changed since, or is decided."""


class ChangeNotFoundError(RuleChangeError):
    """There is no rule change with that id."""


class NotAllowedError(RuleChangeError):
    """The person may not do this: wrong role, or approving their own change."""


@dataclass
class ChangeResult:
    """What happened to a rule change (``change_rule`` / ``approve_change``)."""

    status: str  # applied | pending
    scope: RuleScope
    lowers: list[str] = field(default_factory=list)
    rule: dict | None = None  # the new version (applied saves)
    deactivated: int = 0  # versions deactivated (applied removals)
    change: dict | None = None  # the pending / decided change

    def as_dict(self) -> dict:
        """Return the result as JSON-ready data (what the API answers)."""
        return {
            "status": self.status,
            "scope": self.scope.model_dump(),
            "lowers": self.lowers,
            "rule": self.rule,
            "deactivated": self.deactivated,
            "change": self.change,
        }


# -- effect of a change on the cameras it reaches ---------------------------------------------
def _cameras_in(session: Session, scope: RuleScope) -> list[Camera]:
    q = select(Camera)
    if scope.kind == "camera":
        q = q.where(Camera.id == int(scope.value))
    elif scope.kind == "grid":
        q = q.where(Camera.grid_id == int(scope.value))
    elif scope.kind == "camera_class":
        q = q.where(Camera.cls == int(scope.value))
    elif scope.kind == "district":
        grids = select(Grid.id).where(Grid.code.startswith(scope.value, autoescape=True))
        q = q.where(Camera.grid_id.in_(grids))
    return list(session.scalars(q))


def _active_rules(session: Session) -> dict[tuple[str, str | None], RedactionRule]:
    rows = session.scalars(
        select(RedactionRule)
        .where(RedactionRule.active.is_(True))
        .order_by(RedactionRule.version)  # the newest version of a scope wins below
    )
    return {(r.scope_kind, r.scope_value): r for r in rows}


def _parsed(row: RedactionRule | None, floor: PrivacyFloor) -> RedactionRules:
    try:
        rules = parse_rules(row.config) if row is not None else RedactionRules()
    except ValidationError:
        rules = RedactionRules()  # what the pipeline falls back to is judged by the floor below
    return floor.raise_rules(rules)[0]


def effect(
    session: Session, scope: RuleScope, new: RedactionRules | None, floor: PrivacyFloor
) -> list[str]:
    """Return how saving ``new`` at ``scope`` (None: removing its rule) lowers protection.

    Compared, for every camera whose rule would change, with the rule it gets now (both
    raised to the floor, as served); a scope that reaches no camera today is compared with
    its own current rule, or the default rule. Empty: protection kept or raised everywhere.
    """
    active = _active_rules(session)
    grid_codes = dict(session.execute(select(Grid.id, Grid.code)).all())
    pairs: dict[tuple[int | None, int | None], tuple[RedactionRules, RedactionRules]] = {}
    new_rules = floor.raise_rules(new)[0] if new is not None else None
    for camera in _cameras_in(session, scope):
        chain = rule_service.camera_scopes(session, camera, grid_codes)
        keys = [(s.kind, s.value) for s in chain]
        if (scope.kind, scope.value) not in keys:
            continue
        here = keys.index((scope.kind, scope.value))
        now = next((k for k in keys if k in active), None)
        if now is not None and keys.index(now) < here:
            continue  # a more specific rule wins for this camera: the change does not reach it
        if new_rules is not None:
            after_key, after = None, new_rules
        else:
            after_key = next((k for k in keys[here + 1 :] if k in active), None)
            after = _parsed(active.get(after_key), floor)
        before_id = active[now].id if now is not None else None
        after_id = active[after_key].id if after_key is not None else None
        if (before_id, after_id) not in pairs:
            pairs[(before_id, after_id)] = (_parsed(active.get(now), floor), after)
    if not pairs:
        own = active.get((scope.kind, scope.value)) or active.get(("default", None))
        fallback = active.get(("default", None)) if new is None else None
        before = _parsed(own, floor)
        after = new_rules if new_rules is not None else _parsed(fallback, floor)
        pairs[(None, None)] = (before, after)
    reasons: list[str] = []
    for before, after in pairs.values():
        for why in lowering_reasons(before, after):
            if why not in reasons:
                reasons.append(why)
    return reasons[:MAX_REASONS]


# -- change, approve, reject ------------------------------------------------------------------
def _check_role(role: str, what: str) -> None:
    if role not in CHANGER_ROLES:
        raise NotAllowedError(
            f"role {role!r} may not {what} redaction rules; a privacy officer can"
        )


def _scope_of(scope: RuleScope | dict) -> RuleScope:
    try:
        return scope if isinstance(scope, RuleScope) else RuleScope.model_validate(scope)
    except ValidationError as exc:
        raise rule_service.RuleConfigError(f"scope: {exc.errors()[0]['msg']}") from exc


def _target(scope: RuleScope) -> str:
    return f"rules:{scope.kind}/{scope.value or '-'}"


def _summary(rules: RedactionRules | None) -> dict:
    if rules is None:
        return {}
    return {
        "targets": sorted(rules.targets),
        "method": rules.method,
        "strength": rules.strength,
        "masks": len(rules.masks),
    }


def change_rule(
    db: Database | Session,
    scope: RuleScope | dict,
    config: RedactionRules | dict | str | None,
    *,
    actor: str,
    role: str,
    floor: PrivacyFloor,
    require_approval: bool,
    reason: str = "",
) -> ChangeResult:
    """Return what became of a privacy officer's rule change (applied, or pending approval).

    ``config=None`` removes the scope's rule. Raises ``RuleFloorError`` below the floor,
    ``RuleConfigError`` for an invalid scope or rule, ``RuleChangeError`` for a role that
    may not change rules.
    """
    _check_role(role, "change")
    scope = _scope_of(scope)
    new: RedactionRules | None = None
    if config is not None:
        try:
            new = parse_rules(config)
        except ValidationError as exc:
            raise rule_service.RuleConfigError(f"invalid rule: {exc}") from exc
        rule_service.check_floor(new, floor)
    elif scope.kind == "default":
        raise rule_service.RuleConfigError("the default rule cannot be removed, only replaced")
    with use_session(db) as session:
        lowers = effect(session, scope, new, floor)
        if lowers and require_approval:
            return _propose(session, scope, new, lowers, actor, role, reason)
        result = _apply(session, scope, new, floor, requested_by=actor, approved_by=None)
        result.lowers = lowers
        action = ("rules.save" if new is not None else "rules.deactivate") + (
            ".lowering" if lowers else ""
        )
        audit.record(
            session, actor=actor, role=role, action=action, target=_target(scope),
            detail=_detail(result, actor, None, lowers, new, reason),
        )  # fmt: skip
    return result


def _apply(
    session: Session,
    scope: RuleScope,
    new: RedactionRules | None,
    floor: PrivacyFloor,
    *,
    requested_by: str,
    approved_by: str | None,
) -> ChangeResult:
    if new is not None:
        saved = rule_service.save_rule(
            session, scope, new, requested_by, floor=floor, approved_by=approved_by
        )
        return ChangeResult("applied", scope, rule=saved)
    n = rule_service.deactivate_scope(session, scope, by=approved_by or requested_by)
    return ChangeResult("applied", scope, deactivated=n)


def _detail(
    result: ChangeResult,
    requested_by: str,
    approved_by: str | None,
    lowers: list[str],
    new: RedactionRules | None,
    reason: str,
) -> dict:
    out = {
        "op": "save" if new is not None else "deactivate",
        "requested_by": requested_by,
        "approved_by": approved_by,
        "lowers": lowers,
        **_summary(new),
    }
    if result.rule is not None:
        out["version"] = result.rule["version"]
    if new is None:
        out["deactivated"] = result.deactivated
    if result.change is not None:
        out["change"] = result.change["id"]
    if reason:
        out["reason"] = reason[:200]
    return out


def _propose(
    session: Session,
    scope: RuleScope,
    new: RedactionRules | None,
    lowers: list[str],
    actor: str,
    role: str,
    reason: str,
) -> ChangeResult:
    base = rule_service.active_row(session, scope)
    change = RuleChange(
        scope_kind=scope.kind,
        scope_value=scope.value,
        op="save" if new is not None else "deactivate",
        config=new.model_dump_json() if new is not None else None,
        base_rule_id=base.id if base is not None else None,
        lowers=json.dumps(lowers, ensure_ascii=False),
        reason=(reason or "").strip()[:2000],
        status="pending",
        requested_by=actor,
        requested_at=utcnow(),
    )
    session.add(change)
    session.flush()
    result = ChangeResult("pending", scope, lowers=lowers, change=change_dict(change))
    audit.record(
        session, actor=actor, role=role, action="rules.pending", target=_target(scope),
        detail=_detail(result, actor, None, lowers, new, reason),
    )  # fmt: skip
    log.info("rule change #%s (%s) by %s awaits a second officer", change.id, _target(scope), actor)
    return result


def _pending(session: Session, change_id: int) -> RuleChange:
    change = get_row(session, RuleChange, change_id)
    if change is None:
        raise ChangeNotFoundError(f"no rule change #{change_id}")
    if change.status != "pending":
        raise StaleChangeError(
            f"rule change #{change_id} is already {change.status} (by {change.decided_by})"
        )
    return change


def approve_change(
    db: Database | Session, change_id: int, *, approver: str, role: str, floor: PrivacyFloor
) -> ChangeResult:
    """Return the applied change after a second privacy officer approved it (audited).

    Raises ``RuleChangeError`` when the approver asked for it themself, may not approve, or
    the change is not pending; ``StaleChangeError`` when the scope's rule changed since it
    was proposed (reject it and propose again); ``RuleFloorError`` below the floor.
    """
    _check_role(role, "approve changes to")
    with use_session(db) as session:
        change = _pending(session, change_id)
        if approver == change.requested_by:
            raise NotAllowedError(
                "the approver must be a different privacy officer than the one who asked "
                f"({change.requested_by})"
            )
        scope = RuleScope(kind=change.scope_kind, value=change.scope_value)
        base = rule_service.active_row(session, scope)
        if (base.id if base is not None else None) != change.base_rule_id:
            raise StaleChangeError(
                f"the rule of {scope.kind}/{scope.value or '-'} changed since change "
                f"#{change.id} was proposed; reject it and propose the change again"
            )
        new = parse_rules(change.config) if change.config is not None else None
        lowers = effect(session, scope, new, floor)
        result = _apply(
            session, scope, new, floor, requested_by=change.requested_by, approved_by=approver
        )
        change.status, change.decided_by, change.decided_at = "approved", approver, utcnow()
        change.rule_id = result.rule["id"] if result.rule else None
        result.lowers, result.change = lowers, change_dict(change)
        audit.record(
            session, actor=approver, role=role, action="rules.approve", target=_target(scope),
            detail=_detail(result, change.requested_by, approver, lowers, new, change.reason),
        )  # fmt: skip
    return result


def reject_change(
    db: Database | Session, change_id: int, *, actor: str, role: str, reason: str = ""
) -> dict:
    """Return the change after rejecting it (audited; the asker may withdraw their own)."""
    _check_role(role, "reject changes to")
    with use_session(db) as session:
        change = _pending(session, change_id)
        change.status, change.decided_by, change.decided_at = "rejected", actor, utcnow()
        out = change_dict(change)
        audit.record(
            session,
            actor=actor,
            role=role,
            action="rules.reject",
            target=f"rules:{change.scope_kind}/{change.scope_value or '-'}",
            detail={
                "change": change.id,
                "op": change.op,
                "requested_by": change.requested_by,
                "rejected_by": actor,
                "reason": (reason or "")[:200],
            },
        )
    return out


def list_changes(db: Database | Session, status: str | None = "pending") -> list[dict]:
    """Return rule changes, newest first (only those with ``status`` unless it is None)."""
    with use_session(db) as session:
        q = select(RuleChange).order_by(RuleChange.id.desc()).limit(500)
        if status:
            q = q.where(RuleChange.status == status)
        return [change_dict(c) for c in session.scalars(q)]


def change_dict(change: RuleChange) -> dict:
    """Return a change as JSON-ready data (config parsed)."""
    try:
        config = parse_rules(change.config).model_dump(mode="json") if change.config else None
    except ValidationError:
        config = None
    return {
        "id": change.id,
        "scope": {"kind": change.scope_kind, "value": change.scope_value},
        "op": change.op,
        "config": config,
        "lowers": json.loads(change.lowers or "[]"),
        "reason": change.reason,
        "status": change.status,
        "requested_by": change.requested_by,
        "requested_at": change.requested_at.isoformat() if change.requested_at else None,
        "decided_by": change.decided_by,
        "decided_at": change.decided_at.isoformat() if change.decided_at else None,
        "rule_id": change.rule_id,
    }
