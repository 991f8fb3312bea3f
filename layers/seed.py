"""``python -m layers seed``: a deterministic, realistic demo city (昆明市, 530100).

Builds, in one transaction, districts (generated, or real outlines from ``--districts``),
streets, communities and grids tiling every district with no gaps or overlaps (nested Voronoi
tessellations, denser downtown), governance centers at four levels, grid workers and center
staff, cameras along a simulated road network with the class mix and GB/T 28181 IDs of a
雪亮工程 deployment, the incident category dictionary, and ~90 days of incident history with
hotspots, a daily rhythm and a workflow consistent with each case's age.

Same ``--seed`` and same ``--now`` give identical data; without ``--now`` the history ends at
the current time (only the time stamps move). The generators live in ``layers.citygen``;
this module turns them into rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session

from layers.citygen import city as citymod
from layers.citygen import history, names, roads
from layers.citygen.tiling import Plane
from layers.codes import CodeError, admin_code_table, validate_admin_code
from layers.db import Database, DatabaseError
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

if TYPE_CHECKING:  # geo and the services pull in numba, scipy and pandas: import them late
    from geo.assign import GridIndex

log = logging.getLogger(__name__)

DEFAULT_SEED = 42
CHUNK = 20_000  # rows per executemany batch


@dataclass(frozen=True)
class Scale:
    """How big a generated city is."""

    grids: int
    grids_per_community: float
    communities_per_street: float
    cameras: int
    incidents: int
    hotspots: int


SCALES: dict[str, Scale] = {
    "tiny": Scale(60, 3, 3, 200, 2_000, 3),
    "demo": Scale(300, 5, 4, 1_000, 20_000, 6),
    "city": Scale(10_800, 7, 12, 12_400, 1_000_000, 14),
}

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


class SeedError(RuntimeError):
    """Seeding cannot go ahead; the message says why and what to do."""


class CityExistsError(SeedError):
    """The database already holds a city; seeding again needs ``force``."""


class DistrictsError(SeedError):
    """The given district outlines cannot be used; the message names the feature and field."""


# -- input districts -------------------------------------------------------------------


@dataclass
class _District:
    code: str
    name: str
    geom: shapely.Geometry  # WGS-84


def _name_of(code: str) -> str | None:
    for edition in ("2023", "2016"):
        name = admin_code_table(edition).get(code)
        if name:
            return name
    return None


def load_districts(source, crs: str | None = None) -> list[_District]:
    """Return district outlines (WGS-84) from a file path or GeoDataFrame.

    Each feature needs ``name`` and ``adcode`` (a GB/T 2260 county code). Coordinates are
    converted from ``crs`` ("wgs84", "gcj02", "bd09", "EPSG:n"; default the file's own CRS,
    which for GeoJSON is WGS-84). Invalid rings are repaired with ``make_valid``; where two
    districts overlap, the one with the lower code keeps the overlap, so districts are
    disjoint.

    Raises
    ------
    DistrictsError
        For a missing column, a bad or duplicate code, an empty geometry or coordinates
        outside China (a wrong ``crs`` or swapped lon/lat).
    ValueError
        For an unknown ``crs``.
    """
    import geopandas as gpd

    from geo.crs import transform_geometries

    gdf = source if isinstance(source, gpd.GeoDataFrame) else gpd.read_file(source)
    missing = [c for c in ("name", "adcode") if c not in gdf.columns]
    if missing:
        raise DistrictsError(
            f"districts: the features lack the {' and '.join(missing)} propert"
            f"{'ies' if len(missing) > 1 else 'y'}; each district needs its name and its "
            "GB/T 2260 code (adcode)"
        )
    if crs is None:
        crs = "wgs84" if gdf.crs is None else f"EPSG:{gdf.crs.to_epsg() or 4326}"
    geoms = transform_geometries(np.asarray(gdf.geometry.values, dtype=object), crs, "wgs84")
    out: list[_District] = []
    seen: set[str] = set()
    for i, (name, code, geom) in enumerate(zip(gdf["name"], gdf["adcode"], geoms, strict=True)):
        label = f"feature {i} ({name})"
        try:
            code = validate_admin_code(str(code).split(".")[0], field="adcode")
        except CodeError as exc:
            raise DistrictsError(f"districts: {label}: {exc}") from None
        if code in seen:
            raise DistrictsError(f"districts: {label}: adcode {code} appears twice")
        seen.add(code)
        if geom is None or geom.is_empty:
            raise DistrictsError(f"districts: {label}: the geometry is empty")
        geom = shapely.make_valid(geom)
        parts = shapely.get_parts(geom)
        parts = parts[shapely.get_type_id(parts) == 3]
        if len(parts) == 0:
            raise DistrictsError(f"districts: {label}: the geometry has no polygon")
        geom = shapely.union_all(parts)
        minx, miny, maxx, maxy = geom.bounds
        if not (73 <= minx and maxx <= 136 and 3 <= miny and maxy <= 54):
            raise DistrictsError(
                f"districts: {label}: coordinates ({minx:.3f}, {miny:.3f}) .. ({maxx:.3f}, "
                f"{maxy:.3f}) are not in China; check --crs and that lon/lat are not swapped"
            )
        out.append(_District(code, str(name), geom))
    if not out:
        raise DistrictsError("districts: the file holds no features")
    prefixes = {d.code[:4] for d in out}
    if len(prefixes) > 1:
        raise DistrictsError(
            f"districts: the codes belong to several cities ({', '.join(sorted(prefixes))}); "
            "seed one city at a time"
        )
    out.sort(key=lambda d: d.code)
    taken = None
    for d in out:
        if taken is not None:
            d.geom = shapely.difference(d.geom, taken)
        taken = d.geom if taken is None else shapely.union(taken, d.geom)
    return out


# -- the plan: pure geometry in the local plane -------------------------------------------


@dataclass
class _Plan:
    plane: Plane
    city_code: str
    city_name: str
    city: shapely.Geometry  # plane
    lake: shapely.Geometry | None  # plane
    density: citymod.DensityModel
    hierarchy: citymod.Hierarchy
    seats: np.ndarray  # plane, one per district


def _plan_city(
    rngs: dict[str, np.random.Generator],
    scale: Scale,
    districts: list[_District] | None,
    tick: Callable[[int], None] | None,
) -> _Plan:
    lake = citymod.lake_polygon()
    if districts is None:
        plane = Plane(*citymod.KUNMING_CENTRE)
        outline = citymod.generated_outline(rngs["layout"])
        codes, polys, seats = citymod.generated_districts(rngs["layout"], outline)
        table = admin_code_table("2023")
        named = [(c, table[c], p) for c, p in zip(codes, polys, strict=True)]
        amps = np.array([d[3] for d in citymod.GENERATED_DISTRICTS])
        scales = np.array([d[4] for d in citymod.GENERATED_DISTRICTS]) * 1000.0
        city_code = citymod.KUNMING_CODE
    else:
        city_code = districts[0].code[:4] + "00"
        if city_code == citymod.KUNMING_CODE:
            plane = Plane(*citymod.KUNMING_CENTRE)
        else:  # the smallest district is the urban core
            core = min(districts, key=lambda d: d.geom.area).geom
            p = shapely.point_on_surface(core)
            plane = Plane(p.x, p.y)
            lake = None
        polys = list(plane.geoms_from_lonlat(np.array([d.geom for d in districts], dtype=object)))
        named = [(d.code, d.name, p) for d, p in zip(districts, polys, strict=True)]
        seats = np.array([_inner_point(p) for p in polys])
        far = np.hypot(seats[:, 0], seats[:, 1]) > 12_000.0
        amps = np.where(far, citymod.SEAT_AMPLITUDE, 0.0)
        scales = np.full(len(polys), citymod.SEAT_SCALE_M)
    city = shapely.union_all([p for _, _, p in named])
    if lake is not None:
        lake = shapely.intersection(lake, city)
        lake = None if lake.is_empty else lake
    density = citymod.density_model((0.0, 0.0), seats, amps, scales, lake)
    hierarchy = citymod.build_hierarchy(
        rngs["tiling"],
        [(c, n, p, tuple(s)) for (c, n, p), s in zip(named, seats, strict=True)],
        density,
        n_grids=scale.grids,
        grids_per_community=scale.grids_per_community,
        communities_per_street=scale.communities_per_street,
        tick=tick,
    )
    city_name = _name_of(city_code) or f"{city_code}"
    return _Plan(plane, city_code, city_name, city, lake, density, hierarchy, seats)


def _inner_point(geom: shapely.Geometry) -> tuple[float, float]:
    c = shapely.centroid(geom)
    if not shapely.contains(geom, c):
        c = shapely.point_on_surface(geom)
    return (c.x, c.y)


def _dry_point(
    geom: shapely.Geometry, xy: tuple[float, float], lake: shapely.Geometry | None
) -> tuple[float, float]:
    """Return ``xy`` if it lies on land inside ``geom``, else a point on the dry part."""
    if shapely.contains_xy(geom, *xy) and (lake is None or not shapely.contains_xy(lake, *xy)):
        return xy
    dry = shapely.difference(geom, lake) if lake is not None else geom
    p = shapely.point_on_surface(dry if not dry.is_empty else geom)
    return (p.x, p.y)


# -- writing ---------------------------------------------------------------------------


def _chunks(n: int, size: int = CHUNK) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _insert(session: Session, model, rows: list[dict]) -> None:
    for sl in _chunks(len(rows)):
        session.execute(insert(model.__table__), rows[sl])


def _datetimes(seconds: np.ndarray) -> np.ndarray:
    """Return aware UTC datetimes (object array) for epoch seconds; NaN gives None."""
    import pandas as pd

    s = np.asarray(seconds, dtype=float)
    out = np.full(len(s), None, dtype=object)
    ok = np.isfinite(s)
    if ok.any():
        out[ok] = pd.to_datetime(s[ok], unit="s", utc=True).to_pydatetime()
    return out


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


def _sync_sequences(session: Session, models) -> None:
    """On PostgreSQL, move id sequences past the explicit ids the seed inserted."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for model in models:
        t = model.__tablename__
        session.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE(MAX(id), 1)) FROM {t}"
            )
        )


class _Progress:
    """A tqdm bar when asked for, else log lines: one step per stage, counts for long ones."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="row", unit_scale=True, file=sys.stderr, leave=True)

    def stage(self, label: str) -> None:
        if self.bar is not None:
            self.bar.set_description(label)
        else:
            log.info("seed: %s", label)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- the seed --------------------------------------------------------------------------


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
    bar = _Progress(progress, cfg.grids + cfg.cameras + cfg.incidents)
    try:
        bar.stage("tiling grids")
        plan = _plan_city(rngs, cfg, loaded, bar.update)
        with db.session() as s:
            if any(have.values()):
                bar.stage("wiping old layers")
                for table in _tables_to_wipe():
                    s.execute(delete(table))
            counts = _write_city(s, plan, cfg, rngs, now, bar, sample_video, sample_video_cameras)
            _sync_sequences(
                s, (AdminArea, Grid, Center, Camera, Responder, Incident, IncidentEvent)
            )
            bar.stage("committing")
    finally:
        bar.close()
    log.info("seeded %s (%s) in %.1f s: %s", plan.city_name, plan.city_code,
             time.perf_counter() - t0, counts)  # fmt: skip
    return counts


def _write_city(
    s: Session,
    plan: _Plan,
    cfg: Scale,
    rngs: dict[str, np.random.Generator],
    now: dt.datetime,
    bar: _Progress,
    sample_video: str | Path | None,
    sample_video_cameras: int,
) -> dict[str, int]:
    from geo.assign import GridIndex
    from geo.crs import local_metric_crs, transform_geometries
    from layers.services.incidents import ensure_categories

    h = plan.hierarchy
    plane = plan.plane
    lake = plan.lake

    # ---- administrative areas and grids (ids explicit: the rows refer to each other)
    bar.stage("writing areas")
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
    _insert(s, AdminArea, area_rows)
    grid_ll = ll[n_areas:]
    grid_rows = [
        {"id": i + 1, "code": g.code, "name": g.name,
         "community_id": first_id["community"] + g.parent, "area_m2": float(area_m2[n_areas + i]),
         **_geom_cols(grid_ll[i])}
        for i, g in enumerate(h.grids)
    ]  # fmt: skip
    _insert(s, Grid, grid_rows)

    # ---- centers at four levels
    bar.stage("writing centers and people")
    rng = rngs["people"]
    centers: list[tuple] = []  # (level, name, area id, plane xy)
    cx, cy = _dry_point(plan.city, (0.0, 0.0), lake)
    centers.append(("city", f"{plan.city_name}社会治理综合指挥中心", 1, (cx, cy)))
    center_of_area = {1: 1}
    for level, areas in levels:
        for i, a in enumerate(areas):
            area_id = first_id[level] + i
            centers.append(
                (
                    CENTER_LEVEL_OF_AREA[level],
                    f"{a.name}综治中心",
                    area_id,
                    _dry_point(a.geom, a.seat, lake),
                )
            )
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
    _insert(s, Center, center_rows)

    # ---- responders: one worker per grid, staff per center
    n_grids = len(h.grids)
    gxy = np.array([_dry_point(g.geom, g.seat, lake) for g in h.grids])
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
        np.arange(1, len(centers) + 1), [STAFF_PER_CENTER[c[0]] for c in centers]
    )
    n_staff = len(staff_center)
    staff_names = names.person_names(rng, n_staff)
    staff_phones = names.mobile_numbers(rng, n_staff)
    staff_avail = rng.random(n_staff) < 0.9
    staff_of_center: dict[int, tuple[int, int]] = {}  # center id -> (first staff id, count)
    for j in range(n_staff):
        rid = n_grids + j + 1
        c = int(staff_center[j])
        first, count = staff_of_center.get(c, (rid, 0))
        staff_of_center[c] = (first, count + 1)
        resp_rows.append(
            {"id": rid, "name": staff_names[j], "kind": "center_staff", "grid_id": None,
             "center_id": c, "phone": staff_phones[j], "available": bool(staff_avail[j]),
             "lon": float(clon[c - 1]), "lat": float(clat[c - 1])}
        )  # fmt: skip
    _insert(s, Responder, resp_rows)

    # ---- cameras
    bar.stage("placing cameras")
    index = GridIndex(grid_ll, max_cells=8_000_000)
    cam_rows = _camera_rows(plan, cfg, rngs, index, now)
    if sample_video:
        uri = Path(sample_video).resolve().as_uri()
        d2 = np.array([(r["lon"] - clon[0]) ** 2 + (r["lat"] - clat[0]) ** 2 for r in cam_rows])
        cls1 = np.array([r["cls"] == 1 and r["status"] == "online" for r in cam_rows])
        for i in np.argsort(np.where(cls1, d2, np.inf))[:sample_video_cameras]:
            cam_rows[int(i)]["stream_url"] = uri
    _insert(s, Camera, cam_rows)
    bar.update(len(cam_rows))

    # ---- categories: the shipped dictionary, unless the table already holds one
    ensure_categories(s)
    cats = history.CategoryDict.load()
    n_categories = s.scalar(select(func.count()).select_from(Category)) or 0

    # ---- incidents
    bar.stage("incident history")
    area_parent = {r["id"]: r["parent_id"] for r in area_rows}
    n_inc, n_events = _write_incidents(
        s, plan, cfg, rngs, index, now, bar, cats,
        grid_community=np.array([first_id["community"] + g.parent for g in h.grids]),
        area_parent=area_parent, center_of_area=center_of_area,
        staff_of_center=staff_of_center, worker_names=worker_names,
        worker_phones=worker_phones,
    )  # fmt: skip
    return {
        "districts": len(h.districts),
        "streets": len(h.streets),
        "communities": len(h.communities),
        "grids": n_grids,
        "centers": len(center_rows),
        "responders": len(resp_rows),
        "cameras": len(cam_rows),
        "categories": n_categories,
        "incidents": n_inc,
        "incident_events": n_events,
    }


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


# -- cameras ---------------------------------------------------------------------------

# class-specific mixes: (values, probabilities)
_PTZ = {1: ((1, 2, 3, 4), (0.3, 0.05, 0.5, 0.15)), 2: ((1, 2, 3, 4), (0.15, 0.2, 0.55, 0.1)),
        3: ((1, 2, 3), (0.05, 0.45, 0.5))}  # fmt: skip
_USE = {
    1: ((1, 2, 3), (0.75, 0.15, 0.10)),
    2: ((1, 2, 3), (0.4, 0.4, 0.2)),
    3: ((1, 3), (0.9, 0.1)),
}
_OFFLINE = {1: 0.02, 2: 0.04, 3: 0.07}  # 完好率 targets: ≥98 % public, ≥95 % industry
_FACILITIES = {
    2: ("学校大门", "医院门诊楼", "加油站", "银行网点", "农贸市场", "汽车客运站", "商场出入口"),
    3: ("小区大门", "商铺门口", "停车场", "单元楼道口", "小区周界"),
}
_OWNERS = {2: ("学校", "医院", "加油站", "银行", "市场服务中心", "客运公司", "商场"),
           3: ("物业服务中心", "商户", "业主委员会")}  # fmt: skip


def _industry(rng: np.random.Generator, cls: np.ndarray, use: np.ndarray, village: np.ndarray):
    """Return GB/T 28181 industry codes (digits 9-10) by class, use type and placement."""
    n = len(cls)
    u = rng.random(n)
    ind = np.where(u < 0.85, "00", "08").astype(object)  # class 1: 治安路面, some 城市管理
    ind[(cls == 1) & (use == 2)] = "04"
    ind[(cls == 1) & village] = "01"
    c2 = np.array(["02", "05", "09", "11", "06"], dtype=object)[rng.integers(0, 5, n)]
    ind = np.where(cls == 2, np.where(use == 2, "05", c2), ind)
    c3 = np.where(u < 0.7, "80", np.where(u < 0.85, "01", "81")).astype(object)
    return np.where(cls == 3, c3, ind)


def _camera_rows(plan: _Plan, cfg: Scale, rngs, index: GridIndex, now: dt.datetime) -> list[dict]:
    rng = rngs["cameras"]
    h = plan.hierarchy
    n = cfg.cameras
    land = shapely.difference(plan.city, plan.lake) if plan.lake is not None else plan.city
    outlying = np.hypot(plan.seats[:, 0], plan.seats[:, 1]) > 9000.0
    network = roads.build_roads(rngs["roads"], land, (0.0, 0.0), plan.seats[outlying])
    cls = rng.choice([1, 2, 3], size=n, p=[0.6, 0.25, 0.15])
    u = rng.random(n)
    on_road = np.where(cls == 1, u < 0.88, np.where(cls == 2, u < 0.4, u < 0.15))
    village = (cls == 1) & ~on_road & (u < 0.95)  # 村口 cameras of the rural 雪亮 rollout

    x = np.empty(n)
    y = np.empty(n)
    bearing = rng.uniform(0, 360, n)
    road_name = np.full(n, "", dtype=object)
    grid_pos = np.full(n, -1)
    todo = np.arange(n)
    comm_rural = np.array([c.kind == "村" for c in h.communities])
    for _ in range(20):
        if len(todo) == 0:
            break
        r_sel = todo[on_road[todo]]
        if len(r_sel):
            rx, ry, rb, ridx = roads.sample_on_roads(
                rng, network, len(r_sel), lambda a, b: np.sqrt(plan.density(a, b))
            )
            x[r_sel], y[r_sel], bearing[r_sel] = rx, ry, rb
            road_name[r_sel] = np.array(network.names, dtype=object)[ridx]
        v_sel = todo[village[todo]]
        if len(v_sel):
            pool = np.flatnonzero(comm_rural) if comm_rural.any() else np.arange(len(h.communities))
            pick = rng.choice(pool, size=len(v_sel))
            seat = np.array([h.communities[c].seat for c in pick])
            x[v_sel] = seat[:, 0] + rng.normal(0, 250, len(v_sel))
            y[v_sel] = seat[:, 1] + rng.normal(0, 250, len(v_sel))
        b_sel = todo[~on_road[todo] & ~village[todo]]
        if len(b_sel):
            bx, by = plan.density.sample(rng, len(b_sel), land)
            x[b_sel] = bx + rng.normal(0, 20, len(b_sel))
            y[b_sel] = by + rng.normal(0, 20, len(b_sel))
        lon, lat = plan.plane.to_lonlat(x[todo], y[todo])
        pos = index.assign(lon, lat)
        wet = plan.density.in_voids(x[todo], y[todo])
        ok = (pos >= 0) & ~wet
        grid_pos[todo[ok]] = pos[ok]
        todo = todo[~ok]
    if len(todo):
        raise SeedError(f"could not place {len(todo)} cameras inside the grids")

    lon, lat = plan.plane.to_lonlat(x, y)
    ptz = np.empty(n, int)
    use = np.empty(n, int)
    for c in (1, 2, 3):
        sel = cls == c
        ptz[sel] = rng.choice(_PTZ[c][0], size=int(sel.sum()), p=_PTZ[c][1])
        use[sel] = rng.choice(_USE[c][0], size=int(sel.sum()), p=_USE[c][1])
    ind = _industry(rng, cls, use, village)
    type_code = np.where(rng.random(n) < 0.85, "132", "131")
    net_u = rng.random(n)
    net = np.where(cls == 1, np.where(net_u < 0.7, "5", "6"),
                   np.where(cls == 2, np.where(net_u < 0.5, "6", "8"), np.where(net_u < 0.8, "8", "7")))  # fmt: skip
    fov = np.where(ptz == 1, 360.0, np.round(rng.uniform(50, 110, n), 1))
    range_m = np.where(
        ptz == 4,
        rng.uniform(100, 150, n),
        np.where(ptz == 1, rng.uniform(80, 150, n), rng.uniform(30, 120, n)),
    ).round(1)
    az = np.round((bearing + rng.normal(0, 15, n)) % 360.0, 1)
    st = rng.random(n)
    off = np.array([_OFFLINE[c] for c in cls])
    status = np.where(st < off, "offline", np.where(st < off + 0.015, "stale", "online"))
    age_s = np.where(status == "online", rng.uniform(0, 300, n),
                     np.where(status == "stale", rng.uniform(1800, 6 * 3600, n), rng.uniform(6 * 3600, 10 * 86400, n)))  # fmt: skip
    now_s = now.timestamp()
    last_seen = _datetimes(np.floor(now_s - age_s))

    # GB/T 28181 IDs: district code + basic unit (the street's number) + industry + type +
    # network + a serial counted per district.
    comm_of_grid = np.array([g.parent for g in h.grids])
    street_of_comm = np.array([c.parent for c in h.communities])
    district_of_street = np.array([st_.parent for st_ in h.streets])
    street = street_of_comm[comm_of_grid[grid_pos]]
    district = district_of_street[street]
    street_rank = np.zeros(len(h.streets), int)
    for d in range(len(h.districts)):
        members = np.flatnonzero(district_of_street == d)
        street_rank[members] = np.arange(1, len(members) + 1) % 100
    serial = np.zeros(n, int)
    for d in range(len(h.districts)):
        members = np.flatnonzero(district == d)
        serial[members] = np.arange(1, len(members) + 1)
    comm_names = np.array([c.name for c in h.communities], dtype=object)
    dist_names = np.array([d.name for d in h.districts], dtype=object)
    fac_idx = rng.integers(0, 7, n)
    rows = []
    for i in range(n):
        d = int(district[i])
        dcode = h.districts[d].code
        gb = f"{dcode}{street_rank[street[i]]:02d}{ind[i]}{type_code[i]}{net[i]}{serial[i]:06d}"
        comm = comm_names[comm_of_grid[grid_pos[i]]]
        c = int(cls[i])
        if c == 1:
            name = (
                f"{road_name[i]}{comm}段"
                if on_road[i]
                else f"{comm}村口"
                if village[i]
                else f"{comm}公共区域"
            )
            owner = f"{plan.city_name}公安局{dist_names[d]}分局"
            if ind[i] == "04":
                owner = f"{plan.city_name}公安局交通警察支队"
            elif ind[i] == "08":
                owner = f"{dist_names[d]}城市管理局"
        else:
            fac = _FACILITIES[c]
            name = f"{comm}{fac[fac_idx[i] % len(fac)]}"
            own = _OWNERS[c]
            owner = f"{comm}{own[fac_idx[i] % len(own)]}"
        rows.append(
            {"id": i + 1, "gb_id": gb, "name": f"{name}-{serial[i] % 100:02d}", "cls": c,
             "ptz_type": int(ptz[i]), "use_type": int(use[i]), "lon": float(lon[i]),
             "lat": float(lat[i]), "azimuth": float(az[i]), "fov": float(fov[i]),
             "range_m": float(range_m[i]), "stream_url": "", "owner": owner,
             "status": str(status[i]), "last_seen": last_seen[i], "grid_id": int(grid_pos[i]) + 1}
        )  # fmt: skip
    return rows


# -- incidents -------------------------------------------------------------------------


def _incident_points(plan: _Plan, cfg: Scale, rng, index: GridIndex, n: int, cats):
    """Return (x, y, grid position, category bias or None) of ``n`` incident locations.

    80 % background, one grid drawn per incident (each grid about equally likely, with a
    lognormal activity factor: so incidents follow grid density) and a uniform point in it;
    20 % around Gaussian hotspots downtown, each with a theme that favours some categories.
    """
    h = plan.hierarchy
    grid_geoms = np.array([g.geom for g in h.grids], dtype=object)
    weight = np.exp(rng.normal(0, 0.5, len(grid_geoms)))
    if plan.lake is not None:
        wet = shapely.intersects(grid_geoms, plan.lake)
        dry = np.ones(len(grid_geoms))
        dry[wet] = shapely.area(shapely.difference(grid_geoms[wet], plan.lake)) / shapely.area(
            grid_geoms[wet]
        )
        weight *= dry
    n_hot = int(round(n * 0.2)) if cfg.hotspots else 0
    n_bg = n - n_hot
    x = np.empty(n)
    y = np.empty(n)
    pos = np.empty(n, int)
    which = rng.choice(len(grid_geoms), size=n_bg, p=weight / weight.sum())
    todo = np.arange(n_bg)
    while len(todo):
        px, py = history.points_in_polygons(rng, grid_geoms, which[todo])
        wet = plan.density.in_voids(px, py)
        x[todo[~wet]], y[todo[~wet]] = px[~wet], py[~wet]
        pos[todo[~wet]] = which[todo[~wet]]
        todo = todo[wet]

    bias = None
    if n_hot:
        land = shapely.difference(plan.city, plan.lake) if plan.lake is not None else plan.city
        cand_x, cand_y = plan.density.sample(rng, 50 * cfg.hotspots, land)
        core = plan.density(cand_x, cand_y) >= 4.0
        pool = np.flatnonzero(core) if core.sum() >= cfg.hotspots else np.arange(len(cand_x))
        centre = rng.choice(pool, size=cfg.hotspots, replace=False)
        hx, hy = cand_x[centre], cand_y[centre]
        sigma = rng.uniform(150, 500, cfg.hotspots)
        share = rng.dirichlet(np.full(cfg.hotspots, 2.0))
        theme = rng.integers(0, len(history.HOTSPOT_THEMES), cfg.hotspots)
        spot = rng.choice(cfg.hotspots, size=n_hot, p=share)
        idx = np.arange(n_bg, n)
        todo = np.arange(n_hot)
        for _ in range(50):
            if not len(todo):
                break
            sx = hx[spot[todo]] + rng.normal(0, 1, len(todo)) * sigma[spot[todo]]
            sy = hy[spot[todo]] + rng.normal(0, 1, len(todo)) * sigma[spot[todo]]
            lon, lat = plan.plane.to_lonlat(sx, sy)
            p = index.assign(lon, lat)
            ok = (p >= 0) & ~plan.density.in_voids(sx, sy)
            x[idx[todo[ok]]], y[idx[todo[ok]]], pos[idx[todo[ok]]] = sx[ok], sy[ok], p[ok]
            todo = todo[~ok]
        if len(todo):
            raise SeedError(f"could not place {len(todo)} hotspot incidents inside the grids")
        bias = np.ones((n_hot, len(cats.codes)))
        for t, (_, codes) in enumerate(history.HOTSPOT_THEMES):
            rows = np.flatnonzero(theme[spot] == t)
            cols = [cats.index(c) for c in codes if c in set(cats.codes)]
            bias[np.ix_(rows, cols)] = 6.0
    return x, y, pos, bias


def _write_incidents(
    s: Session,
    plan: _Plan,
    cfg: Scale,
    rngs,
    index: GridIndex,
    now: dt.datetime,
    bar: _Progress,
    cats: history.CategoryDict,
    *,
    grid_community: np.ndarray,
    area_parent: dict[int, int | None],
    center_of_area: dict[int, int],
    staff_of_center: dict[int, tuple[int, int]],
    worker_names: np.ndarray,
    worker_phones: np.ndarray,
) -> tuple[int, int]:
    from layers.services import sla as sla_service
    from layers.services.spatial import ESCALATION_ORDER

    n = cfg.incidents
    now_s = now.timestamp()
    rng_p, rng_t, rng_x = rngs["places"], rngs["times"], rngs["text"]
    x, y, gpos, bias = _incident_points(plan, cfg, rng_p, index, n, cats)
    # categories: background by weight, hotspots with their theme's bias
    cat = np.empty(n, int)
    n_hot = 0 if bias is None else len(bias)
    cat[: n - n_hot] = history.sample_categories(rng_t, cats, n - n_hot)
    if n_hot:
        cat[n - n_hot :] = history.sample_categories(rng_t, cats, n_hot, bias)
    created = history.sample_created(rng_t, n, now_s)
    order = np.argsort(created, kind="stable")  # ids follow creation time
    x, y, gpos, cat, created = (a[order] for a in (x, y, gpos, cat, created))

    # the same problem reported again within hours by someone else (避免多头交办): the copy
    # lies within metres of the first report; once a dispatcher merges it, it is closed
    dup_of = np.full(n, -1)
    later = rng_x.choice(np.arange(1, n), size=int(n * 0.015), replace=False)
    for i in np.sort(later):
        j = i - 1 - int(rng_x.integers(0, min(i, 50)))
        if created[i] - created[j] < 6 * 3600 and dup_of[j] < 0:
            dup_of[i] = j
    dup = np.flatnonzero(dup_of >= 0)
    src = dup_of[dup]
    x[dup] = x[src] + rng_x.normal(0, 15, len(dup))
    y[dup] = y[src] + rng_x.normal(0, 15, len(dup))
    lon, lat = plan.plane.to_lonlat(x, y)
    strayed = dup[index.assign(lon[dup], lat[dup]) != gpos[src]]
    lon[strayed], lat[strayed] = lon[dup_of[strayed]], lat[dup_of[strayed]]
    gpos[dup] = gpos[src]
    cat[dup] = cat[src]
    # the grid index decides, exactly as the incident service would on intake
    found = index.assign(lon, lat)
    if (found < 0).any():
        raise SeedError(f"{int((found < 0).sum())} incidents fell outside every grid")
    gpos = found
    priority = history.sample_priorities(rng_t, cats, cat)
    source = history.sample_sources(rng_t, cats, cat)

    # deadlines in SLA time, exactly as layers.services.sla computes them
    cal = sla_service.default_calendar()
    factor = np.array([sla_service.PRIORITY_FACTOR.get(p, 1.0) for p in (1, 2, 3, 4)])
    step_h = cats.sla_hours[cat] * factor[priority - 1]
    urgent = np.isin(priority, list(sla_service.ROUND_THE_CLOCK_PRIORITIES))
    clock = history.WorkingClock(cal, created.min(), now_s + 400 * history.DAY_S)

    def sla_add(t, hours):
        return np.where(urgent, t + hours * 3600.0, clock.add(t, hours))

    due = sla_add(created, step_h)
    stages, status, rework = history.workflow(rng_t, created, due, now_s)
    merged_at = created[dup] + rng_x.uniform(600, 4 * 3600, len(dup)).round()
    is_merged = merged_at <= now_s
    dup, merged_at = dup[is_merged], merged_at[is_merged]
    dup_of[np.setdiff1d(np.flatnonzero(dup_of >= 0), dup)] = -1  # not merged yet: a plain case
    for col in stages:
        stages[col][dup] = np.nan
    stages["closed_at"][dup] = merged_at
    status[dup] = "closed"
    rework[dup] = 0

    # escalation: open past the deadline climbs one level per SLA step (as escalate_overdue)
    rank = np.array([ESCALATION_ORDER.index(o) for o in cats.owner_level[cat]])
    closed_at = stages["closed_at"]
    end_s = np.where(np.isfinite(closed_at), closed_at, now_s)
    rank, escalate_at, escalated_at, escalations = _escalate(
        rank, due, end_s, lambda t: sla_add(t, step_h), stages, len(ESCALATION_ORDER) - 1
    )
    level = np.array(ESCALATION_ORDER, dtype=object)[rank]

    # routing: grid and community work → the community's center; above → that level's center
    comm_id = grid_community[gpos]
    street_id = np.array([area_parent[c] for c in comm_id])
    district_id = np.array([area_parent[st] for st in street_id])
    area_at = {0: comm_id, 1: comm_id, 2: street_id, 3: district_id, 4: np.ones(n, int)}
    center = np.zeros(n, int)
    for r, areas in area_at.items():
        sel = rank == r
        center[sel] = [center_of_area[int(a)] for a in areas[sel]]
    first, count = np.array([staff_of_center[int(c)] for c in center]).T
    assignee = np.where(rank == 0, gpos + 1, first + rng_x.integers(0, 1 << 30, n) % count)

    # reporters: grid workers report their own patrols; cameras and opinion have none
    rep_name = names.person_names(rng_x, n)
    rep_phone = names.mobile_numbers(rng_x, n)
    patrol = source == "patrol"
    rep_name[patrol] = worker_names[gpos[patrol]]
    rep_phone[patrol] = worker_phones[gpos[patrol]]
    silent = np.isin(source, history.NO_REPORTER_SOURCES)
    rep_name[silent] = ""
    rep_phone[silent] = ""
    comm_names = np.array([c.name for c in plan.hierarchy.communities], dtype=object)
    places = comm_names[np.array([g.parent for g in plan.hierarchy.grids])[gpos]]
    desc = history.describe(rng_x, cats, cat, places)

    ext_id = np.full(n, None, dtype=object)
    hot = np.flatnonzero(source == "hotline_12345")
    local_day = (created[hot] + 8 * 3600) // history.DAY_S
    ext_id[hot] = [
        f"12345-{dt.date.fromordinal(719163 + int(d)).strftime('%Y%m%d')}-{i + 1:07d}"
        for d, i in zip(local_day, hot, strict=True)
    ]

    with _bulk_load(s, ("incidents", "incident_events")):
        n_events = _insert_incidents(
            s, bar, n, columns={
                "lon": lon, "lat": lat, "category_code": cats.codes[cat], "priority": priority,
                "source": source, "description": desc, "reporter_name": rep_name,
                "reporter_phone": rep_phone, "status": status, "created_at": created,
                **stages, "due_at": due, "grid_id": gpos + 1, "center_id": center,
                "assignee_id": assignee, "escalation_level": level,
                "duplicate_of": np.where(dup_of >= 0, dup_of + 1, -1), "rework_count": rework,
                "external_id": ext_id, "extension_hours": np.zeros(n),
                "escalate_at": escalate_at, "escalated_at": escalated_at,
            }, event_inputs=(source, created, stages, dup_of),
            escalations=escalations,
        )  # fmt: skip
    return n, n_events


def _escalate(rank, due, end_s, add_step, stages, top: int):
    """Return (rank, escalate_at, escalated_at, escalations) after replaying escalations.

    Like ``layers.services.escalation.escalate_overdue``: a case still open at its ``escalate_at``
    (first the deadline, then one SLA step later each time) moves up one level, until
    ``end_s`` (its closing, or now) or the top level. ``escalations`` holds flat arrays
    (incident index, time, status at that time, step number), one entry per escalation.
    """
    escalate_at = due.copy()
    escalated_at = np.full(len(due), np.nan)
    stage_times = np.column_stack([stages[history.STAGE_COLUMNS[st]] for st in history.STAGES])
    status_names = np.array(("collected",) + history.STAGES, dtype=object)
    who_, when_, then_, step_ = [], [], [], []
    for step in range(1, top + 1):
        go = (escalate_at <= end_s) & (rank < top)
        if not go.any():
            break
        who = np.flatnonzero(go)
        who_.append(who)
        when_.append(escalate_at[who].copy())
        # the status the case had then (a NaN stage compares False: not reached)
        then_.append(status_names[(stage_times[who] <= escalate_at[who, None]).sum(axis=1)])
        step_.append(np.full(len(who), step))
        rank = np.where(go, rank + 1, rank)
        escalated_at = np.where(go, escalate_at, escalated_at)
        escalate_at = np.where(go, add_step(escalate_at), escalate_at)
    flat = tuple(
        np.concatenate(parts) if parts else np.zeros(0, dtype)
        for parts, dtype in ((who_, int), (when_, float), (then_, object), (step_, int))
    )
    return rank, escalate_at, escalated_at, flat


def _insert_incidents(s, bar, n, columns, event_inputs, escalations) -> int:
    """Insert the incidents and their workflow events in chunks; return the event count."""
    esc_who, esc_when, esc_then, esc_step = escalations
    source, created, stages, dup_of = event_inputs
    w = _BulkWriter(s)
    times = {"created_at", "due_at", "escalate_at", "escalated_at", *stages}
    n_events = 0
    for sl in _chunks(n):
        chunk = {"id": np.arange(sl.start, sl.stop) + 1}
        for key, values in columns.items():
            part = values[sl]
            if key in times:
                part = w.times(part)
            elif key == "duplicate_of":
                part = np.where(part > 0, part, None)
            chunk[key] = part
        w.insert(Incident, chunk)
        sel = (esc_who >= sl.start) & (esc_who < sl.stop)
        events = _event_columns(
            sl, source, created, stages, dup_of,
            (esc_who[sel], esc_when[sel], esc_then[sel], esc_step[sel]),
        )  # fmt: skip
        k = len(events["incident_id"])
        events["id"] = np.arange(n_events, n_events + k) + 1
        events["ts"] = w.times(events["ts"])
        w.insert(IncidentEvent, events)
        n_events += k
        bar.update(sl.stop - sl.start)
    return n_events


_STAGE_ACTIONS = (
    ("registered_at", "collected", "registered", "register", "dispatcher"),
    ("dispatched_at", "registered", "dispatched", "dispatch", "dispatcher"),
    ("handled_at", "dispatched", "handling", "accept", "responder"),
    ("reported_at", "handling", "reported", "report", "responder"),
    ("closed_at", "reported", "closed", "close", "dispatcher"),
    ("evaluated_at", "closed", "evaluated", "evaluate", "dispatcher"),
)


def _event_columns(sl, source, created, stages, dup_of, escalations) -> dict[str, np.ndarray]:
    """Return the workflow log of incidents ``sl`` as columns, in (incident, time) order.

    One ``create`` event per incident, one event per stage reached (a merged duplicate gets a
    ``merge`` instead), one ``escalate`` per escalation step.
    """
    idx = np.arange(sl.start, sl.stop)
    merged = dup_of[idx] >= 0
    parts = [(idx, created[idx], None, "collected", "create", "system", "system",
              np.char.add("source=", source[idx].astype(str)).astype(object))]  # fmt: skip
    m = idx[merged]
    parts.append((m, stages["closed_at"][m], "collected", "closed", "merge", "dispatcher",
                  "dispatcher", np.char.add("merged into ", (dup_of[m] + 1).astype(str)).astype(object)))  # fmt: skip
    for col, frm, to, action, role in _STAGE_ACTIONS:
        when = stages[col][idx]
        keep = ~merged & np.isfinite(when)
        parts.append((idx[keep], when[keep], frm, to, action, role, role, ""))
    who, when, then, step = escalations
    parts.append((who, when, then, then, "escalate", "system", "system",
                  np.char.add("overdue: escalation step ", step.astype(str)).astype(object)))  # fmt: skip

    def col(size: int, value) -> np.ndarray:
        if isinstance(value, np.ndarray):
            return value.astype(object) if value.dtype != float else value
        return np.full(size, value, dtype=object)

    inc = np.concatenate([p[0] for p in parts])
    ts = np.concatenate([np.asarray(p[1], float) for p in parts])
    order = np.lexsort((ts, inc))
    out = {"incident_id": inc[order] + 1, "ts": ts[order]}
    for k, key in (
        (2, "from_status"),
        (3, "to_status"),
        (4, "action"),
        (5, "actor"),
        (6, "role"),
        (7, "reason"),
    ):
        out[key] = np.concatenate([col(len(p[0]), p[k]) for p in parts])[order]
    return out


@contextmanager
def _bulk_load(session: Session, tables: tuple[str, ...]) -> Iterator[None]:
    """On SQLite, load big tables fast: a large page cache, secondary indexes built after.

    Keeping a dozen random-order indexes up to date row by row makes SQLite churn pages once
    the tables outgrow its cache; building each index once at the end sorts instead. The
    indexes are recreated from their own stored SQL, and all of it runs inside the seed's
    transaction, so a failed seed rolls back to the indexes it started with.
    """
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        yield
        return
    old_cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql("PRAGMA cache_size=-262144")  # KiB: 256 MB
    marks = ", ".join("?" * len(tables))
    indexes = conn.exec_driver_sql(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN ({marks}) ORDER BY name",
        tables,
    ).all()
    quote = conn.dialect.identifier_preparer.quote
    try:
        for name, _ in indexes:
            conn.exec_driver_sql(f"DROP INDEX {quote(name)}")
        yield
        for _, sql in indexes:
            conn.exec_driver_sql(sql)
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(old_cache)}")


class _BulkWriter:
    """Fast executemany inserts of column arrays for the big tables (incidents, events).

    On SQLite it hands tuples straight to the driver's ``executemany``, with time stamps
    already in SQLAlchemy's SQLite storage format ("YYYY-MM-DD HH:MM:SS.ffffff", naive UTC):
    per-row parameter and type processing would cost more than the insert itself at a million
    rows, and what the ORM reads back is the same as if it had written the rows. Other
    databases go through SQLAlchemy Core with the models' own tables and aware datetimes.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect
        self.sqlite = self.dialect.name == "sqlite"

    def times(self, seconds: np.ndarray) -> np.ndarray:
        """Return whole epoch seconds as values for a UTCDateTime column (NaN → None)."""
        s = np.asarray(seconds, dtype=float)
        if not self.sqlite:
            return _datetimes(s)
        out = np.full(len(s), None, dtype=object)
        ok = np.isfinite(s)
        if ok.any():
            # "YYYY-MM-DDTHH:MM:SS" as bytes, 'T' → ' ', then ".000000": all in C
            iso = np.round(s[ok]).astype("int64").astype("datetime64[s]").astype("S19")
            buf = np.empty((len(iso), 26), np.uint8)
            buf[:, :19] = iso.view(np.uint8).reshape(-1, 19)
            buf[:, 10] = ord(" ")
            buf[:, 19:] = np.frombuffer(b".000000", np.uint8)
            out[ok] = buf.view("S26").ravel().astype("U26")
        return out

    def insert(self, model, columns: dict[str, np.ndarray]) -> None:
        """Insert rows given as equally long column arrays (numpy or lists)."""
        keys = list(columns)
        if not len(columns[keys[0]]):
            return
        values = [np.asarray(columns[k]).tolist() for k in keys]
        if self.sqlite:
            quote = self.dialect.identifier_preparer.quote
            sql = (
                f"INSERT INTO {quote(model.__tablename__)} ({', '.join(quote(k) for k in keys)}) "
                f"VALUES ({', '.join('?' * len(keys))})"
            )
            self.session.connection().exec_driver_sql(sql, list(zip(*values, strict=True)))
        else:
            rows = [dict(zip(keys, vals, strict=True)) for vals in zip(*values, strict=True)]
            self.session.execute(insert(model.__table__), rows)


# -- CLI -------------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "seed",
        help="build the deterministic demo city (昆明): grids, centers, cameras, incidents",
        description="Build a deterministic demo city into the database. Exit codes: 0 done, "
        "1 refused (the database already holds a city; use --force) or districts file "
        "rejected, 2 usage error.",
    )
    p.add_argument("--scale", choices=list(SCALES), default="demo",
                   help="tiny (~60 grids), demo (~300 grids, ~1,000 cameras, ~20,000 incidents) "
                   "or city (≥10,000 grids, ≥12,000 cameras, ≥1,000,000 incidents)")  # fmt: skip
    p.add_argument("--districts", metavar="FILE", default=None,
                   help="real district outlines (GeoJSON/GeoPackage/Shapefile; properties name "
                   "and adcode) instead of the generated ones")  # fmt: skip
    p.add_argument("--crs", default=None,
                   help="CRS of --districts: wgs84, gcj02, bd09 or EPSG:n (default: the file's "
                   "own; GeoJSON counts as WGS-84)")  # fmt: skip
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default 42)")
    p.add_argument("--now", default=None,
                   help="ISO time the incident history ends at, e.g. 2026-11-23T08:00:00+08:00 "
                   "(default: now); with --seed it makes the data byte-identical")  # fmt: skip
    p.add_argument(
        "--sample-video",
        metavar="FILE",
        default=None,
        help="give a few downtown cameras a file:// stream URL to this video",
    )
    p.add_argument("--db", default=None, help="database URL (default GRIDSIGHT_DB_URL or SQLite)")
    p.add_argument(
        "--force",
        action="store_true",
        help="wipe the layer tables first if the database already holds a city",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.crs is not None and args.districts is None:
        return _usage("--crs: applies to --districts only; give --districts FILE as well")
    if args.crs is not None:
        from geo.crs import to_wgs84

        try:
            to_wgs84(np.array([0.0]), np.array([0.0]), args.crs)
        except ValueError as exc:
            return _usage(f"--crs: {exc}")
    if args.districts is not None and not Path(args.districts).is_file():
        return _usage(f"--districts: {args.districts!r} is not a file")
    if args.sample_video is not None and not Path(args.sample_video).is_file():
        return _usage(f"--sample-video: {args.sample_video!r} is not a file")
    now = None
    if args.now is not None:
        try:
            now = dt.datetime.fromisoformat(args.now)
        except ValueError:
            return _usage(f"--now: {args.now!r} is not an ISO time like 2026-11-23T08:00:00+08:00")
        if now.tzinfo is None:
            return _usage(f"--now: {args.now!r} has no timezone; add one, e.g. +08:00")
    try:
        db = Database(args.db)
    except DatabaseError as exc:
        return _usage(str(exc))
    t0 = time.perf_counter()
    try:
        counts = seed_city(
            db, scale=args.scale, seed=args.seed, districts=args.districts,
            progress=not args.no_progress, districts_crs=args.crs, now=now, force=args.force,
            sample_video=args.sample_video,
        )  # fmt: skip
    except CityExistsError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except DistrictsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - t0
    where = db.engine.url.render_as_string(hide_password=True)
    with db.session() as s:
        city = s.execute(
            select(AdminArea.name, AdminArea.code).where(AdminArea.level == "city")
        ).one()
    print(
        f"seeded {city.name} ({city.code}), scale {args.scale}, seed {args.seed}, "
        f"in {seconds:.1f} s into {where}:"
    )
    width = max(len(k) for k in counts)
    for k, v in counts.items():
        print(f"  {k:<{width}}  {v:>10,}")
    return 0
