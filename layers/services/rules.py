"""Redaction rules (privacy layer): versioned per scope, resolved per camera.

A rule row holds ``RedactionRules`` JSON (``streams.rules``) for one scope: the default, one
camera, a camera class (1/2/3), a grid, or a district (6-digit GB/T 2260 code). Saving a rule
adds a new version for its scope and deactivates the older ones, so history is kept and who
changed what stays visible. For a camera, the most specific scope with an active rule wins:
camera, grid, district, camera class, default; with none, the built-in default (faces and
plates pixelated) applies.

Every rule is held to the deployment's privacy floor (``streams.floor.PrivacyFloor``, from
settings): ``save_rule`` refuses a rule below it, and ``effective_rule`` raises a stored rule
that is below it (a row edited in the database) before anything is served, and logs that.
Changes that lower protection go through ``layers.services.rule_changes`` (two-person rule).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from layers.db import Database
from layers.models import Camera, Grid, RedactionRule
from layers.services import NotFoundError, ServiceError, get_row, use_session
from layers.streams_seam import (
    DEFAULT_FLOOR,
    SCOPE_PRECEDENCE,
    FloorError,
    PrivacyFloor,
    RedactionRules,
    RuleScope,
    parse_rules,
)

log = logging.getLogger(__name__)


class RuleConfigError(ServiceError):
    """A rule's config or scope does not validate; the message lists what is wrong."""


class RuleFloorError(RuleConfigError):
    """A rule is below the deployment's privacy floor; the message names the floor."""

    def __init__(self, message: str, floor: PrivacyFloor) -> None:
        super().__init__(message)
        self.floor = floor


@dataclass(frozen=True)
class EffectiveRule:
    """The rule that applies to one camera, where it came from, and what the floor raised."""

    rules: RedactionRules
    scope: RuleScope
    rule_id: int | None
    version: int
    #: how the stored rule fell below the floor (empty: it did not; ``rules`` is raised)
    raised: tuple[str, ...] = ()


def _scope(kind: str, value: str | int | None) -> RuleScope:
    try:
        return RuleScope(kind=kind, value=None if value in (None, "") else str(value))
    except ValidationError as exc:
        raise RuleConfigError(f"scope {kind}/{value}: {exc.errors()[0]['msg']}") from exc


def camera_scopes(
    session: Session, camera: Camera, grid_codes: dict[int, str] | None = None
) -> list[RuleScope]:
    """Return the scopes that can hold this camera's rule, most specific first.

    ``grid_codes`` (grid id -> code) saves one query per camera when many are resolved.
    """
    scopes = {"camera": RuleScope(kind="camera", value=str(camera.id))}
    if camera.grid_id is not None:
        scopes["grid"] = RuleScope(kind="grid", value=str(camera.grid_id))
        if grid_codes is not None:
            code = grid_codes.get(camera.grid_id)
        else:
            code = session.scalar(select(Grid.code).where(Grid.id == camera.grid_id))
        if code and len(code) >= 6 and code[:6].isdigit():
            scopes["district"] = RuleScope(kind="district", value=code[:6])
    if camera.cls in (1, 2, 3):
        scopes["camera_class"] = RuleScope(kind="camera_class", value=str(camera.cls))
    scopes["default"] = RuleScope()
    return [scopes[k] for k in SCOPE_PRECEDENCE if k in scopes]


def _active_row(session: Session, scope: RuleScope) -> RedactionRule | None:
    q = select(RedactionRule).where(
        RedactionRule.scope_kind == scope.kind, RedactionRule.active.is_(True)
    )
    q = q.where(
        RedactionRule.scope_value.is_(None)
        if scope.value is None
        else RedactionRule.scope_value == scope.value
    )
    return session.scalar(q.order_by(RedactionRule.version.desc()).limit(1))


def effective_rule(
    db: Database | Session, camera_id: int | str, floor: PrivacyFloor = DEFAULT_FLOOR
) -> EffectiveRule:
    """Return the rule in force for a camera (database id or GB/T 28181 ID), raised to ``floor``.

    A stored rule below the floor (written around ``save_rule``, e.g. by SQL) is served
    raised to it, never below it; that is logged as a warning and named in ``raised``.

    Raises
    ------
    NotFoundError
        If there is no such camera.
    RuleConfigError
        If the winning stored rule no longer validates (fix it; the stream keeps its rules).
    """
    with use_session(db) as session:
        camera = _camera(session, camera_id)
        for scope in camera_scopes(session, camera):
            row = _active_row(session, scope)
            if row is not None:
                try:
                    rules = parse_rules(row.config)
                except ValidationError as exc:
                    raise RuleConfigError(
                        f"stored rule #{row.id} ({scope.kind}/{scope.value}) is invalid: {exc}"
                    ) from exc
                return _floored(EffectiveRule(rules, scope, row.id, row.version), floor, camera)
    return _floored(EffectiveRule(RedactionRules(), RuleScope(), None, 0), floor, camera)


def _floored(eff: EffectiveRule, floor: PrivacyFloor, camera: Camera) -> EffectiveRule:
    rules, raised = floor.raise_rules(eff.rules)
    if not raised:
        return eff
    # a stored row below the floor was written around save_rule (e.g. by SQL): worth a warning;
    # the built-in default below a deployment's floor is configuration, not tampering
    level = logging.WARNING if eff.rule_id else logging.INFO
    where = f"rule #{eff.rule_id}" if eff.rule_id else "the built-in default rule"
    log.log(
        level, "camera %s: %s (%s/%s) is below the privacy floor (%s); serving it raised to %s",
        camera.id, where, eff.scope.kind, eff.scope.value, "; ".join(raised), floor.describe(),
    )  # fmt: skip
    return EffectiveRule(rules, eff.scope, eff.rule_id, eff.version, tuple(raised))


def rules_for_camera(
    db: Database | Session, camera_id: int | str, floor: PrivacyFloor = DEFAULT_FLOOR
) -> RedactionRules:
    """Return the ``RedactionRules`` in force for a camera (see ``effective_rule``)."""
    return effective_rule(db, camera_id, floor).rules


def check_floor(rules: RedactionRules, floor: PrivacyFloor) -> None:
    """Return None if ``rules`` is at or above ``floor``.

    Raises
    ------
    RuleFloorError
        Naming what is missing and the whole floor.
    """
    try:
        floor.check(rules)
    except FloorError as exc:
        raise RuleFloorError(str(exc), floor) from exc


def save_rule(
    db: Database | Session,
    scope: RuleScope | dict,
    config: RedactionRules | dict | str,
    created_by: str,
    *,
    floor: PrivacyFloor = DEFAULT_FLOOR,
    approved_by: str | None = None,
) -> dict:
    """Return the new rule version (as ``rule_dict``) after storing it for ``scope``.

    Earlier versions of that scope stay in the table, marked inactive. This stores; it does
    not audit or ask for approval: people's changes go through ``rule_changes.change_rule``.

    Raises
    ------
    RuleConfigError
        If the scope or the config does not validate.
    RuleFloorError
        If the rule is below ``floor``.
    """
    if not created_by:
        raise RuleConfigError("created_by: say who changes the rule (user name)")
    try:
        scope = scope if isinstance(scope, RuleScope) else RuleScope.model_validate(scope)
        rules = parse_rules(config)
    except ValidationError as exc:
        raise RuleConfigError(f"invalid rule: {exc}") from exc
    check_floor(rules, floor)
    with use_session(db) as session:
        q = select(func.max(RedactionRule.version)).where(RedactionRule.scope_kind == scope.kind)
        q = q.where(
            RedactionRule.scope_value.is_(None)
            if scope.value is None
            else RedactionRule.scope_value == scope.value
        )
        last = session.scalar(q) or 0
        old = select(RedactionRule).where(
            RedactionRule.scope_kind == scope.kind, RedactionRule.active.is_(True)
        )
        old = old.where(
            RedactionRule.scope_value.is_(None)
            if scope.value is None
            else RedactionRule.scope_value == scope.value
        )
        for row in session.scalars(old):
            row.active = False
        row = RedactionRule(
            scope_kind=scope.kind,
            scope_value=scope.value,
            version=last + 1,
            config=rules.model_dump_json(),
            created_by=created_by,
            created_at=dt.datetime.now(dt.UTC),
            active=True,
            approved_by=approved_by,
        )
        session.add(row)
        session.flush()
        out = rule_dict(row)
    log.info("rule %s/%s v%d saved by %s", scope.kind, scope.value, out["version"], created_by)
    return out


def deactivate_scope(db: Database | Session, scope: RuleScope | dict, by: str) -> int:
    """Return how many versions were deactivated; the scope then falls back to broader rules."""
    scope = scope if isinstance(scope, RuleScope) else RuleScope.model_validate(scope)
    if scope.kind == "default":
        raise RuleConfigError("the default rule cannot be removed, only replaced")
    with use_session(db) as session:
        q = select(RedactionRule).where(
            RedactionRule.scope_kind == scope.kind,
            RedactionRule.scope_value == scope.value,
            RedactionRule.active.is_(True),
        )
        rows = list(session.scalars(q))
        for row in rows:
            row.active = False
    log.info("rule %s/%s deactivated by %s", scope.kind, scope.value, by)
    return len(rows)


def list_versions(db: Database | Session, scope: RuleScope | dict | None = None) -> list[dict]:
    """Return rule versions (newest first), all or those of one scope."""
    with use_session(db) as session:
        q = select(RedactionRule)
        if scope is not None:
            scope = scope if isinstance(scope, RuleScope) else RuleScope.model_validate(scope)
            q = q.where(RedactionRule.scope_kind == scope.kind)
            q = q.where(
                RedactionRule.scope_value.is_(None)
                if scope.value is None
                else RedactionRule.scope_value == scope.value
            )
        q = q.order_by(
            RedactionRule.scope_kind, RedactionRule.scope_value, RedactionRule.version.desc()
        )
        return [rule_dict(r) for r in session.scalars(q)]


def active_row(session: Session, scope: RuleScope) -> RedactionRule | None:
    """Return the active rule row of ``scope`` (None: the scope has no rule of its own)."""
    return _active_row(session, scope)


def revision(db: Database | Session) -> tuple[int, int]:
    """Return a cheap token that changes whenever any rule is saved or deactivated."""
    with use_session(db) as session:
        max_id = session.scalar(select(func.max(RedactionRule.id))) or 0
        active = session.scalar(
            select(func.count()).select_from(RedactionRule).where(RedactionRule.active.is_(True))
        )
    return int(max_id), int(active or 0)


def rule_dict(row: RedactionRule) -> dict:
    """Return a stored rule as a JSON-ready dict (config parsed)."""
    try:
        config = parse_rules(row.config).model_dump(mode="json")
    except ValidationError:
        config = None
    return {
        "id": row.id,
        "scope": {"kind": row.scope_kind, "value": row.scope_value},
        "version": row.version,
        "config": config,
        "created_by": row.created_by,
        "approved_by": row.approved_by,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "active": bool(row.active),
    }


def _camera(session: Session, camera_id: int | str) -> Camera:
    if isinstance(camera_id, str) and len(camera_id) == 20:
        camera = session.scalar(select(Camera).where(Camera.gb_id == camera_id))
    else:
        try:
            camera = get_row(session, Camera, camera_id)
        except (TypeError, ValueError):
            camera = None
    if camera is None:
        raise NotFoundError(f"no camera with id or GB/T 28181 ID {camera_id!r}")
    return camera
