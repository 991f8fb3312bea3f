"""Public-video cameras (雪亮工程 channels) with GB/T 28181 IDs, viewshed and health status.

Stream URLs may carry credentials: nothing here returns or logs them raw; ``public_dict``,
``list_cameras`` and ``read_gdf`` give the URL scrubbed by ``streams.sources.redact_url``
(no userinfo, no secret parameter values).
Positions are WGS-84 (EPSG:4326).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

import geopandas as gpd
import shapely
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from layers.db import Database
from layers.events import emit
from layers.models import CAMERA_STATUSES, Camera, Grid
from layers.services import (
    NotFoundError,
    ServiceError,
    bbox_filter_points,
    check_bbox,
    get_row,
    make_gdf,
    use_session,
)
from layers.services.scope import Scope
from layers.streams_seam import redact_url

log = logging.getLogger(__name__)

CAMERA_CLASSES = {1: "一类", 2: "二类", 3: "三类"}
PTZ_TYPES = {
    1: "球机 dome PTZ",
    2: "半球 half-dome",
    3: "固定枪机 fixed bullet",
    4: "遥控枪机 remote bullet",
}
USE_TYPES = {1: "治安 public security", 2: "交通 traffic", 3: "重点 key site"}

COLUMNS = (
    "id", "gb_id", "name", "cls", "ptz_type", "use_type", "lon", "lat", "azimuth", "fov",
    "range_m", "stream_url", "owner", "status", "last_seen", "grid_id", "grid_code",
)  # fmt: skip


class CameraStatusError(ServiceError):
    """A camera status outside CAMERA_STATUSES or an unusable last-seen time was given."""


def public_dict(camera: Camera, grid_code: str | None = None) -> dict:
    """Return a camera as a display-safe dict: the stream URL scrubbed of every credential.

    Parameters
    ----------
    camera : Camera
    grid_code : str, optional
        The code of the camera's grid, if the caller already knows it.
    """
    return {
        "id": camera.id,
        "gb_id": camera.gb_id,
        "name": camera.name,
        "cls": camera.cls,
        "cls_name": CAMERA_CLASSES.get(camera.cls, str(camera.cls)),
        "ptz_type": camera.ptz_type,
        "use_type": camera.use_type,
        "lon": camera.lon,
        "lat": camera.lat,
        "azimuth": camera.azimuth,
        "fov": camera.fov,
        "range_m": camera.range_m,
        "stream_url": redact_url(camera.stream_url),
        "owner": camera.owner,
        "status": camera.status,
        "last_seen": camera.last_seen,
        "grid_id": camera.grid_id,
        "grid_code": grid_code,
    }


def _check_choice(name: str, value: object, allowed: Sequence) -> tuple | None:
    if value is None:
        return None
    values = tuple(value) if isinstance(value, list | tuple | set) else (value,)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ServiceError(f"{name}: {bad[0]!r} is unknown; use one of {list(allowed)}")
    return values


def list_cameras(
    db: Database | Session,
    *,
    scope: Scope,
    bbox: Sequence[float] | None = None,
    cls: int | Sequence[int] | None = None,
    status: str | Sequence[str] | None = None,
    grid_id: int | None = None,
) -> list[dict]:
    """Return the ``scope``'s cameras as display-safe dicts (``public_dict``) by GB/T 28181 ID."""
    box = check_bbox(bbox)
    classes = _check_choice("cls", cls, tuple(CAMERA_CLASSES))
    statuses = _check_choice("status", status, CAMERA_STATUSES)
    stmt = (
        select(Camera, Grid.code).outerjoin(Grid, Camera.grid_id == Grid.id).order_by(Camera.gb_id)
    )
    if box:
        stmt = stmt.where(bbox_filter_points(Camera, box))
    if classes:
        stmt = stmt.where(Camera.cls.in_(classes))
    if statuses:
        stmt = stmt.where(Camera.status.in_(statuses))
    if grid_id is not None:
        stmt = stmt.where(Camera.grid_id == int(grid_id))
    with use_session(db) as session:
        rows = session.execute(stmt.where(*scope.cameras_condition())).all()
    return [public_dict(cam, gcode) for cam, gcode in rows]


def read_gdf(
    db: Database | Session,
    *,
    scope: Scope,
    bbox: Sequence[float] | None = None,
    cls: int | Sequence[int] | None = None,
    status: str | Sequence[str] | None = None,
    grid_id: int | None = None,
) -> gpd.GeoDataFrame:
    """Return cameras as a point GeoDataFrame in EPSG:4326 (stream URLs without credentials).

    Parameters
    ----------
    scope : layers.services.scope.Scope
        What the reader may see (``Scope.cameras_condition``).
    bbox : (minx, miny, maxx, maxy), optional
        WGS-84 window on the indexed lon/lat columns.
    cls : 1, 2, 3 or a sequence, optional
        Camera class 一类/二类/三类.
    status : str or sequence, optional
        One or more of CAMERA_STATUSES.
    grid_id : int, optional
        Only the cameras of this grid.
    """
    records = list_cameras(db, scope=scope, bbox=bbox, cls=cls, status=status, grid_id=grid_id)
    for r in records:
        r.pop("cls_name", None)
    geoms = [shapely.Point(r["lon"], r["lat"]) for r in records]
    return make_gdf(records, geoms, COLUMNS)


def _lookup(session: Session, camera_id: int | str) -> Camera | None:
    if isinstance(camera_id, str) and len(camera_id) == 20:
        return session.scalar(select(Camera).where(Camera.gb_id == camera_id))
    return get_row(session, Camera, camera_id)  # anything not an id: None


def get_camera(db: Database | Session, camera_id: int | str) -> Camera:
    """Return the Camera with this database id (int) or 20-digit GB/T 28181 ID (str).

    The returned model still holds the raw ``stream_url``: hand it to the video engine only,
    and use ``public_dict`` for anything displayed or logged.

    Raises
    ------
    NotFoundError
        If there is no such camera.
    """
    with use_session(db) as session:
        camera = _lookup(session, camera_id)
    if camera is None:
        raise NotFoundError(f"no camera with id or GB/T 28181 ID {camera_id!r}")
    return camera


def set_status(
    db: Database | Session,
    camera_id: int | str,
    status: str,
    last_seen: dt.datetime | None = None,
) -> Camera:
    """Return the camera after writing its health status and last-frame time.

    The video engine calls this when a stream comes up, drops or goes stale. A change of
    status (not a repeated one) emits a ``camera.status`` live event at commit.

    Parameters
    ----------
    camera_id : int or str
        Database id or 20-digit GB/T 28181 ID.
    status : str
        One of CAMERA_STATUSES ("online", "offline", "stale", "stalled", "unknown").
    last_seen : datetime, optional
        Timezone-aware time of the last frame; None keeps the stored value.

    Raises
    ------
    CameraStatusError
        For an unknown status or a naive datetime.
    NotFoundError
        If there is no such camera.
    """
    if status not in CAMERA_STATUSES:
        raise CameraStatusError(
            f"status: {status!r} is unknown; use one of {', '.join(CAMERA_STATUSES)}"
        )
    if last_seen is not None:
        if not isinstance(last_seen, dt.datetime):
            raise CameraStatusError(f"last_seen: {last_seen!r} is not a datetime")
        if last_seen.tzinfo is None:
            raise CameraStatusError(
                "last_seen: naive datetime; attach a timezone (e.g. tzinfo=datetime.UTC)"
            )
    with use_session(db) as session:
        camera = _lookup(session, camera_id)
        if camera is None:
            raise NotFoundError(f"no camera with id or GB/T 28181 ID {camera_id!r}")
        before = camera.status
        camera.status = status
        if last_seen is not None:
            camera.last_seen = last_seen.astimezone(dt.UTC)
        session.flush()
        if before != status:  # the hub re-reports an unchanged status as a heartbeat
            seen = camera.last_seen.isoformat() if camera.last_seen is not None else None
            emit(session, "camera.status", {"id": camera.id, "gb_id": camera.gb_id,
                                            "status": status, "before": before,
                                            "last_seen": seen})  # fmt: skip
    log.debug("camera %s status %s", camera.gb_id, status)
    return camera


def counts(db: Database | Session, scope: Scope) -> dict[str, dict]:
    """Return camera counts {"by_class": {1: n, 2: n, 3: n}, "by_status": {status: n}, "total": n}.

    Every class and status appears, with zero where there is none; only ``scope``'s cameras.
    """
    where = scope.cameras_condition()
    with use_session(db) as session:
        by_cls = session.execute(
            select(Camera.cls, func.count()).where(*where).group_by(Camera.cls)
        ).all()
        by_status = session.execute(
            select(Camera.status, func.count()).where(*where).group_by(Camera.status)
        ).all()
    out_cls = dict.fromkeys(CAMERA_CLASSES, 0)
    out_cls.update({int(c): int(n) for c, n in by_cls})
    out_status = dict.fromkeys(CAMERA_STATUSES, 0)
    out_status.update({s: int(n) for s, n in by_status})
    return {"by_class": out_cls, "by_status": out_status, "total": sum(out_cls.values())}


def counts_by_class_status(db: Database | Session) -> dict[tuple[int, str], int]:
    """Return {(class, status): count} for the combinations that occur."""
    with use_session(db) as session:
        rows = session.execute(
            select(Camera.cls, Camera.status, func.count()).group_by(Camera.cls, Camera.status)
        ).all()
    return {(int(c), s): int(n) for c, s, n in rows}
