"""Seed cameras along the simulated roads: class mix, GB/T 28181 IDs, cones, status."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import numpy as np
import shapely

from layers.citygen import roads

if TYPE_CHECKING:  # geo and the services pull in numba, scipy and pandas: import them late
    from geo.assign import GridIndex
from layers.seed.bulk import datetimes
from layers.seed.districts import SeedError
from layers.seed.plan import Plan, Scale

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


def camera_rows(plan: Plan, cfg: Scale, rngs, index: GridIndex, now: dt.datetime) -> list[dict]:
    """Return the cameras' row dicts: along the roads by class, with GB/T 28181 IDs and cones."""
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
    last_seen = datetimes(np.floor(now_s - age_s))

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
