"""The GB/T 30428 case workflow: allowed transitions, who may make them, and their log.

States: collected 信息收集 → registered 案卷建立 → dispatched 任务派遣 → handling 任务处理 →
reported 处理反馈 → closed 核查结案 → evaluated 综合考评. Verification that fails sends a case
back (``rework``: reported → handling, or → dispatched for a new assignee) and counts it.
Side actions keep the status: ``reassign`` (dispatcher override), ``escalate`` (one level up),
``extend`` / ``pause`` / ``resume`` (approved extensions of the SLA clock). ``merge`` closes a
duplicate into its primary case, so one problem is never dispatched twice.

``apply`` is the only function that changes an incident's status; every call writes one
``IncidentEvent`` (actor, role, time, reason), one ``incident.updated`` live event (published
at commit, ``layers.events``) and one audit record.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from layers.events import emit
from layers.models import INCIDENT_STATUSES, Incident, IncidentEvent, utcnow
from layers.services import NotFoundError, ServiceError, audit, get_row
from layers.services import sla as sla_service
from layers.services.routing import route_incident
from layers.services.spatial import locator

log = logging.getLogger(__name__)

OPEN_STATUSES = ("collected", "registered", "dispatched", "handling", "reported")
DISPATCH_ROLES = frozenset({"dispatcher", "admin"})
FIELD_ROLES = frozenset({"operator", "dispatcher", "admin", "responder"})


@dataclass(frozen=True)
class Action:
    """One workflow action: the states it starts from, the state it leads to, who may do it.

    ``to_status`` None means the status stays as it is (a side action).
    """

    name: str
    from_statuses: frozenset[str]
    to_status: str | None
    roles: frozenset[str]
    label_zh: str


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("register", frozenset({"collected"}), "registered",
               frozenset({"operator"}) | DISPATCH_ROLES, "立案"),
        Action("dispatch", frozenset({"registered"}), "dispatched", DISPATCH_ROLES, "派遣"),
        Action("accept", frozenset({"dispatched"}), "handling", FIELD_ROLES, "处理"),
        Action("report", frozenset({"handling"}), "reported", FIELD_ROLES, "反馈"),
        Action("close", frozenset({"reported"}), "closed", DISPATCH_ROLES, "核查结案"),
        Action("rework", frozenset({"reported"}), "handling", DISPATCH_ROLES, "返工"),
        Action("evaluate", frozenset({"closed"}), "evaluated", DISPATCH_ROLES, "考评"),
        Action("merge", frozenset(OPEN_STATUSES), "closed", DISPATCH_ROLES, "合并"),
        Action("reassign", frozenset({"collected", "registered", "dispatched", "handling"}),
               None, DISPATCH_ROLES, "改派"),
        Action("escalate", frozenset(OPEN_STATUSES), None,
               DISPATCH_ROLES | {"system"}, "升级"),
        Action("extend", frozenset(OPEN_STATUSES), None, DISPATCH_ROLES, "延期"),
        Action("pause", frozenset(OPEN_STATUSES), None, DISPATCH_ROLES, "暂停计时"),
        Action("resume", frozenset(OPEN_STATUSES), None, DISPATCH_ROLES, "恢复计时"),
    )
}  # fmt: skip

# Every (from, to) status pair a case may take (side actions are self-loops).
ALLOWED_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {(f, a.to_status) for a in ACTIONS.values() if a.to_status for f in a.from_statuses}
    | {(f, f) for a in ACTIONS.values() if a.to_status is None for f in a.from_statuses}
    | {("reported", "dispatched")}
)
STAMP = {"registered": "registered_at", "dispatched": "dispatched_at", "handling": "handled_at",
         "reported": "reported_at", "closed": "closed_at", "evaluated": "evaluated_at"}  # fmt: skip


class TransitionError(ServiceError):
    """The action is not allowed from the incident's current status (or its preconditions fail)."""


class ActionNotPermittedError(PermissionError):
    """The caller's role may not perform this action."""


def allowed_actions(status: str, role: str | None = None) -> list[str]:
    """Return the names of the actions possible from ``status`` (for ``role``, if given)."""
    return [
        a.name
        for a in ACTIONS.values()
        if status in a.from_statuses and (role is None or role in a.roles)
    ]


def _audit(session: Session, actor: str, role: str, action: str, target: str, detail: str):
    audit.record(
        session, actor=actor, role=role, action=action, target=target, detail={"reason": detail}
    )


def _refuse_second_dispatch(session: Session, row: Incident) -> None:
    """Raise TransitionError if a likely duplicate of ``row`` is already out with a worker."""
    from layers.services.duplicates import candidates_near
    from layers.services.scope import Scope

    out = [
        c for c in candidates_near(session, lon=row.lon, lat=row.lat, category=row.category_code,
                                   at=row.created_at, exclude_id=row.id,
                                   scope=Scope.ALL)  # the city's safety check, not a listing
        if c["status"] in ("dispatched", "handling", "reported")
    ]  # fmt: skip
    if out:
        c = out[0]
        raise TransitionError(
            f"incident {row.id} looks like incident {c['id']} (same category, "
            f"{c['distance_m']:.0f} m and {c['minutes_apart']:.0f} min apart), which is already "
            f"dispatched; merge it into {c['id']}, or dispatch with distinct=true if it is a "
            "different problem"
        )


def root_of(session: Session, incident_id: int) -> int:
    """Return the primary case of a (possibly merged) incident, following ``duplicate_of``."""
    seen = set()
    current = int(incident_id)
    while current not in seen:
        seen.add(current)
        nxt = session.scalar(select(Incident.duplicate_of).where(Incident.id == current))
        if nxt is None:
            return current
        current = int(nxt)
    return current


def apply(
    session: Session,
    incident_id: int,
    action: str,
    *,
    actor: str,
    role: str,
    reason: str = "",
    now: dt.datetime | None = None,
    assignee_id: int | None = None,
    into: int | None = None,
    hours: float | None = None,
    rework_to: str = "handling",
    distinct: bool = False,
    calendar: sla_service.WorkCalendar | None = None,
) -> Incident:
    """Return the incident after performing ``action`` on it, logged as an IncidentEvent.

    Parameters
    ----------
    action : str
        A key of ``ACTIONS``.
    actor, role : str
        Who acts (user name / token name / ``system``) and in which role.
    assignee_id : int, optional
        ``dispatch`` / ``reassign`` / ``rework`` to ``dispatched``: the responder chosen by
        the dispatcher (override of the routed one).
    into : int
        ``merge``: the primary incident this one duplicates.
    hours : float
        ``extend``: approved extension in SLA hours.
    rework_to : "handling" or "dispatched"
        ``rework``: back to the same worker, or back to dispatch for a new assignee.
    distinct : bool
        ``dispatch``: the dispatcher confirms the case is a different problem from a nearby
        same-category report that is already dispatched (otherwise dispatch is refused, so
        one problem is never dispatched twice; merge it instead).

    Raises
    ------
    NotFoundError
        If the incident (or ``into``, or ``assignee_id``) does not exist.
    ActionNotPermittedError
        If ``role`` may not perform ``action``.
    TransitionError
        If the action is not allowed from the current status or a precondition fails.
    """
    from layers.models import Responder

    spec = ACTIONS.get(action)
    if spec is None:
        raise TransitionError(f"action: {action!r} is unknown; use one of {', '.join(ACTIONS)}")
    if role not in spec.roles:
        raise ActionNotPermittedError(
            f"role {role!r} may not {action}; it needs one of {', '.join(sorted(spec.roles))}"
        )
    now = now or utcnow()
    row = get_row(session, Incident, incident_id, with_for_update=True)
    if row is None:
        raise NotFoundError(f"no incident with id {incident_id!r}")
    if row.status not in spec.from_statuses:
        possible = ", ".join(allowed_actions(row.status)) or "none"
        raise TransitionError(
            f"cannot {action} incident {row.id} in status {row.status!r}; "
            f"{action} needs status {' or '.join(sorted(spec.from_statuses))}; "
            f"possible now: {possible}"
        )
    from_status = row.status
    to_status = spec.to_status or from_status
    detail = reason

    if assignee_id is not None and action not in ("dispatch", "reassign", "rework"):
        raise TransitionError(
            f"assignee_id: only dispatch, reassign and rework take one, not {action}"
        )
    if assignee_id is not None and get_row(session, Responder, assignee_id) is None:
        raise NotFoundError(f"assignee_id: no responder with id {assignee_id!r}")

    if action == "dispatch":
        if row.duplicate_of is not None:
            raise TransitionError(
                f"incident {row.id} was merged into {row.duplicate_of}; dispatch that one instead"
            )
        if not distinct:
            _refuse_second_dispatch(session, row)
        if assignee_id is not None:
            row.assignee_id = int(assignee_id)
            detail = f"{reason} (assignee {assignee_id} by dispatcher)".strip()
        elif row.assignee_id is None:
            route = route_incident(
                session, grid_id=row.grid_id, lon=row.lon, lat=row.lat, level=row.escalation_level
            )
            row.assignee_id, row.center_id = route.assignee_id, route.center_id
            if row.assignee_id is None:
                raise TransitionError(
                    f"incident {row.id}: nobody is available to dispatch to; "
                    "pass assignee_id to choose a responder"
                )
            detail = f"{reason} (routed: {route.reason})".strip()
    elif action == "reassign":
        if assignee_id is None:
            raise TransitionError("assignee_id: reassign needs the responder to hand the case to")
        detail = f"{reason} (assignee {row.assignee_id} -> {assignee_id})".strip()
        row.assignee_id = int(assignee_id)
    elif action == "rework":
        if rework_to not in ("handling", "dispatched"):
            raise TransitionError(f"rework_to: {rework_to!r}; use handling or dispatched")
        to_status = rework_to
        row.rework_count = int(row.rework_count or 0) + 1
        row.reported_at = None
        if assignee_id is not None:
            row.assignee_id = int(assignee_id)
    elif action == "merge":
        if into is None:
            raise TransitionError("into: merge needs the id of the primary incident")
        if get_row(session, Incident, into) is None:
            raise NotFoundError(f"into: no incident with id {into!r}")
        primary = root_of(session, int(into))
        if primary == row.id:
            raise TransitionError(f"into: incident {row.id} cannot be merged into itself")
        row.duplicate_of = primary
        # reports already merged into this one follow it to the primary: all stay linked
        session.execute(
            update(Incident).where(Incident.duplicate_of == row.id).values(duplicate_of=primary)
        )
        primary_status = session.scalar(select(Incident.status).where(Incident.id == primary))
        session.add(IncidentEvent(
            incident_id=primary, from_status=primary_status, to_status=primary_status,
            action="merge_in",
            actor=actor, role=role, ts=now, reason=f"incident {row.id} merged in. {reason}".strip(),
        ))  # fmt: skip
        detail = f"merged into {primary}. {reason}".strip()
    elif action == "escalate":
        level = sla_service.next_level(row.escalation_level)
        if level is None:
            raise TransitionError(f"incident {row.id} is already at city level")
        route = route_incident(
            session, grid_id=row.grid_id, lon=row.lon, lat=row.lat, level=level,
            loc=locator(session),
        )  # fmt: skip
        row.escalation_level = level
        row.center_id = route.center_id
        if route.assignee_id is not None:
            row.assignee_id = route.assignee_id
        row.escalated_at = now
        from layers.models import Category

        cat_hours = session.scalar(
            select(Category.sla_hours).where(Category.code == row.category_code).limit(1)
        )
        step = sla_service.sla_hours_for(cat_hours or 72.0, row.priority)
        row.escalate_at = sla_service.add_sla_time(now, step, row.priority, calendar)
        detail = f"{reason} (now {level}; {route.reason})".strip()
    elif action == "extend":
        if hours is None or not hours > 0:
            raise TransitionError("hours: extend needs the approved extension in hours (> 0)")
        sla_service.extend(row, float(hours), calendar)
        detail = f"{reason} (+{hours} h, due {row.due_at.isoformat()})".strip()
    elif action == "pause":
        if row.sla_paused_at is not None:
            raise TransitionError(f"incident {row.id}: the SLA clock is already paused")
        sla_service.pause(row, now)
    elif action == "resume":
        if row.sla_paused_at is None:
            raise TransitionError(f"incident {row.id}: the SLA clock is not paused")
        moved = sla_service.resume(row, now, calendar)
        detail = f"{reason} (paused {moved:.2f} h)".strip()

    if to_status != from_status:
        stamp = STAMP.get(to_status)
        if stamp:
            setattr(row, stamp, now)
        if to_status == "closed" and row.sla_paused_at is not None:
            sla_service.resume(row, now, calendar)
    if to_status not in INCIDENT_STATUSES:  # defensive: the table above defines them all
        raise TransitionError(f"internal: {to_status!r} is not a workflow status")
    row.status = to_status
    session.add(IncidentEvent(incident_id=row.id, from_status=from_status, to_status=to_status,
                              action=action, actor=actor, role=role, ts=now, reason=detail))  # fmt: skip
    session.flush()
    emit(session, "incident.updated", {
        "id": row.id, "action": action, "from_status": from_status, "to_status": to_status,
        "grid_id": row.grid_id, "center_id": row.center_id, "assignee_id": row.assignee_id,
        "escalation_level": row.escalation_level, "duplicate_of": row.duplicate_of,
        "ts": now.isoformat(),
    })  # fmt: skip
    _audit(session, actor, role, f"incident.{action}", f"incident:{row.id}", detail)
    log.debug("incident %s %s: %s -> %s by %s", row.id, action, from_status, to_status, actor)
    return row


def history(session: Session, incident_id: int) -> list[dict]:
    """Return the incident's workflow events, oldest first, as JSON-ready dicts."""
    rows = session.execute(
        select(IncidentEvent)
        .where(IncidentEvent.incident_id == int(incident_id))
        .order_by(IncidentEvent.ts, IncidentEvent.id)
    ).scalars()
    return [
        {"id": e.id, "from_status": e.from_status, "to_status": e.to_status, "action": e.action,
         "actor": e.actor, "role": e.role, "ts": e.ts.isoformat(), "reason": e.reason}
        for e in rows
    ]  # fmt: skip
