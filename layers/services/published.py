"""What the machine APIs (OGC API – Features, Open311) publish beyond the layer read services.

A layer's extent, incidents as GeoJSON features without reporter details or description,
and the names of the centers responsible for requests. Coordinates are WGS-84 (EPSG:4326).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from layers.models import AdminArea, Camera, Center, Grid, Incident
from layers.services import incidents as incident_service
from layers.services.scope import Scope

#: Published layers whose features are administrative areas, by their level.
AREA_LEVELS = {"districts": "district", "streets": "street", "communities": "community"}
#: Point layers and the model holding their lon/lat.
POINT_LAYERS = {"centers": Center, "cameras": Camera, "incidents": Incident}
#: Fields of an incident never published to machine clients.
PRIVATE_FIELDS = ("reporter_name", "reporter_phone", "description")


def layer_extent(session: Session, layer: str) -> list[float] | None:
    """Return [minx, miny, maxx, maxy] (WGS-84) of a published layer, None when it is empty.

    Responders have no geometry of their own: their extent is the grids'.

    Raises
    ------
    ValueError
        If ``layer`` is not a published layer name.
    """
    if layer in AREA_LEVELS:
        m = AdminArea
        q = select(func.min(m.minx), func.min(m.miny), func.max(m.maxx), func.max(m.maxy))
        q = q.where(AdminArea.level == AREA_LEVELS[layer])
    elif layer in ("grids", "responders"):
        q = select(func.min(Grid.minx), func.min(Grid.miny), func.max(Grid.maxx), func.max(Grid.maxy))  # fmt: skip
    elif layer in POINT_LAYERS:
        m = POINT_LAYERS[layer]
        q = select(func.min(m.lon), func.min(m.lat), func.max(m.lon), func.max(m.lat))
    else:
        raise ValueError(f"layer: {layer!r} is not published")
    box = session.execute(q).one()
    if any(v is None for v in box):
        return None
    return [float(v) for v in box]


def incident_features(
    session: Session, *, scope: Scope, bbox: tuple | None = None, limit: int = 1_000_000
) -> list[dict]:
    """Return ``scope``'s incidents in ``bbox`` as GeoJSON features (by id), no personal data."""
    rows, _ = incident_service.list_incidents(session, scope=scope, bbox=bbox, limit=limit)
    out = []
    for r in sorted(rows, key=lambda r: r.id):
        props = incident_service.public_dict(r)
        for private in PRIVATE_FIELDS:
            props.pop(private, None)
        out.append({"type": "Feature", "id": r.id, "properties": props,
                    "geometry": {"type": "Point", "coordinates": [r.lon, r.lat]}})  # fmt: skip
    return out


def center_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """Return {center id: name} for the given ids (unknown ids left out)."""
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return {}
    return dict(session.execute(select(Center.id, Center.name).where(Center.id.in_(wanted))).all())
