"""The dispatcher's case queue: open cases in a scope, most urgent first, with their SLA state.

A case's SLA state is ``overdue`` (past due), ``warn`` (less than ``WARN_HOURS`` left), ``ok``,
``paused`` (an approved extension stopped the clock: the hours shown are those left when it
stopped) or ``none`` (no due time). Escalated means the case sits above its category's owner
level; a duplicate suspect is a report the merge suggestions name as the later of a pair.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from layers.models import OPEN_STATUSES, Category, Grid, Incident, Responder, utcnow
from layers.services import duplicates as duplicate_service
from layers.services.scope import Scope

QUEUE_LIMIT = 500
WARN_HOURS = 8.0  # amber when less than this many hours remain
SUSPECT_DAYS = 2  # duplicate suggestions look at reports this recent


def sla_state(due_at: dt.datetime | None, paused_at: dt.datetime | None, now: dt.datetime):
    """Return (hours left or None, state) of a case's SLA clock at ``now`` (see module doc)."""
    ref = paused_at or now
    left = None if due_at is None else (due_at - ref).total_seconds() / 3600
    if paused_at is not None:
        return left, "paused"
    if left is None:
        return None, "none"
    return left, "overdue" if left < 0 else "warn" if left < WARN_HOURS else "ok"


def open_cases(
    session: Session, *, scope: Scope, now: dt.datetime | None = None, limit: int = QUEUE_LIMIT
) -> list[dict]:
    """Return ``scope``'s open cases (no merged duplicates), most urgent first, at most ``limit``.

    Each dict: id, category_code, category_zh, category_en, priority, status, grid_code,
    escalation_level, escalated, assignee (name), created_at, sla_hours (rounded to 0.1 h or
    None), sla_state, duplicate (a merge suggestion names it).
    """
    now = now or utcnow()
    rows = session.execute(
        select(Incident, Grid.code, Responder.name, Category.name_zh, Category.name_en,
               Category.owner_level)
        .outerjoin(Grid, Incident.grid_id == Grid.id)
        .outerjoin(Responder, Incident.assignee_id == Responder.id)
        .outerjoin(Category, Category.code == Incident.category_code)
        .where(Incident.status.in_(OPEN_STATUSES), Incident.duplicate_of.is_(None),
               *scope.incidents(session))
        .order_by(Incident.due_at, Incident.id)
        .limit(limit)
    ).all()  # fmt: skip
    suspects = {
        d["duplicate"]
        for d in duplicate_service.suggest_merges(
            session, since=now - dt.timedelta(days=SUSPECT_DAYS), limit=limit
        )
    }
    out, seen = [], set()
    for inc, grid_code, assignee, name_zh, name_en, owner in rows:
        if inc.id in seen:  # one row per case even if the dictionary has several versions
            continue
        seen.add(inc.id)
        left, state = sla_state(inc.due_at, inc.sla_paused_at, now)
        out.append({
            "id": inc.id, "category_code": inc.category_code, "category_zh": name_zh,
            "category_en": name_en, "priority": inc.priority, "status": inc.status,
            "grid_code": grid_code or "", "escalation_level": inc.escalation_level,
            "escalated": inc.escalation_level != (owner or inc.escalation_level),
            "assignee": assignee or "", "created_at": inc.created_at,
            "sla_hours": None if left is None else round(left, 1), "sla_state": state,
            "duplicate": inc.id in suspects,
        })  # fmt: skip
    return out


def queue_totals(session: Session, *, scope: Scope, now: dt.datetime | None = None) -> dict:
    """Return ``scope``'s whole-queue counts {open, overdue, escalated}, not capped."""
    now = now or utcnow()
    base = [Incident.status.in_(OPEN_STATUSES), Incident.duplicate_of.is_(None),
            *scope.incidents(session)]  # fmt: skip
    owner = (
        select(Category.owner_level)
        .where(Category.code == Incident.category_code)
        .limit(1)
        .scalar_subquery()
    )

    def count(*conds) -> int:
        return session.scalar(select(func.count()).select_from(Incident).where(*base, *conds)) or 0

    return {
        "open": count(),
        "overdue": count(Incident.due_at < now, Incident.sla_paused_at.is_(None)),
        "escalated": count(
            Incident.escalation_level != func.coalesce(owner, Incident.escalation_level)
        ),
    }
