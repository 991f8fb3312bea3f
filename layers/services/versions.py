"""The database-kept version stamps of the layers, which process and HTTP caches key on.

Triggers bump a stamp in the same transaction as every write that changes what it follows
(``layers.models.LayerVersion``), so a cache keyed on stamps can never miss an edit, however
it was made. Which stamps a published map layer depends on is ``LAYER_STAMPS``: the layer's
own features plus, for layers filtered by district, the area hierarchy the scope is resolved
through.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from layers.models import LayerVersion

#: map layer -> the stamps its published content (in any scope) depends on
LAYER_STAMPS: dict[str, tuple[str, ...]] = {
    "grids": ("grid_features", "admin_areas"),
    "districts": ("area_features",),
    "streets": ("area_features",),
    "communities": ("area_features",),
    "centers": ("center_features", "admin_areas"),
    "cameras": ("camera_features",),
}

#: what the camera coverage per grid is computed from: grid shapes, camera positions and cones
COVERAGE_STAMPS = ("grids", "camera_views")


def stamps(session: Session, names: Iterable[str]) -> tuple[tuple[str, int, str], ...]:
    """Return ((name, serial, token), ...) of the named stamps, ordered by name.

    Raises
    ------
    LookupError
        If a stamp is missing (a database not migrated to head).
    """
    wanted = sorted(set(names))
    rows = tuple(
        (r.name, int(r.serial), r.token)
        for r in session.execute(
            select(LayerVersion.name, LayerVersion.serial, LayerVersion.token)
            .where(LayerVersion.name.in_(wanted))
            .order_by(LayerVersion.name)
        )
    )
    if len(rows) != len(wanted):
        missing = sorted(set(wanted) - {r[0] for r in rows})
        raise LookupError(
            f"layer_versions has no {', '.join(missing)} row; run `python -m layers migrate`"
        )
    return rows


def fingerprint(session: Session, names: Iterable[str], label: str = "") -> str:
    """Return a short hex digest of the named stamps (for ETags and cache keys)."""
    text = label + ";" + ";".join(f"{n}:{s}:{t}" for n, s, t in stamps(session, names))
    return hashlib.sha1(text.encode()).hexdigest()[:16]
