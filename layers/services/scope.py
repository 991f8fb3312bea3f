"""What a principal may see: the whole city, or some districts and cameras (the query layer).

A ``Scope`` travels into every service that reads incidents, grids, areas, centers,
responders or cameras; those services take it as a required argument, so a new route cannot
forget it. It turns into SQL conditions here, in one place:

- incidents: those located in a grid of the scope's districts (an incident outside every grid
  is outside every district scope);
- grids, administrative areas, centers: the scope's districts and everything below them;
- responders: the grid workers of those grids and the staff of those centers;
- cameras: listed by GB/T 28181 id or row id, or whose id starts with a scoped district's
  6-digit code (the rule the video routes apply through ``dashboard.auth.camera_allowed``).

``Scope.ALL`` (no restriction) is for principals without scopes and for the server's own
work (simulator, SLA, CLI); ``Scope.NONE`` for nobody. A scope with cameras only holds no
district: its holder sees those cameras and no incidents, grids or areas.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, bindparam, false, func, or_, select
from sqlalchemy.orm import Session

from layers.models import AdminArea, Camera, Center, Grid, Incident, Responder
from layers.services import keep_recent


def _in(column: Any, values: Iterable) -> ColumnElement[bool]:
    """Return ``column IN (values)`` with the values rendered inline (no bind-parameter limit)."""
    ordered = sorted(values)
    if not ordered:
        return false()
    return column.in_(bindparam(None, ordered, expanding=True, literal_execute=True))


@dataclass(frozen=True)
class Scope:
    """The part of the city a principal may see: ``districts`` None means all of it.

    Attributes
    ----------
    districts : frozenset of 6-digit GB/T 2260 codes, or None (unrestricted)
    cameras : frozenset of camera GB/T 28181 ids or row ids (as text), seen in any case
    """

    districts: frozenset[str] | None = None
    cameras: frozenset[str] = frozenset()

    ALL: ClassVar[Scope]
    NONE: ClassVar[Scope]

    @classmethod
    def of(cls, scopes: Mapping | None) -> Scope:
        """Return the scope of a user's scopes dict {"districts": [...], "cameras": [...]}."""
        scopes = scopes or {}
        districts = frozenset(str(d)[:6] for d in scopes.get("districts") or [])
        cameras = frozenset(str(c) for c in scopes.get("cameras") or [])
        if not districts and not cameras:
            return cls.ALL
        return cls(districts=districts, cameras=cameras)

    @property
    def unrestricted(self) -> bool:
        """Return True if this scope lets its holder see the whole city."""
        return self.districts is None

    def key(self) -> str:
        """Return a short stable text naming this scope (for cache keys)."""
        if self.districts is None:
            return "*"
        return ",".join(sorted(self.districts)) + "|" + ",".join(sorted(self.cameras))

    # -- resolution of districts into area and grid ids -------------------------------------
    def _resolve(self, session: Session) -> tuple[frozenset[int], frozenset[int]]:
        """Return (area ids, grid ids) in the scope's districts (cached per layer version)."""
        from layers.services.spatial import locator

        loc = locator(session)
        key = (str(session.get_bind().url), loc.version, self.key())
        with _resolved_lock:
            hit = _resolved.get(key)
        if hit is not None:
            return hit
        codes = self.districts or frozenset()
        roots = set(
            session.scalars(
                select(AdminArea.id).where(
                    AdminArea.level == "district", _in(AdminArea.code, codes)
                )
            )
        )
        areas = set(roots)
        for area in loc.area_parent:  # walk each area's parents up to a scoped district
            seen, a = set(), area
            while a is not None and a not in seen and a not in roots:
                seen.add(a)
                a = loc.area_parent.get(a)
            if a in roots:
                areas.add(area)
        grids = frozenset(g for g, c in loc.grid_community.items() if c in areas)
        out = (frozenset(areas), grids)
        with _resolved_lock:
            keep_recent(_resolved, key, out, limit=RESOLVED_ENTRIES)
        return out

    def area_ids(self, session: Session) -> frozenset[int] | None:
        """Return the ids of the scoped districts and every area below them (None: all)."""
        return None if self.unrestricted else self._resolve(session)[0]

    def grid_ids(self, session: Session) -> frozenset[int] | None:
        """Return the ids of the grids in the scope's districts (None: all)."""
        return None if self.unrestricted else self._resolve(session)[1]

    # -- SQL conditions: [] when unrestricted, so callers write .where(*scope.incidents(s)) ----
    def incidents(self, session: Session, *, use_index: bool = True) -> list:
        """Return the conditions selecting the incidents this scope may see."""
        if self.unrestricted:
            return []
        col = Incident.grid_id if use_index else Incident.grid_id + 0
        return [_in(col, self._resolve(session)[1])]

    def grids(self, session: Session) -> list:
        """Return the conditions selecting the grids this scope may see."""
        return [] if self.unrestricted else [_in(Grid.id, self._resolve(session)[1])]

    def areas(self, session: Session) -> list:
        """Return the conditions selecting the administrative areas this scope may see."""
        return [] if self.unrestricted else [_in(AdminArea.id, self._resolve(session)[0])]

    def centers(self, session: Session) -> list:
        """Return the conditions selecting the governance centers this scope may see."""
        return [] if self.unrestricted else [_in(Center.area_id, self._resolve(session)[0])]

    def responders(self, session: Session) -> list:
        """Return the conditions selecting the responders (workers, staff) this scope may see."""
        if self.unrestricted:
            return []
        areas, grids = self._resolve(session)
        centers = select(Center.id).where(_in(Center.area_id, areas))
        return [or_(_in(Responder.grid_id, grids), Responder.center_id.in_(centers))]

    def cameras_condition(self) -> list:
        """Return the conditions selecting the cameras this scope may see."""
        if self.unrestricted:
            return []
        pks = {int(c) for c in self.cameras if c.isdigit() and len(c) <= 10}
        return [or_(_in(func.substr(Camera.gb_id, 1, 6), self.districts or ()),
                    _in(Camera.gb_id, self.cameras), _in(Camera.id, pks))]  # fmt: skip

    # -- single checks ------------------------------------------------------------------------
    def allows_camera(self, gb_id: str | None, camera_pk: int | None = None) -> bool:
        """Return True if the camera (GB/T 28181 id and/or row id) is in this scope."""
        if self.unrestricted:
            return True
        gb = str(gb_id or "")
        if gb and (gb in self.cameras or gb[:6] in (self.districts or ())):
            return True
        return camera_pk is not None and str(camera_pk) in self.cameras

    def allows_grid(self, session: Session, grid_id: int | None) -> bool:
        """Return True if the grid (and so an incident located in it) is in this scope."""
        if self.unrestricted:
            return True
        return grid_id is not None and int(grid_id) in self._resolve(session)[1]

    def allows_area(self, session: Session, area_id: int | None) -> bool:
        """Return True if the administrative area is in this scope."""
        if self.unrestricted:
            return True
        return area_id is not None and int(area_id) in self._resolve(session)[0]


Scope.ALL = Scope()
Scope.NONE = Scope(districts=frozenset(), cameras=frozenset())

#: resolved (area ids, grid ids) per (database, layer version, scope); derived data only
_resolved: dict = {}
_resolved_lock = threading.Lock()
RESOLVED_ENTRIES = 64


def visible_grid_ids(session: Session, scope: Scope) -> frozenset[int] | None:
    """Return the ids of the grids ``scope`` may see (None: all), for filtering live events."""
    return scope.grid_ids(session)
