"""How much of the city the database holds: row counts per layer (health check, first start)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from layers.models import AdminArea, Camera, Center, Grid, Incident, Responder


def _count(session: Session, model, *conds) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*conds)) or 0)


def layer_counts(session: Session) -> dict[str, int]:
    """Return {districts, grids, centers, cameras, responders, incidents}: rows of each layer."""
    return {
        "districts": _count(session, AdminArea, AdminArea.level == "district"),
        "grids": _count(session, Grid),
        "centers": _count(session, Center),
        "cameras": _count(session, Camera),
        "responders": _count(session, Responder),
        "incidents": _count(session, Incident),
    }


def city_is_empty(session: Session) -> bool:
    """Return True if the database holds no grid and no administrative area (never seeded)."""
    return _count(session, Grid) + _count(session, AdminArea) == 0
