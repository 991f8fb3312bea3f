"""``seed_city``: the whole demo city in one transaction (areas, grids, centers, staff,
cameras, categories, incident history).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from layers.citygen import history, names
from layers.db import Database
from layers.models import (
    AdminArea,
    Base,
    Camera,
    Category,
    Center,
    Grid,
    Incident,
    IncidentEvent,
    Responder,
)
from layers.seed.bulk import Progress, insert_rows, sync_sequences
from layers.seed.cameras import camera_rows
from layers.seed.districts import CityExistsError, load_districts
from layers.seed.incidents import write_incidents
from layers.seed.plan import SCALES, Plan, Scale, dry_point, plan_city

log = logging.getLogger(__name__)


DEFAULT_SEED = 42


# The layer tables a seed writes; ``--force`` empties them and every table that refers to them.
LAYER_TABLES = ("admin_areas", "grids", "centers", "cameras", "responders", "incidents")


CENTER_SERVICES = {
    "city": "受理接待、协同指挥、分流转办、调处化解、司法确认、跟踪督办、研判预警",
    "county": "受理接待、协同指挥、分流转办、调处化解、司法确认、跟踪督办",
    "township": "受理接待、分流转办、调处化解、跟踪督办",
    "village": "受理接待、矛盾调解、网格服务",
}


CENTER_HOURS = {
    "city": "24小时值守",
    "county": "24小时值守",
    "township": "工作日 09:00-12:00, 13:00-18:00；节假日值班",
    "village": "工作日 09:00-12:00, 13:00-18:00",
}


STAFF_PER_CENTER = {"city": 6, "county": 4, "township": 3, "village": 1}


CENTER_LEVEL_OF_AREA = {"district": "county", "street": "township", "community": "village"}


def _tables_to_wipe() -> list:
    """Return the layer tables and every table referring to them, children first."""
    wanted = set(LAYER_TABLES)
    grew = True
    while grew:
        grew = False
        for table in Base.metadata.sorted_tables:
            if table.name in wanted:
                continue
            if any(fk.column.table.name in wanted for fk in table.foreign_keys):
                wanted.add(table.name)
                grew = True
    return [t for t in reversed(Base.metadata.sorted_tables) if t.name in wanted]


def existing_city(session: Session) -> dict[str, int]:
    """Return counts of the layer rows already stored (all zero for an empty database)."""
    return {
        "areas": session.scalar(select(func.count()).select_from(AdminArea)) or 0,
        "grids": session.scalar(select(func.count()).select_from(Grid)) or 0,
        "cameras": session.scalar(select(func.count()).select_from(Camera)) or 0,
        "incidents": session.scalar(select(func.count()).select_from(Incident)) or 0,
    }


def seed_city(
    db: Database,
    scale: str = "demo",
    seed: int = DEFAULT_SEED,
    districts=None,
    progress: bool = True,
    *,
    districts_crs: str | None = None,
    now: dt.datetime | None = None,
    force: bool = False,
    sample_video: str | Path | None = None,
    sample_video_cameras: int = 6,
) -> dict[str, int]:
    """Return the row counts per layer after seeding a demo city into ``db``.

    Parameters
    ----------
    db : Database
        Migrated here if needed.
    scale : {"tiny", "demo", "city"}
        ~60 / ~300 / ~10,800 grids, 200 / 1,000 / 12,400 cameras, 2,000 / 20,000 / 1,000,000
        incidents.
    seed : int
        Same seed (and same ``now``) → identical data.
    districts : path, GeoDataFrame or None
        Real district outlines (``name`` and ``adcode`` per feature) instead of the generated
        ones; ``districts_crs`` says their CRS (default the file's own).
    progress : bool
        Show a tqdm progress bar on stderr (else log lines).
    now : aware datetime, optional
        Where the incident history ends (default: the current time).
    force : bool
        Wipe the layer tables first when the database already holds a city.
    sample_video : path, optional
        A video file; the ``sample_video_cameras`` class-1 cameras nearest the centre get a
        ``file://`` stream URL pointing at it (no URL otherwise).

    Raises
    ------
    CityExistsError
        If the database already holds layer data and ``force`` is False.
    DistrictsError, ValueError
        For unusable district outlines or an unknown ``districts_crs``.
    """
    if scale not in SCALES:
        raise ValueError(f"scale: {scale!r} unknown; use one of {', '.join(SCALES)}")
    cfg = SCALES[scale]
    if now is not None and now.tzinfo is None:
        raise ValueError("now: naive datetime; attach a timezone, e.g. datetime.UTC")
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    t0 = time.perf_counter()
    db.migrate()
    with db.session() as s:
        have = existing_city(s)
    if any(have.values()) and not force:
        raise CityExistsError(
            "the database already holds a city ("
            + ", ".join(f"{v} {k}" for k, v in have.items())
            + "); pass --force (force=True) to wipe these layers and seed again "
            "(users, audit log and rules are kept)"
        )
    loaded = load_districts(districts, districts_crs) if districts is not None else None

    streams = np.random.SeedSequence(int(seed)).spawn(8)
    rngs = dict(
        zip(
            ("layout", "tiling", "people", "roads", "cameras", "places", "times", "text"),
            (np.random.default_rng(s) for s in streams),
            strict=True,
        )
    )
    bar = Progress(progress, cfg.grids + cfg.cameras + cfg.incidents)
    try:
        bar.stage("tiling grids")
        plan = plan_city(rngs, cfg, loaded, bar.update)
        with db.session() as s:
            if any(have.values()):
                bar.stage("wiping old layers")
                for table in _tables_to_wipe():
                    s.execute(delete(table))
            counts = _write_city(s, plan, cfg, rngs, now, bar, sample_video, sample_video_cameras)
            sync_sequences(s, (AdminArea, Grid, Center, Camera, Responder, Incident, IncidentEvent))
            bar.stage("committing")
    finally:
        bar.close()
    log.info("seeded %s (%s) in %.1f s: %s", plan.city_name, plan.city_code,
             time.perf_counter() - t0, counts)  # fmt: skip
    return counts


def _write_city(
    s: Session,
    plan: Plan,
    cfg: Scale,
    rngs: dict[str, np.random.Generator],
    now: dt.datetime,
    bar: Progress,
    sample_video: str | Path | None,
    sample_video_cameras: int,
) -> dict[str, int]:
    from geo.assign import GridIndex
    from layers.services.incidents import ensure_categories

    h = plan.hierarchy
    bar.stage("writing areas")
    areas = _write_areas(s, plan)
    bar.stage("writing centers and people")
    centers = _write_centers(s, plan, areas, rngs["people"])
    people = _write_responders(s, plan, centers, rngs["people"])

    # ---- cameras
    bar.stage("placing cameras")
    index = GridIndex(areas.grid_ll, max_cells=8_000_000)
    cam_rows = camera_rows(plan, cfg, rngs, index, now)
    if sample_video:
        uri = Path(sample_video).resolve().as_uri()
        clon, clat = centers.lon[0], centers.lat[0]
        d2 = np.array([(r["lon"] - clon) ** 2 + (r["lat"] - clat) ** 2 for r in cam_rows])
        cls1 = np.array([r["cls"] == 1 and r["status"] == "online" for r in cam_rows])
        for i in np.argsort(np.where(cls1, d2, np.inf))[:sample_video_cameras]:
            cam_rows[int(i)]["stream_url"] = uri
    insert_rows(s, Camera, cam_rows)
    bar.update(len(cam_rows))

    # ---- categories: the shipped dictionary, unless the table already holds one
    ensure_categories(s)
    cats = history.CategoryDict.load()
    n_categories = s.scalar(select(func.count()).select_from(Category)) or 0

    # ---- incidents
    bar.stage("incident history")
    n_inc, n_events = write_incidents(
        s, plan, cfg, rngs, index, now, bar, cats,
        grid_community=np.array([areas.first_id["community"] + g.parent for g in h.grids]),
        area_parent={r["id"]: r["parent_id"] for r in areas.rows},
        center_of_area=centers.of_area, staff_of_center=people.staff_of_center,
        worker_names=people.worker_names, worker_phones=people.worker_phones,
    )  # fmt: skip
    return {
        "districts": len(h.districts),
        "streets": len(h.streets),
        "communities": len(h.communities),
        "grids": len(h.grids),
        "centers": len(centers.rows),
        "responders": people.count,
        "cameras": len(cam_rows),
        "categories": n_categories,
        "incidents": n_inc,
        "incident_events": n_events,
    }


@dataclass
class _Areas:
    """The written areas and grids: area rows, grid outlines (WGS-84), first id per level."""

    rows: list[dict]
    grid_ll: np.ndarray
    first_id: dict[str, int]


def _write_areas(s: Session, plan: Plan) -> _Areas:
    """Write the city, districts, streets, communities and grids (ids explicit: rows refer
    to each other); areas in square metres of a local metric CRS."""
    from geo.crs import local_metric_crs, transform_geometries

    h, plane = plan.hierarchy, plan.plane
    levels = [("district", h.districts), ("street", h.streets), ("community", h.communities)]
    plane_geoms = [plan.city] + [a.geom for _, areas in levels for a in areas]
    ll = plane.geoms_to_lonlat(np.array(plane_geoms + [g.geom for g in h.grids], dtype=object))
    bounds = shapely.total_bounds(ll[:1])
    metric = local_metric_crs([bounds[0], bounds[2]], [bounds[1], bounds[3]])
    area_m2 = shapely.area(transform_geometries(ll, "wgs84", metric))
    n_areas = len(plane_geoms)
    first_id = {"district": 2}
    first_id["street"] = first_id["district"] + len(h.districts)
    first_id["community"] = first_id["street"] + len(h.streets)
    parent_first = {"district": 1, "street": first_id["district"], "community": first_id["street"]}

    area_rows = [_area_row(1, "city", plan.city_code, plan.city_name, None, ll[0], area_m2[0])]
    k = 1
    for level, areas in levels:
        for a in areas:
            parent = 1 if level == "district" else parent_first[level] + a.parent
            area_rows.append(_area_row(k + 1, level, a.code, a.name, parent, ll[k], area_m2[k]))
            k += 1
    insert_rows(s, AdminArea, area_rows)
    grid_ll = ll[n_areas:]
    grid_rows = [
        {"id": i + 1, "code": g.code, "name": g.name,
         "community_id": first_id["community"] + g.parent, "area_m2": float(area_m2[n_areas + i]),
         **_geom_cols(grid_ll[i])}
        for i, g in enumerate(h.grids)
    ]  # fmt: skip
    insert_rows(s, Grid, grid_rows)
    return _Areas(area_rows, grid_ll, first_id)


@dataclass
class _Centers:
    """The written centers: rows, (level, name, area id, plane xy) each, WGS-84 positions."""

    rows: list[dict]
    specs: list[tuple]
    lon: np.ndarray
    lat: np.ndarray
    of_area: dict[int, int]  # area id -> center id


def _write_centers(s: Session, plan: Plan, areas: _Areas, rng: np.random.Generator) -> _Centers:
    """Write one governance center per area, at four levels, on dry land near its seat."""
    h, plane, lake = plan.hierarchy, plan.plane, plan.lake
    levels = [("district", h.districts), ("street", h.streets), ("community", h.communities)]
    centers: list[tuple] = []  # (level, name, area id, plane xy)
    cx, cy = dry_point(plan.city, (0.0, 0.0), lake)
    centers.append(("city", f"{plan.city_name}社会治理综合指挥中心", 1, (cx, cy)))
    center_of_area = {1: 1}
    for level, level_areas in levels:
        for i, a in enumerate(level_areas):
            area_id = areas.first_id[level] + i
            centers.append((CENTER_LEVEL_OF_AREA[level], f"{a.name}综治中心", area_id,
                            dry_point(a.geom, a.seat, lake)))  # fmt: skip
            center_of_area[area_id] = len(centers)
    cxy = np.array([c[3] for c in centers])
    clon, clat = plane.to_lonlat(cxy[:, 0], cxy[:, 1])
    phones = names.landline_numbers(rng, len(centers))
    center_rows = [
        {"id": i + 1, "level": lvl, "name": name, "area_id": area_id, "lon": float(clon[i]),
         "lat": float(clat[i]), "services": CENTER_SERVICES[lvl], "hours": CENTER_HOURS[lvl],
         "phone": phones[i]}
        for i, (lvl, name, area_id, _) in enumerate(centers)
    ]  # fmt: skip
    insert_rows(s, Center, center_rows)
    return _Centers(center_rows, centers, clon, clat, center_of_area)


@dataclass
class _People:
    """The written responders: grid workers' names and phones, staff ids per center."""

    count: int
    worker_names: np.ndarray
    worker_phones: np.ndarray
    staff_of_center: dict[int, tuple[int, int]]  # center id -> (first staff id, count)


def _write_responders(
    s: Session, plan: Plan, centers: _Centers, rng: np.random.Generator
) -> _People:
    """Write one grid worker per grid and the staff of every center."""
    h, plane, lake = plan.hierarchy, plan.plane, plan.lake
    n_grids = len(h.grids)
    gxy = np.array([dry_point(g.geom, g.seat, lake) for g in h.grids])
    glon, glat = plane.to_lonlat(gxy[:, 0], gxy[:, 1])
    worker_names = names.person_names(rng, n_grids)
    worker_phones = names.mobile_numbers(rng, n_grids)
    worker_avail = rng.random(n_grids) < 0.92
    resp_rows = [
        {"id": i + 1, "name": worker_names[i], "kind": "grid_worker", "grid_id": i + 1,
         "center_id": None, "phone": worker_phones[i], "available": bool(worker_avail[i]),
         "lon": float(glon[i]), "lat": float(glat[i])}
        for i in range(n_grids)
    ]  # fmt: skip
    staff_center = np.repeat(
        np.arange(1, len(centers.specs) + 1), [STAFF_PER_CENTER[c[0]] for c in centers.specs]
    )
    n_staff = len(staff_center)
    staff_names = names.person_names(rng, n_staff)
    staff_phones = names.mobile_numbers(rng, n_staff)
    staff_avail = rng.random(n_staff) < 0.9
    staff_of_center: dict[int, tuple[int, int]] = {}
    for j in range(n_staff):
        rid = n_grids + j + 1
        c = int(staff_center[j])
        first, count = staff_of_center.get(c, (rid, 0))
        staff_of_center[c] = (first, count + 1)
        resp_rows.append(
            {"id": rid, "name": staff_names[j], "kind": "center_staff", "grid_id": None,
             "center_id": c, "phone": staff_phones[j], "available": bool(staff_avail[j]),
             "lon": float(centers.lon[c - 1]), "lat": float(centers.lat[c - 1])}
        )  # fmt: skip
    insert_rows(s, Responder, resp_rows)
    return _People(len(resp_rows), worker_names, worker_phones, staff_of_center)


def _geom_cols(geom: shapely.Geometry) -> dict:
    minx, miny, maxx, maxy = geom.bounds
    return {
        "geom_wkb": shapely.to_wkb(geom),
        "minx": minx,
        "miny": miny,
        "maxx": maxx,
        "maxy": maxy,
    }


def _area_row(aid, level, code, name, parent, geom, area) -> dict:
    return {"id": aid, "level": level, "code": code, "name": name, "parent_id": parent,
            "area_m2": float(area), **_geom_cols(geom)}  # fmt: skip
