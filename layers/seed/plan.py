"""The seed's plan: the city's geometry in the local metric plane, before any row is written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely

from layers.citygen import city as citymod
from layers.citygen.tiling import Plane
from layers.codes import admin_code_table
from layers.seed.districts import District, name_of


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


@dataclass
class Plan:
    """The seed city's geometry in the local plane: outline, lake, density, hierarchy, seats."""

    plane: Plane
    city_code: str
    city_name: str
    city: shapely.Geometry  # plane
    lake: shapely.Geometry | None  # plane
    density: citymod.DensityModel
    hierarchy: citymod.Hierarchy
    seats: np.ndarray  # plane, one per district


def plan_city(
    rngs: dict[str, np.random.Generator],
    scale: Scale,
    districts: list[District] | None,
    tick: Callable[[int], None] | None,
) -> Plan:
    """Return the plan of the city: generated districts, or the given ones, tiled into grids."""
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
    city_name = name_of(city_code) or f"{city_code}"
    return Plan(plane, city_code, city_name, city, lake, density, hierarchy, seats)


def _inner_point(geom: shapely.Geometry) -> tuple[float, float]:
    c = shapely.centroid(geom)
    if not shapely.contains(geom, c):
        c = shapely.point_on_surface(geom)
    return (c.x, c.y)


def dry_point(
    geom: shapely.Geometry, xy: tuple[float, float], lake: shapely.Geometry | None
) -> tuple[float, float]:
    """Return ``xy`` if it lies on land inside ``geom``, else a point on the dry part."""
    if shapely.contains_xy(geom, *xy) and (lake is None or not shapely.contains_xy(lake, *xy)):
        return xy
    dry = shapely.difference(geom, lake) if lake is not None else geom
    p = shapely.point_on_surface(dry if not dry.is_empty else geom)
    return (p.x, p.y)
