"""Camera coverage per grid, computed once per version of the grid shapes and camera cones."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session

from layers.db import Database
from layers.models import Camera, Grid
from layers.services.scope import Scope
from layers.services.versions import COVERAGE_STAMPS, stamps


@dataclass
class _CoverageCache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict[tuple, dict[int, float]] = field(default_factory=dict)


_coverage_cache = _CoverageCache()


def _layer_fingerprint(session: Session) -> tuple:
    return stamps(session, COVERAGE_STAMPS)


def grid_coverage(db: Database, scope: Scope) -> dict[int, float]:
    """Return {grid id: fraction 0..1 of its area inside a camera cone} of ``scope``'s grids.

    Computed once per version of the grid shapes and camera cones (the database-kept stamps
    ``versions.COVERAGE_STAMPS``: a moved camera or reshaped grid recomputes it, a camera
    going offline does not) and kept in a process cache keyed by the database URL and those
    stamps (a cache of derived data, not per-user state).
    """
    with db.session() as s:
        allowed = scope.grid_ids(s)
    every = _grid_coverage_all(db)
    if allowed is None:
        return every
    return {g: v for g, v in every.items() if g in allowed}


def _grid_coverage_all(db: Database) -> dict[int, float]:
    with db.session() as s:
        key = (str(db.url), _layer_fingerprint(s))
    with _coverage_cache.lock:
        hit = _coverage_cache.entries.get(key)
    if hit is not None:
        return hit
    import pandas as pd

    from geo.coverage import coverage

    with db.session() as s:
        grids = s.execute(select(Grid.id, Grid.geom_wkb).order_by(Grid.id)).all()
        cams = s.execute(
            select(Camera.lon, Camera.lat, Camera.azimuth, Camera.fov, Camera.range_m)
        ).all()
    if not grids:
        return {}
    geoms = shapely.from_wkb([g.geom_wkb for g in grids])
    if cams:
        frame = pd.DataFrame([c._asdict() for c in cams])
        frac = coverage(geoms, frame, row_m=5.0, min_rows=16)
    else:
        frac = np.zeros(len(grids))
    out = {int(g.id): (None if np.isnan(v) else round(float(v), 4))
           for g, v in zip(grids, frac, strict=True)}  # fmt: skip
    with _coverage_cache.lock:
        _coverage_cache.entries = {k: v for k, v in _coverage_cache.entries.items()
                                   if k[0] != key[0]}  # fmt: skip
        _coverage_cache.entries[key] = out
    return out
