"""One case as the people working it see it: detail, document, workflow action, and its reporter.

Reporter names and phone numbers are masked (``layers.codes.mask_name`` / ``mask_phone``)
unless the caller's ``reveal`` predicate says otherwise. ``reveal(handler)`` is asked with the
case's handler, the user name of whoever took the case into handling (its latest ``accept``)
while it is still with them: status handling or reported, and no reassign, escalation,
dispatch, merge or rework back to dispatch since. The predicate is the web app's personal-data
rule (``dashboard.policy.may_see_personal_data``); this module only supplies the handler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from layers.models import Camera, Category, Grid, IncidentEvent, Responder
from layers.services import NotFoundError, routing, workflow
from layers.services import duplicates as duplicate_service
from layers.services import incidents as incident_service
from layers.services.scope import Scope

#: ``reveal(handler)``: True if the reader may see this case's reporter in clear.
Reveal = Callable[[str | None], bool]

#: Statuses in which a case is with its handler.
HANDLER_STATUSES = ("handling", "reported")
#: Workflow actions after which the case is no longer with the user who accepted it.
HANDOVER_ACTIONS = ("dispatch", "reassign", "escalate", "merge")
_HANDLER_ACTIONS = ("accept", "rework", *HANDOVER_ACTIONS)


def never(_handler: str | None) -> bool:
    """Return False: the reporter stays masked (the default ``reveal``)."""
    return False


def _handlers_from_events(events: Iterable) -> dict[int, str]:
    """Return {incident id: handler} from (incident_id, action, actor, to_status), oldest first."""
    current: dict[int, str | None] = {}
    for incident_id, action, actor, to_status in events:
        if action == "accept":
            current[incident_id] = actor
        elif action in HANDOVER_ACTIONS or (action == "rework" and to_status == "dispatched"):
            current[incident_id] = None
    return {i: a for i, a in current.items() if a}


def case_handlers(session: Session, cases: Iterable[tuple[int, str]]) -> dict[int, str]:
    """Return {incident id: handler user name} for (id, status) pairs; cases without one omitted."""
    ids = [int(i) for i, status in cases if status in HANDLER_STATUSES]
    if not ids:
        return {}
    events = session.execute(
        select(IncidentEvent.incident_id, IncidentEvent.action, IncidentEvent.actor,
               IncidentEvent.to_status)
        .where(IncidentEvent.incident_id.in_(ids), IncidentEvent.action.in_(_HANDLER_ACTIONS))
        .order_by(IncidentEvent.incident_id, IncidentEvent.ts, IncidentEvent.id)
    ).all()  # fmt: skip
    return _handlers_from_events(events)


def case_handler(session: Session, incident_id: int, status: str) -> str | None:
    """Return the user name of the case's handler (see the module doc), or None."""
    return case_handlers(session, [(incident_id, status)]).get(int(incident_id))


def _document(session: Session, row, reveal: Reveal) -> dict:
    """Return the incident's public dict, the reporter in clear if ``reveal`` allows it."""
    return incident_service.public_dict(
        row, unmask=bool(reveal(case_handler(session, row.id, row.status)))
    )


def actions_for(status: str, sla_paused: bool, role: str) -> list[str]:
    """Return the workflow actions ``role`` may take now (pause only when running, etc.)."""
    return [
        a
        for a in workflow.allowed_actions(status, role)
        if not (a == "pause" and sla_paused) and not (a == "resume" and not sla_paused)
    ]


def case_document(
    session: Session, incident_id: int, *, scope: Scope, role: str, reveal: Reveal = never
) -> dict:
    """Return one case for the API: its fields, history, possible duplicates, linked reports
    and the actions ``role`` may take.

    Raises
    ------
    NotFoundError
        If no incident with this id is in ``scope``.
    """
    row = incident_service.get_incident(session, incident_id, scope=scope)
    doc = _document(session, row, reveal)
    doc["history"] = workflow.history(session, row.id)
    doc["possible_duplicates"] = duplicate_service.candidates(session, row.id, scope=scope)
    doc["linked_reports"] = duplicate_service.linked_reports(session, row.id)
    doc["allowed_actions"] = workflow.allowed_actions(row.status, role)
    return doc


def list_documents(
    session: Session, *, scope: Scope, reveal: Reveal = never, **filters
) -> tuple[list[dict], int]:
    """Return (page of incident dicts newest first, total) for ``incidents.list_incidents``
    filters, each reporter in clear where ``reveal`` allows it."""
    rows, total = incident_service.list_incidents(session, scope=scope, **filters)
    handlers = case_handlers(session, [(r.id, r.status) for r in rows])
    docs = [incident_service.public_dict(r, unmask=bool(reveal(handlers.get(r.id)))) for r in rows]
    return docs, total


def find_many(session: Session, ids: Iterable[int], *, scope: Scope) -> list:
    """Return the incidents of ``ids`` in ``scope``, in the order given (unknown ids skipped)."""
    out = []
    for i in ids:
        try:
            out.append(incident_service.get_incident(session, i, scope=scope))
        except NotFoundError:
            continue
    return out


def act(
    session: Session,
    incident_id: int,
    action: str,
    *,
    scope: Scope,
    actor: str,
    role: str,
    reveal: Reveal = never,
    **options,
) -> dict:
    """Return the case's dict after ``workflow.apply`` of ``action`` on a case in ``scope``.

    ``options`` are ``workflow.apply``'s (reason, assignee_id, into, hours, rework_to,
    distinct).

    Raises
    ------
    NotFoundError
        If no incident with this id is in ``scope`` (nothing is changed).
    workflow.ActionNotPermittedError, workflow.TransitionError
        As ``workflow.apply``.
    """
    incident_service.get_incident(session, incident_id, scope=scope)
    row = workflow.apply(session, incident_id, action, actor=actor, role=role, **options)
    return _document(session, row, reveal)


@dataclass(frozen=True)
class CaseView:
    """Everything the dispatcher's detail panel shows of one case (WGS-84 geometries).

    ``incident`` is the public dict (reporter revealed or masked); ``nearest`` the available
    responders nearest the spot, nearest first ({id, name, distance_m, lon, lat}); ``cameras`` the
    cameras in scope whose cone holds the spot ({id, name, distance_m, lon, lat, cone}).
    """

    incident: dict
    category_zh: str | None
    category_en: str | None
    grid_code: str | None
    grid_geometry: object | None
    assignee: str | None
    history: list[dict]
    nearest: list[dict]
    cameras: list[dict]
    duplicates: list[dict]
    linked: list[int]


def _cameras_with_cones(session: Session, cams: list[dict]) -> list[dict]:
    """Return ``cams`` with their position and view cone (shapely polygon or None)."""
    import pandas as pd

    from geo import camera_sectors

    if not cams:
        return []
    rows = session.execute(
        select(Camera.id, Camera.lon, Camera.lat, Camera.azimuth, Camera.fov, Camera.range_m)
        .where(Camera.id.in_([c["id"] for c in cams]))
    ).all()  # fmt: skip
    if not rows:
        return []
    frame = pd.DataFrame([r._asdict() for r in rows])
    cones = dict(zip(frame["id"], camera_sectors(frame), strict=True))
    where = {r.id: (r.lon, r.lat) for r in rows}
    return [{**c, "lon": where[c["id"]][0], "lat": where[c["id"]][1], "cone": cones.get(c["id"])}
            for c in cams if c["id"] in where]  # fmt: skip


def case_view(
    session: Session, incident_id: int, *, scope: Scope, reveal: Reveal = never, nearest: int = 6
) -> CaseView:
    """Return the dispatcher's view of one case in ``scope``.

    Raises
    ------
    NotFoundError
        If no incident with this id is in ``scope``.
    """
    row = incident_service.get_incident(session, incident_id, scope=scope)
    grid = session.get(Grid, row.grid_id) if row.grid_id else None
    near = routing.nearest_available(session, row.lon, row.lat, n=nearest)
    wanted = [rid for rid, _ in near] + ([row.assignee_id] if row.assignee_id else [])
    people = {
        r.id: r
        for r in session.execute(
            select(Responder.id, Responder.name, Responder.lon, Responder.lat).where(
                Responder.id.in_(wanted)
            )
        ).all()
    }
    cat = session.scalar(
        select(Category).where(Category.code == row.category_code)
        .order_by(Category.dict_version.desc()).limit(1)
    )  # fmt: skip
    cams = routing.cameras_seeing_point(session, row.lon, row.lat, scope=scope)
    return CaseView(
        incident=_document(session, row, reveal),
        category_zh=cat.name_zh if cat else None,
        category_en=cat.name_en if cat else None,
        grid_code=grid.code if grid else None,
        grid_geometry=grid.geometry if grid else None,
        assignee=people[row.assignee_id].name if row.assignee_id in people else None,
        history=workflow.history(session, row.id),
        nearest=[
            {
                "id": rid,
                "name": people[rid].name,
                "distance_m": dist,
                "lon": people[rid].lon,
                "lat": people[rid].lat,
            }
            for rid, dist in near
            if rid in people
        ],  # fmt: skip
        cameras=_cameras_with_cones(session, cams),
        duplicates=duplicate_service.candidates(session, row.id, scope=scope),
        linked=duplicate_service.linked_reports(session, row.id),
    )
