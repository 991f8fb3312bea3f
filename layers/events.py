"""Live events of committed writes: services queue them, a commit hands them to a publisher.

Services call ``emit(session, kind, data)`` while they write (a new incident, a workflow
transition, a camera status change). The event waits in ``session.info`` until the session's
*outermost* transaction commits, and is then handed to the publisher attached to the
``Database`` with ``attach`` (``dashboard/app.py`` attaches ``streams.events``' bus). A
rollback drops it, so no event ever describes a write that did not happen. Savepoints
(``begin_nested``, used by the audit log) are followed: releasing one keeps its events for
the outer commit, rolling one back drops only the events emitted inside it.

Without an attached publisher events are dropped at commit (the CLI, most tests). The
database stays the source of truth: a lost event only delays a live view until its next
resynchronisation, it never changes what the database says.

This module knows neither Dash nor Redis; the publisher is any callable taking a list of
``(kind, data)`` pairs. It must not block for long: it runs inside ``Session.commit``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from layers.db import Database

log = logging.getLogger(__name__)

#: Every kind of event the services emit (``streams.events`` and the SSE route know these).
EVENT_KINDS = ("incident.created", "incident.updated", "camera.status")

_PENDING = "gridsight.pending_events"

Publisher = Callable[[list[tuple[str, dict]]], None]


class EventKindError(ValueError):
    """An event kind outside EVENT_KINDS was emitted."""


def emit(session: Session, kind: str, data: dict[str, Any]) -> None:
    """Queue an event on ``session``; it is published only if the outermost commit succeeds.

    Parameters
    ----------
    session : Session
        The session doing the write the event describes.
    kind : str
        One of ``EVENT_KINDS``.
    data : dict
        JSON-serialisable payload (no personal data: events travel to Redis and SSE clients).
    """
    if kind not in EVENT_KINDS:
        raise EventKindError(f"event kind {kind!r} is unknown; use one of {', '.join(EVENT_KINDS)}")
    pending: list = session.info.setdefault(_PENDING, [])
    pending.append((_savepoint_of(session.get_nested_transaction()), kind, data))


def pending(session: Session) -> list[tuple[str, dict]]:
    """Return the events queued on ``session`` and not yet committed (kind, data)."""
    return [(kind, data) for _tx, kind, data in session.info.get(_PENDING, [])]


def _savepoint_of(tx: SessionTransaction | None) -> SessionTransaction | None:
    """Return the innermost savepoint transaction at or above ``tx`` (None: the root)."""
    while tx is not None and not tx.nested:
        tx = tx.parent
    return tx


class _Listeners:
    """The session event handlers of one ``attach`` call."""

    def __init__(self, publish: Publisher) -> None:
        self.publish = publish
        self.published = 0
        self.failures = 0

    def after_commit(self, session: Session) -> None:
        items = session.info.get(_PENDING)
        if not items:
            return
        nested = session.get_nested_transaction()
        if nested is not None:
            # a savepoint was released: its events now belong to the enclosing transaction
            outer = _savepoint_of(nested.parent)
            session.info[_PENDING] = [
                (outer if tx is nested else tx, kind, data) for tx, kind, data in items
            ]
            return
        session.info[_PENDING] = []
        events = [(kind, data) for _tx, kind, data in items]
        try:
            self.publish(events)
            self.published += len(events)
        except Exception:  # noqa: BLE001 - the commit is done; a live view must not undo it
            self.failures += 1
            log.exception("publishing %s committed events failed; they are dropped", len(events))

    def after_soft_rollback(self, session: Session, previous: SessionTransaction) -> None:
        items = session.info.get(_PENDING)
        if not items:
            return
        if previous.nested:
            session.info[_PENDING] = [it for it in items if it[0] is not previous]
        elif previous.parent is None:
            session.info[_PENDING] = []

    def after_rollback(self, session: Session) -> None:
        if not session.in_nested_transaction():
            session.info.pop(_PENDING, None)


def attach(db: Database, publish: Publisher) -> Callable[[], None]:
    """Return a function that detaches ``publish``, after attaching it to ``db``'s sessions.

    Every session ``db`` hands out (``db.session()``, ``db.new_session()``) then passes its
    committed events to ``publish`` once per outermost commit, in emit order.
    """
    factory = db.sessionmaker
    handlers = _Listeners(publish)
    hooks = (
        ("after_commit", handlers.after_commit),
        ("after_soft_rollback", handlers.after_soft_rollback),
        ("after_rollback", handlers.after_rollback),
    )
    for name, fn in hooks:
        event.listen(factory, name, fn)

    def detach() -> None:
        for name, fn in hooks:
            if event.contains(factory, name, fn):
                event.remove(factory, name, fn)

    return detach
