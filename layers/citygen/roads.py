"""A simulated road network (ring and radial roads, a jittered street lattice) and positions
sampled along it, for placing public-video cameras where real ones stand: on the roads.

Plane metres throughout (see ``tiling.Plane``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely

from layers.citygen.names import place_names

RING_NAMES = ("一环路", "二环路", "三环路")
# relative camera density per metre of road, by road kind
KIND_WEIGHT = {"ring": 3.0, "radial": 2.5, "connector": 1.2, "street": 1.6}


@dataclass
class RoadNetwork:
    """Road centre lines (plane metres) with a name and a kind each."""

    lines: list[shapely.Geometry]
    names: list[str]
    kinds: list[str]


def _wiggle(rng: np.random.Generator, xy: np.ndarray, amplitude: float) -> np.ndarray:
    """Return the polyline displaced sideways by a smooth random offset (ends fixed)."""
    n = len(xy)
    if n < 3 or amplitude <= 0:
        return xy
    t = np.linspace(0, 1, n)
    k = rng.integers(1, 4)
    offset = amplitude * np.sin(np.pi * k * t + rng.uniform(0, np.pi)) * np.sin(np.pi * t)
    d = np.gradient(xy, axis=0)
    normal = np.column_stack([-d[:, 1], d[:, 0]])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    return xy + normal * offset[:, None]


def build_roads(
    rng: np.random.Generator,
    land: shapely.Geometry,
    centre: tuple[float, float],
    seats: np.ndarray,
    *,
    core_radius_m: float = 9000.0,
    seat_radius_m: float = 2500.0,
) -> RoadNetwork:
    """Return a plausible road network clipped to ``land`` (the city minus water).

    Three ring roads and a dozen radials around ``centre``, a connector from the centre to each
    outlying seat, and a jittered street lattice downtown and around each seat.
    """
    cx, cy = centre
    lines: list[shapely.Geometry] = []
    kinds: list[str] = []
    named: list[str | None] = []

    for radius, name in zip((3500.0, 7000.0, 12500.0), RING_NAMES, strict=True):
        t = np.linspace(0, 2 * np.pi, 181)
        ph = rng.uniform(0, 2 * np.pi, 2)
        r = radius * (1 + 0.07 * np.cos(2 * t + ph[0]) + 0.03 * np.cos(3 * t + ph[1]))
        lines.append(shapely.LineString(np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)])))
        kinds.append("ring")
        named.append(name)

    n_radials = 12
    for a0 in np.linspace(0, 2 * np.pi, n_radials, endpoint=False) + rng.uniform(0, 0.5):
        steps = 70
        angle = a0 + np.cumsum(rng.normal(0, 0.02, steps))
        dist = 300.0 + np.arange(steps) * 1000.0
        lines.append(
            shapely.LineString(
                np.column_stack([cx + dist * np.cos(angle), cy + dist * np.sin(angle)])
            )
        )
        kinds.append("radial")
        named.append(None)

    for sx, sy in seats:
        if np.hypot(sx - cx, sy - cy) < core_radius_m:
            continue
        xy = np.column_stack([np.linspace(cx, sx, 40), np.linspace(cy, sy, 40)])
        lines.append(shapely.LineString(_wiggle(rng, xy, 1500.0)))
        kinds.append("connector")
        named.append(None)

    towns = [(cx, cy, core_radius_m, 450.0)] + [
        (sx, sy, seat_radius_m, 380.0)
        for sx, sy in seats
        if np.hypot(sx - cx, sy - cy) >= core_radius_m
    ]
    for tx, ty, radius, spacing in towns:
        rot = rng.uniform(0, np.pi / 2)
        u = np.array([np.cos(rot), np.sin(rot)])
        v = np.array([-u[1], u[0]])
        disk = shapely.Point(tx, ty).buffer(radius * rng.uniform(0.85, 1.1), quad_segs=16)
        offsets = np.arange(-radius, radius + 1, spacing)
        s = np.linspace(-radius, radius, 25)
        for axis, other in ((u, v), (v, u)):
            for off in offsets + rng.normal(0, spacing * 0.12, len(offsets)):
                xy = np.array([tx, ty]) + off * other + s[:, None] * axis
                line = shapely.intersection(
                    shapely.LineString(_wiggle(rng, xy, spacing * 0.15)), disk
                )
                if not line.is_empty:
                    lines.append(line)
                    kinds.append("street")
                    named.append(None)

    clipped = shapely.intersection(np.array(lines, dtype=object), land)
    keep = ~shapely.is_empty(clipped) & (shapely.length(clipped) > 50.0)
    new_names = iter(place_names(rng, int(sum(1 for n in named if n is None))))
    suffix = {"radial": "大道", "connector": "公路", "street": "路"}
    out_lines, out_names, out_kinds = [], [], []
    for line, kind, name, ok in zip(clipped, kinds, named, keep, strict=True):
        label = name if name is not None else next(new_names) + suffix[kind]
        if ok:
            out_lines.append(line)
            out_names.append(label)
            out_kinds.append(kind)
    return RoadNetwork(out_lines, out_names, out_kinds)


def sample_on_roads(
    rng: np.random.Generator,
    roads: RoadNetwork,
    n: int,
    weight_at: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    *,
    offset_m: tuple[float, float] = (3.0, 15.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x, y, bearing_deg, road_index) of ``n`` positions beside the roads.

    A segment is drawn with probability ∝ length × kind weight × ``weight_at(midpoint)``, a
    point uniformly along it, then pushed sideways by ``offset_m`` (a pole at the kerb). The
    bearing (0 = north, clockwise) runs along the road, in either direction.
    """
    seg_xy: list[np.ndarray] = []
    seg_road: list[np.ndarray] = []
    for i, line in enumerate(roads.lines):
        for part in shapely.get_parts(line):
            c = shapely.get_coordinates(part)
            if len(c) >= 2:
                seg_xy.append(np.hstack([c[:-1], c[1:]]))
                seg_road.append(np.full(len(c) - 1, i))
    segs = np.vstack(seg_xy)
    road_of = np.concatenate(seg_road)
    dx = segs[:, 2] - segs[:, 0]
    dy = segs[:, 3] - segs[:, 1]
    length = np.hypot(dx, dy)
    kind_w = np.array([KIND_WEIGHT[roads.kinds[r]] for r in road_of])
    w = length * kind_w
    if weight_at is not None:
        w = w * weight_at(0.5 * (segs[:, 0] + segs[:, 2]), 0.5 * (segs[:, 1] + segs[:, 3]))
    pick = rng.choice(len(segs), size=n, p=w / w.sum())
    t = rng.random(n)
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0) * rng.uniform(*offset_m, size=n)
    ux = dx[pick] / np.maximum(length[pick], 1e-9)
    uy = dy[pick] / np.maximum(length[pick], 1e-9)
    x = segs[pick, 0] + t * dx[pick] - uy * side
    y = segs[pick, 1] + t * dy[pick] + ux * side
    bearing = np.degrees(np.arctan2(ux, uy)) % 360.0
    bearing = np.where(rng.random(n) < 0.5, bearing, (bearing + 180.0) % 360.0)
    return x, y, bearing, road_of[pick]
