"""The GB/T 30428 case workflow: allowed transitions, who may make them, and their log.

States: collected 信息收集 → registered 案卷建立 → dispatched 任务派遣 → handling 任务处理 →
reported 处理反馈 → closed 核查结案 → evaluated 综合考评. Verification that fails sends a case
back (``rework``: reported → handling, or → dispatched for a new assignee) and counts it.
Side actions keep the status: ``reassign`` (dispatcher override), ``escalate`` (one level up),
``extend`` / ``pause`` / ``resume`` (approved extensions of the SLA clock). ``merge`` closes a
duplicate into its primary case, so one problem is never dispatched twice.

``apply`` is the only function that changes an incident's status; every call writes one
``IncidentEvent`` (actor, role, time, reason), one ``incident.updated`` live event (published
at commit, ``layers.events``) and one audit record. What an action does beyond the status
change is its handler, held with its states and roles in the ``ACTIONS`` table.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, fields

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from layers.events import emit
from layers.models import (
    INCIDENT_STATUSES,
    OPEN_STATUSES,
    Category,
    Incident,
    IncidentEvent,
    Responder,
    utcnow,
)
from layers.services import NotFoundError, ServiceError, audit, get_row
from layers.services import sla as sla_service
from layers.services.duplicates import candidates_near, root_of
from layers.services.routing import route_incident
from layers.services.scope import Scope
from layers.services.spatial import locator

log = logging.getLogger(__name__)

DISPATCH_ROLES = frozenset({"dispatcher", "admin"})
FIELD_ROLES = frozenset({"operator", "dispatcher", "admin", "responder"})
STAMP = {"registered": "registered_at", "dispatched": "dispatched_at", "handling": "handled_at",
         "reported": "reported_at", "closed": "closed_at", "evaluated": "evaluated_at"}  # fmt: skip
REWORK_TARGETS = ("handling", "dispatched")


class TransitionError(ServiceError):
    """The action is not allowed from the incident's current status (or its preconditions fail)."""


class ActionNotPermittedError(PermissionError):
    """The caller's role may not perform this action."""


@dataclass(frozen=True)
class ActionOptions:
    """The caller's reason and the arguments some actions take (others ignore them).

    Attributes
    ----------
    reason : str
        Why, in the actor's words; logged with the event.
    assignee_id : int, optional
        ``dispatch`` / ``reassign`` / ``rework``: the responder chosen by the dispatcher
        (override of the routed one); refused for any other action.
    into : int, optional
        ``merge``: the primary incident this one duplicates.
    hours : float, optional
        ``extend``: approved extension in SLA hours.
    rework_to : "handling" or "dispatched"
        ``rework``: back to the same worker, or back to dispatch for a new assignee.
    distinct : bool
        ``dispatch``: the dispatcher confirms the case is a different problem from a nearby
        same-category report that is already dispatched (otherwise dispatch is refused, so
        one problem is never dispatched twice; merge it instead).
    """

    reason: str = ""
    assignee_id: int | None = None
    into: int | None = None
    hours: float | None = None
    rework_to: str = "handling"
    distinct: bool = False


OPTION_NAMES = tuple(f.name for f in fields(ActionOptions))


@dataclass
class Transition:
    """One action being applied: the locked incident, who acts, and what the log will say.

    A handler may change ``row``, ``to_status`` (``rework``) and ``detail`` (the logged
    reason); ``apply`` records the result.
    """

    session: Session
    row: Incident
    action: str
    actor: str
    role: str
    now: dt.datetime
    calendar: sla_service.WorkCalendar | None
    options: ActionOptions
    to_status: str
    detail: str

    def explain(self, note: str) -> None:
        """Set the logged reason to the caller's reason followed by ``note``."""
        self.detail = f"{self.options.reason} {note}".strip()


Handler = Callable[[Transition], None]


# -- what each action does beyond the status change ------------------------------------------


def _dispatch(t: Transition) -> None:
    row, opts = t.row, t.options
    if row.duplicate_of is not None:
        raise TransitionError(
            f"incident {row.id} was merged into {row.duplicate_of}; dispatch that one instead"
        )
    if not opts.distinct:
        _refuse_second_dispatch(t.session, row)
    if opts.assignee_id is not None:
        row.assignee_id = int(opts.assignee_id)
        t.explain(f"(assignee {opts.assignee_id} by dispatcher)")
    elif row.assignee_id is None:
        route = route_incident(
            t.session, grid_id=row.grid_id, lon=row.lon, lat=row.lat, level=row.escalation_level
        )
        row.assignee_id, row.center_id = route.assignee_id, route.center_id
        if row.assignee_id is None:
            raise TransitionError(
                f"incident {row.id}: nobody is available to dispatch to; "
                "pass assignee_id to choose a responder"
            )
        t.explain(f"(routed: {route.reason})")


def _refuse_second_dispatch(session: Session, row: Incident) -> None:
    """Raise TransitionError if a likely duplicate of ``row`` is already out with a worker."""
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


def _reassign(t: Transition) -> None:
    new = t.options.assignee_id
    if new is None:
        raise TransitionError("assignee_id: reassign needs the responder to hand the case to")
    t.explain(f"(assignee {t.row.assignee_id} -> {new})")
    t.row.assignee_id = int(new)


def _rework(t: Transition) -> None:
    row, opts = t.row, t.options
    if opts.rework_to not in REWORK_TARGETS:
        raise TransitionError(f"rework_to: {opts.rework_to!r}; use handling or dispatched")
    t.to_status = opts.rework_to
    row.rework_count = int(row.rework_count or 0) + 1
    row.reported_at = None
    if opts.assignee_id is not None:
        row.assignee_id = int(opts.assignee_id)


def _merge(t: Transition) -> None:
    row, into, session = t.row, t.options.into, t.session
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
    reason = t.options.reason
    session.add(IncidentEvent(
        incident_id=primary, from_status=primary_status, to_status=primary_status,
        action="merge_in", actor=t.actor, role=t.role, ts=t.now,
        reason=f"incident {row.id} merged in. {reason}".strip(),
    ))  # fmt: skip
    t.detail = f"merged into {primary}. {reason}".strip()


def _escalate(t: Transition) -> None:
    row, session = t.row, t.session
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
    row.escalated_at = t.now
    cat_hours = session.scalar(
        select(Category.sla_hours).where(Category.code == row.category_code).limit(1)
    )
    step = sla_service.sla_hours_for(cat_hours or 72.0, row.priority)
    row.escalate_at = sla_service.add_sla_time(t.now, step, row.priority, t.calendar)
    t.explain(f"(now {level}; {route.reason})")


def _extend(t: Transition) -> None:
    hours = t.options.hours
    if hours is None or not hours > 0:
        raise TransitionError("hours: extend needs the approved extension in hours (> 0)")
    sla_service.extend(t.row, float(hours), t.calendar)
    t.explain(f"(+{hours} h, due {t.row.due_at.isoformat()})")


def _pause(t: Transition) -> None:
    if t.row.sla_paused_at is not None:
        raise TransitionError(f"incident {t.row.id}: the SLA clock is already paused")
    sla_service.pause(t.row, t.now)


def _resume(t: Transition) -> None:
    if t.row.sla_paused_at is None:
        raise TransitionError(f"incident {t.row.id}: the SLA clock is not paused")
    moved = sla_service.resume(t.row, t.now, t.calendar)
    t.explain(f"(paused {moved:.2f} h)")


# -- the table of actions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One workflow action: the states it starts from, the state it leads to, who may do it.

    ``to_status`` None means the status stays as it is (a side action). ``handler`` does
    what the action does beyond the status change (None: nothing); ``takes_assignee`` says
    whether the caller may name the responder.
    """

    name: str
    from_statuses: frozenset[str]
    to_status: str | None
    roles: frozenset[str]
    label_zh: str
    handler: Handler | None = None
    takes_assignee: bool = False


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("register", frozenset({"collected"}), "registered",
               frozenset({"operator"}) | DISPATCH_ROLES, "立案"),
        Action("dispatch", frozenset({"registered"}), "dispatched", DISPATCH_ROLES, "派遣",
               _dispatch, takes_assignee=True),
        Action("accept", frozenset({"dispatched"}), "handling", FIELD_ROLES, "处理"),
        Action("report", frozenset({"handling"}), "reported", FIELD_ROLES, "反馈"),
        Action("close", frozenset({"reported"}), "closed", DISPATCH_ROLES, "核查结案"),
        Action("rework", frozenset({"reported"}), "handling", DISPATCH_ROLES, "返工",
               _rework, takes_assignee=True),
        Action("evaluate", frozenset({"closed"}), "evaluated", DISPATCH_ROLES, "考评"),
        Action("merge", frozenset(OPEN_STATUSES), "closed", DISPATCH_ROLES, "合并", _merge),
        Action("reassign", frozenset({"collected", "registered", "dispatched", "handling"}),
               None, DISPATCH_ROLES, "改派", _reassign, takes_assignee=True),
        Action("escalate", frozenset(OPEN_STATUSES), None,
               DISPATCH_ROLES | {"system"}, "升级", _escalate),
        Action("extend", frozenset(OPEN_STATUSES), None, DISPATCH_ROLES, "延期", _extend),
        Action("pause", frozenset(OPEN_STATUSES), None, DISPATCH_ROLES, "暂停计时", _pause),
        Action("resume", frozenset(OPEN_STATUSES), None, DISPATCH_ROLES, "恢复计时", _resume),
    )
}  # fmt: skip

# Every (from, to) status pair a case may take (side actions are self-loops).
ALLOWED_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {(f, a.to_status) for a in ACTIONS.values() if a.to_status for f in a.from_statuses}
    | {(f, f) for a in ACTIONS.values() if a.to_status is None for f in a.from_statuses}
    | {("reported", "dispatched")}
)
ASSIGNEE_ACTIONS = tuple(a.name for a in ACTIONS.values() if a.takes_assignee)


def allowed_actions(status: str, role: str | None = None) -> list[str]:
    """Return the names of the actions possible from ``status`` (for ``role``, if given)."""
    return [
        a.name
        for a in ACTIONS.values()
        if status in a.from_statuses and (role is None or role in a.roles)
    ]


# -- applying an action -------------------------------------------------------------------------


def apply(
    session: Session,
    incident_id: int,
    action: str,
    *,
    actor: str,
    role: str,
    now: dt.datetime | None = None,
    calendar: sla_service.WorkCalendar | None = None,
    **options: object,
) -> Incident:
    """Return the incident after performing ``action`` on it, logged as an IncidentEvent.

    Parameters
    ----------
    action : str
        A key of ``ACTIONS``.
    actor, role : str
        Who acts (user name / token name / ``system``) and in which role.
    now : datetime, optional
        The time of the action (default: now).
    calendar : sla.WorkCalendar, optional
        The working-time calendar of SLA changes (default: the shipped one).
    **options
        The fields of ``ActionOptions``: ``reason``, ``assignee_id``, ``into``, ``hours``,
        ``rework_to``, ``distinct``.

    Raises
    ------
    NotFoundError
        If the incident (or ``into``, or ``assignee_id``) does not exist.
    ActionNotPermittedError
        If ``role`` may not perform ``action``.
    TransitionError
        If the action is not allowed from the current status, a precondition fails, or an
        option is unknown.
    """
    spec = _permitted(action, role)
    opts = _options(options)
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
    _check_assignee(session, spec, opts.assignee_id)
    t = Transition(session=session, row=row, action=action, actor=actor, role=role,
                   now=now or utcnow(), calendar=calendar, options=opts,
                   to_status=spec.to_status or row.status, detail=opts.reason)  # fmt: skip
    if spec.handler is not None:
        spec.handler(t)
    _record(t)
    return row


def _permitted(action: str, role: str) -> Action:
    spec = ACTIONS.get(action)
    if spec is None:
        raise TransitionError(f"action: {action!r} is unknown; use one of {', '.join(ACTIONS)}")
    if role not in spec.roles:
        raise ActionNotPermittedError(
            f"role {role!r} may not {action}; it needs one of {', '.join(sorted(spec.roles))}"
        )
    return spec


def _options(options: dict[str, object]) -> ActionOptions:
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise TransitionError(f"{unknown[0]}: not an action option; use {', '.join(OPTION_NAMES)}")
    return ActionOptions(**options)  # type: ignore[arg-type]


def _check_assignee(session: Session, spec: Action, assignee_id: int | None) -> None:
    if assignee_id is None:
        return
    if not spec.takes_assignee:
        raise TransitionError(
            f"assignee_id: only {', '.join(ASSIGNEE_ACTIONS)} take one, not {spec.name}"
        )
    if get_row(session, Responder, assignee_id) is None:
        raise NotFoundError(f"assignee_id: no responder with id {assignee_id!r}")


def _record(t: Transition) -> None:
    """Stamp the new status, log the event, publish it at commit and audit it."""
    row, from_status, to_status = t.row, t.row.status, t.to_status
    if to_status != from_status:
        stamp = STAMP.get(to_status)
        if stamp:
            setattr(row, stamp, t.now)
        if to_status == "closed" and row.sla_paused_at is not None:
            sla_service.resume(row, t.now, t.calendar)
    if to_status not in INCIDENT_STATUSES:  # defensive: the table above defines them all
        raise TransitionError(f"internal: {to_status!r} is not a workflow status")
    row.status = to_status
    t.session.add(IncidentEvent(incident_id=row.id, from_status=from_status, to_status=to_status,
                                action=t.action, actor=t.actor, role=t.role, ts=t.now,
                                reason=t.detail))  # fmt: skip
    t.session.flush()
    emit(t.session, "incident.updated", {
        "id": row.id, "action": t.action, "from_status": from_status, "to_status": to_status,
        "grid_id": row.grid_id, "center_id": row.center_id, "assignee_id": row.assignee_id,
        "escalation_level": row.escalation_level, "duplicate_of": row.duplicate_of,
        "ts": t.now.isoformat(),
    })  # fmt: skip
    audit.record(t.session, actor=t.actor, role=t.role, action=f"incident.{t.action}",
                 target=f"incident:{row.id}", detail={"reason": t.detail})  # fmt: skip
    log.debug("incident %s %s: %s -> %s by %s", row.id, t.action, from_status, to_status, t.actor)


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
