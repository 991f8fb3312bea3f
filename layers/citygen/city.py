"""The demo city's layout: outline, districts, lake, density model and the nested hierarchy.

All geometry is in the ``tiling.Plane`` around the city centre (metres). The generated layout
is a stylised Kunming (昆明市): the four core districts around the centre, the new town of
呈贡 south-east across the lake (滇池, south-west of the centre), and outlying districts and
counties, each seat a secondary density peak. Positions are schematic, chosen by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely

from layers.citygen.names import place_names
from layers.citygen.tiling import DensityModel, Partition, allocate, partition

KUNMING_CODE = "530100"
KUNMING_CENTRE = (102.71, 25.04)  # WGS-84, the old town around 东风广场

# Generated layout: (GB/T 2260 code, seat east km, seat north km, seat density, seat scale km)
GENERATED_DISTRICTS = (
    ("530102", -3.0, 4.0, 0.0, 1.0),  # 五华区   core (covered by the city-core kernel)
    ("530103", 4.5, 8.0, 0.0, 1.0),  # 盘龙区   core
    ("530111", 6.0, -7.0, 0.0, 1.0),  # 官渡区   core
    ("530112", -8.0, -4.0, 0.0, 1.0),  # 西山区   core
    ("530114", 14.0, -18.0, 14.0, 3.0),  # 呈贡区   new town across the lake
    ("530115", 3.0, -44.0, 5.0, 2.0),  # 晋宁区
    ("530181", -30.0, -8.0, 9.0, 2.5),  # 安宁市
    ("530127", 26.0, 24.0, 5.0, 2.0),  # 嵩明县
    ("530124", -22.0, 24.0, 3.5, 2.0),  # 富民县
)
# 滇池 as an ellipse in the plane: centre (km), semi-axes (km), rotation (degrees from north).
LAKE = {"name": "滇池", "centre": (-3.5, -21.0), "axes": (5.0, 17.0), "rotation": 10.0}

CORE_AMPLITUDE = 30.0  # relative density at the centre; the rural floor is FLOOR
CORE_SCALE_M = 6000.0
FLOOR = 0.3
SEAT_AMPLITUDE = 8.0  # seats of given (real) outlying districts
SEAT_SCALE_M = 2500.0

STREET_KINDS = (
    ("街道", 4.0, 1),
    ("镇", 0.8, 101),
    ("乡", 0.0, 201),
)  # kind, min density, first code
COMMUNITY_KINDS = (("社区", 2.0, 1), ("村", 0.0, 201))


def lake_polygon() -> shapely.Polygon:
    """Return 滇池 (a rotated ellipse) in plane metres."""
    cx, cy = (v * 1000 for v in LAKE["centre"])
    a, b = (v * 1000 for v in LAKE["axes"])
    t = np.linspace(0, 2 * np.pi, 97)[:-1]
    x, y = a * np.cos(t), b * np.sin(t)
    rot = math.radians(LAKE["rotation"])
    xr = x * math.cos(rot) + y * math.sin(rot)
    yr = -x * math.sin(rot) + y * math.cos(rot)
    return shapely.Polygon(np.column_stack([cx + xr, cy + yr]))


def generated_outline(rng: np.random.Generator, radius_m: float = 50_000.0) -> shapely.Polygon:
    """Return a smooth city outline around the origin, elongated north-south (plane metres)."""
    t = np.linspace(0, 2 * np.pi, 241)[:-1]
    phases = rng.uniform(0, 2 * np.pi, 3)
    r = radius_m * (
        1
        + 0.10 * np.cos(2 * (t - np.pi / 2))
        + 0.05 * np.cos(3 * t + phases[0])
        + 0.03 * np.cos(5 * t + phases[1])
        + 0.015 * np.cos(9 * t + phases[2])
    )
    return shapely.Polygon(np.column_stack([r * np.cos(t), r * np.sin(t)]))


def generated_districts(
    rng: np.random.Generator, outline: shapely.Polygon
) -> tuple[list[str], list[shapely.Geometry], np.ndarray]:
    """Return (codes, polygons, seats) of the generated districts: Voronoi cells of the seats.

    Seats are jittered by up to ~1 km; cells are clipped to ``outline`` (plane metres).
    """
    codes = [d[0] for d in GENERATED_DISTRICTS]
    seats = np.array([[d[1], d[2]] for d in GENERATED_DISTRICTS]) * 1000.0
    seats = seats + rng.normal(0, 400.0, seats.shape)
    cells = shapely.get_parts(
        shapely.voronoi_polygons(shapely.multipoints(seats), extend_to=outline, ordered=True)
    )
    polys = list(shapely.intersection(cells, outline))
    return codes, polys, seats


def density_model(
    centre_xy: tuple[float, float],
    seats: np.ndarray,
    seat_amplitudes: np.ndarray,
    seat_scales_m: np.ndarray,
    lake: shapely.Geometry | None,
) -> DensityModel:
    """Return the density model: the city core, one kernel per seat, a floor and the lake."""
    keep = seat_amplitudes > 0
    centres = np.vstack([np.asarray(centre_xy, float)[None, :], seats[keep]])
    return DensityModel(
        centres=centres,
        amplitudes=np.append(CORE_AMPLITUDE, seat_amplitudes[keep]),
        scales=np.append(CORE_SCALE_M, seat_scales_m[keep]),
        floor=FLOOR,
        voids=lake,
        void_factor=0.02,
    )


@dataclass
class Area:
    """One administrative area or grid of the generated hierarchy (plane metres)."""

    level: str  # district | street | community | grid
    code: str
    name: str
    kind: str  # 区/县/市, 街道/镇/乡, 社区/村, 网格
    parent: int  # index into the parent level's list; -1 for districts
    geom: shapely.Geometry
    seat: tuple[float, float]  # a point inside geom: where the area's center sits


@dataclass
class Hierarchy:
    """Districts, streets, communities and grids, each a list of ``Area`` (plane metres)."""

    districts: list[Area]
    streets: list[Area]
    communities: list[Area]
    grids: list[Area]


_CN_DIGITS = "零一二三四五六七八九"


def chinese_ordinal(n: int) -> str:
    """Return 1..99 in Chinese numerals (1 → 一, 10 → 十, 21 → 二十一)."""
    if n < 10:
        return _CN_DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else _CN_DIGITS[tens]) + "十" + (_CN_DIGITS[ones] if ones else "")


def _kind_codes(density: np.ndarray, kinds) -> tuple[list[str], list[int]]:
    """Return each child's kind and its 3-digit code number, numbering within kind."""
    out_kind: list[str] = []
    out_num: list[int] = []
    counters = {k: first for k, _, first in kinds}
    for g in density:
        for name, threshold, _ in kinds:
            if g >= threshold:
                out_kind.append(name)
                out_num.append(counters[name])
                counters[name] += 1
                break
    return out_kind, out_num


def build_hierarchy(
    rng: np.random.Generator,
    districts: list[tuple[str, str, shapely.Geometry, tuple[float, float]]],
    density: DensityModel,
    *,
    n_grids: int,
    grids_per_community: float,
    communities_per_street: float,
    tick: Callable[[int], None] | None = None,
) -> Hierarchy:
    """Return the nested tiling of ``districts`` = [(code, name, polygon, seat)] (plane metres).

    Grid counts follow the density model: ``n_grids`` are shared among districts, then streets,
    then communities in proportion to the density mass each holds (estimated with density-
    distributed sample points), so downtown gets many small grids and rural counties a few
    large ones. ``tick(k)`` is called as grids are produced (for a progress bar).
    """
    city = shapely.union_all([d[2] for d in districts])
    n_pts = max(30 * n_grids, 20_000)
    px, py = density.sample(rng, n_pts, city)
    pts = np.column_stack([px, py])
    member = np.full(len(pts), -1)
    for i, (_, _, geom, _) in enumerate(districts):
        shapely.prepare(geom)
        member[(member < 0) & shapely.contains_xy(geom, px, py)] = i
    district_grids = allocate(n_grids, np.bincount(member[member >= 0], minlength=len(districts)))

    names_taken: set[str] = set()
    out = Hierarchy([], [], [], [])
    for di, (dcode, dname, dgeom, dseat) in enumerate(districts):
        kind = dname[-1] if dname[-1] in "区县市" else "区"
        out.districts.append(Area("district", dcode, dname, kind, -1, dgeom, dseat))
        d_pts = pts[member == di]
        n_d = int(district_grids[di])
        per_street = grids_per_community * communities_per_street
        n_streets = int(np.clip(round(n_d / per_street), 1, min(n_d, 99)))
        sp = partition(rng, dgeom, d_pts, n_streets)
        street_grids = allocate(n_d, np.bincount(sp.labels, minlength=n_streets))
        order = np.argsort(-density(sp.seeds[:, 0], sp.seeds[:, 1]), kind="stable")
        s_kinds, s_nums = _kind_codes(density(*sp.seeds[order].T), STREET_KINDS)
        s_names = place_names(rng, len(order), names_taken)
        for rank, si in enumerate(order):
            s_index = len(out.streets)
            scode = f"{dcode}{s_nums[rank]:03d}"
            out.streets.append(
                Area(
                    "street",
                    scode,
                    s_names[rank] + s_kinds[rank],
                    s_kinds[rank],
                    di,
                    sp.children[si],
                    tuple(sp.seeds[si]),
                )
            )
            _build_street(
                rng,
                out,
                s_index,
                d_pts[sp.labels == si],
                int(street_grids[si]),
                grids_per_community,
                density,
                names_taken,
                tick,
            )
    return out


def _build_street(
    rng: np.random.Generator,
    out: Hierarchy,
    s_index: int,
    s_pts: np.ndarray,
    n_s: int,
    grids_per_community: float,
    density: DensityModel,
    names_taken: set[str],
    tick: Callable[[int], None] | None,
) -> None:
    street = out.streets[s_index]
    n_comm = int(np.clip(round(n_s / grids_per_community), 1, min(n_s, 199)))
    cp: Partition = partition(rng, street.geom, s_pts, n_comm)
    comm_grids = allocate(n_s, np.bincount(cp.labels, minlength=n_comm), maximum=99)
    order = np.argsort(-density(cp.seeds[:, 0], cp.seeds[:, 1]), kind="stable")
    c_kinds, c_nums = _kind_codes(density(*cp.seeds[order].T), COMMUNITY_KINDS)
    c_names = place_names(rng, len(order), names_taken)
    for rank, ci in enumerate(order):
        c_index = len(out.communities)
        ccode = f"{street.code}{c_nums[rank]:03d}"
        cname = c_names[rank] + c_kinds[rank]
        comm = Area(
            "community", ccode, cname, c_kinds[rank], s_index, cp.children[ci], tuple(cp.seeds[ci])
        )
        out.communities.append(comm)
        n_c = int(comm_grids[ci])
        gp = partition(rng, comm.geom, s_pts[cp.labels == ci], n_c)
        g_order = np.lexsort((gp.seeds[:, 0], -gp.seeds[:, 1]))  # number grids north to south
        for serial, gi in enumerate(g_order, start=1):
            out.grids.append(
                Area(
                    "grid",
                    f"{ccode}{serial:02d}",
                    f"{cname}第{chinese_ordinal(serial)}网格",
                    "网格",
                    c_index,
                    gp.children[gi],
                    tuple(gp.seeds[gi]),
                )
            )
        if tick is not None:
            tick(n_c)
