"""The one adapter between a ``Database`` and the services: ``run(db, service, ...)``.

Services take an open ``Session`` first and never commit; the caller decides how much one
transaction holds. Pages and routes own no sessions: they hand the app's ``Database`` and
the service to ``run``, which opens a session, calls the service, commits when it returns
and rolls back when it raises. Two calls that must see one snapshot or commit together are
one service function (written in ``layers/services``), not two ``run`` calls.

``QueryError`` and ``ConflictError`` are the database failures a caller may answer (503,
"somebody else was faster"); they are SQLAlchemy's classes under the names the rest of
GridSight uses, so no module outside ``layers`` imports SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

if TYPE_CHECKING:  # pragma: no cover - import only for type checkers
    from layers.db import Database

__all__ = ["ConflictError", "QueryError", "Session", "run"]

P = ParamSpec("P")
R = TypeVar("R")

#: Any failure of the database while a service ran (connection lost, timeout, lock, bad SQL).
QueryError = SQLAlchemyError
#: A write lost to a concurrent one (unique key taken between the check and the insert).
ConflictError = IntegrityError


def run(
    db: Database,
    service: Callable[Concatenate[Session, P], R],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """Return ``service(session, *args, **kwargs)`` run in one transaction of ``db``.

    The transaction commits when the service returns and rolls back when it raises (the
    exception propagates unchanged).
    """
    with db.session() as session:
        return service(session, *args, **kwargs)
