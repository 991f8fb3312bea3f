"""Overdue escalation: cases whose time ran out move up one level, as a workflow action.

``escalate_overdue`` finds the open cases past their ``escalate_at`` (the SLA clock of
``layers.services.sla``) and applies the ``escalate`` workflow action to each, as ``system``;
the app runs it periodically in an ``EscalationLoop``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session

from layers.db import Database
from layers.models import OPEN_STATUSES, Incident, utcnow
from layers.services import sla, workflow
from layers.services.spatial import ESCALATION_ORDER

log = logging.getLogger(__name__)


def escalate_overdue(
    db: Database | Session,
    now: dt.datetime | None = None,
    *,
    calendar: sla.WorkCalendar | None = None,
    limit: int = 1000,
) -> list[int]:
    """Return the ids of open incidents escalated one level because their time ran out.

    An incident is due for escalation when its ``escalate_at`` (first the deadline, then one
    more SLA step per level) has passed, its clock is not paused, it is not a merged
    duplicate and it is below city level. Each escalation is a workflow event by ``system``.
    """
    now = now or utcnow()

    def run(session: Session) -> list[int]:
        ids = list(
            session.execute(
                select(Incident.id)
                .where(
                    Incident.status.in_(OPEN_STATUSES),
                    Incident.escalate_at.is_not(None),
                    Incident.escalate_at <= now,
                    Incident.sla_paused_at.is_(None),
                    Incident.duplicate_of.is_(None),
                    Incident.escalation_level != ESCALATION_ORDER[-1],
                )
                .order_by(Incident.escalate_at, Incident.id)
                .limit(limit)
            ).scalars()
        )
        for incident_id in ids:
            workflow.apply(
                session,
                incident_id,
                "escalate",
                actor="system",
                role="system",
                reason="overdue: escalation time passed",
                now=now,
                calendar=calendar,
            )
        return ids

    if isinstance(db, Session):
        done = run(db)
    else:
        with db.session() as session:
            done = run(session)
    if done:
        log.info("escalated %s overdue incidents", len(done))
    return done


class EscalationLoop:
    """A daemon thread that calls ``escalate_overdue`` every ``interval_s`` seconds."""

    def __init__(self, db: Database, interval_s: float = 60.0) -> None:
        self.db = db
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gridsight-escalation", daemon=True)

    @property
    def running(self) -> bool:
        """Return True while the thread runs."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop and wait up to ``timeout`` seconds."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                escalate_overdue(self.db)
            except Exception:  # noqa: BLE001 - keep the loop alive; the next tick retries
                log.exception("escalation pass failed")
