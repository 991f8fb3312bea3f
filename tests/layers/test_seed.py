"""The demo-city seed: tiling, containment, codes, workflow consistency, determinism, CLI.

Real SQLite files in tmp_path. The demo scale is seeded once per module; the tiny scale
(~60 grids) serves the determinism, refusal and CLI tests.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json

import numpy as np
import pytest
import shapely
from sqlalchemy import func, select, text

from layers.__main__ import main
from layers.citygen.history import WorkingClock
from layers.codes import (
    validate_gb28181,
    validate_grid_code,
    validate_stat_code,
    validate_street_code,
)
from layers.db import Database
from layers.models import AdminArea, Camera, Center, Grid, Incident, IncidentEvent, User
from layers.seed import CityExistsError, DistrictsError, load_districts, seed_city
from tests.dbs import db_url

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
STAGES = ("created_at", "registered_at", "dispatched_at", "handled_at", "reported_at",
          "closed_at", "evaluated_at")  # fmt: skip
STATUS_OF_STAGE = ("collected", "registered", "dispatched", "handling", "reported", "closed",
                   "evaluated")  # fmt: skip


def _seed(tmp_path, name: str, db_backend: str = "sqlite", **kwargs) -> tuple[Database, dict]:
    db = Database(db_url(tmp_path / name, db_backend))
    kwargs.setdefault("now", NOW)
    kwargs.setdefault("progress", False)
    return db, seed_city(db, **kwargs)


@pytest.fixture(scope="module")
def demo(db_backend, tmp_path_factory):
    db, counts = _seed(
        tmp_path_factory.mktemp("demo"), "demo.sqlite", db_backend=db_backend, scale="demo", seed=42
    )
    yield db, counts
    db.dispose()


@pytest.fixture(scope="module")
def tiny(db_backend, tmp_path_factory):
    db, counts = _seed(
        tmp_path_factory.mktemp("tiny"), "tiny.sqlite", db_backend=db_backend, scale="tiny", seed=7
    )
    yield db, counts
    db.dispose()


def _areas(db: Database):
    with db.session() as s:
        areas = s.execute(select(AdminArea.id, AdminArea.level, AdminArea.code,
                                 AdminArea.parent_id, AdminArea.geom_wkb)).all()  # fmt: skip
        grids = s.execute(select(Grid.id, Grid.code, Grid.community_id, Grid.geom_wkb)).all()
    return areas, grids


def assert_tiles(parent: shapely.Geometry, children: list, label: str) -> None:
    """Children cover the parent exactly, without gaps or overlaps."""
    area = parent.area
    total = sum(c.area for c in children)
    assert abs(total - area) <= 1e-6 * area, f"{label}: child areas {total} vs parent {area}"
    union = shapely.union_all(children)
    gap = shapely.symmetric_difference(union, parent).area
    assert gap <= 1e-9 * area, f"{label}: union differs from the parent by {gap / area:.2e}"
    geoms = np.array(children, dtype=object)
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = left < right
    if pairs.any():
        overlap = shapely.area(shapely.intersection(geoms[left[pairs]], geoms[right[pairs]]))
        assert overlap.max() <= 1e-12 * area, f"{label}: children overlap by {overlap.max()}"


def _check_hierarchy(db: Database) -> None:
    areas, grids = _areas(db)
    geom = {a.id: shapely.from_wkb(a.geom_wkb) for a in areas}
    assert all(shapely.is_valid(g) for g in geom.values())
    kids: dict[int, list] = collections.defaultdict(list)
    for a in areas:
        if a.parent_id is not None:
            kids[a.parent_id].append(geom[a.id])
    grid_kids: dict[int, list] = collections.defaultdict(list)
    for g in grids:
        grid_kids[g.community_id].append(shapely.from_wkb(g.geom_wkb))
    level = {a.id: a.level for a in areas}
    for parent_id, children in kids.items():
        assert_tiles(geom[parent_id], children, f"children of {level[parent_id]} {parent_id}")
    communities = [a.id for a in areas if a.level == "community"]
    assert set(grid_kids) == set(communities), "every community has grids, grids only there"
    for cid in communities:
        assert_tiles(geom[cid], grid_kids[cid], f"grids of community {cid}")


def test_demo_counts_in_advertised_ranges(demo):
    _, counts = demo
    assert counts["districts"] == 9
    assert 250 <= counts["grids"] <= 350
    assert 900 <= counts["cameras"] <= 1100
    assert 18_000 <= counts["incidents"] <= 22_000
    assert counts["streets"] < counts["communities"] < counts["grids"]
    assert counts["centers"] == 1 + counts["districts"] + counts["streets"] + counts["communities"]
    assert counts["categories"] == 25


def test_demo_levels_tile_without_gaps_or_overlaps(demo):
    db, _ = demo
    _check_hierarchy(db)
    areas, _ = _areas(db)
    city = [shapely.from_wkb(a.geom_wkb) for a in areas if a.level == "city"]
    assert len(city) == 1
    districts = [shapely.from_wkb(a.geom_wkb) for a in areas if a.level == "district"]
    assert_tiles(city[0], districts, "districts of the city")
    lon, lat = shapely.centroid(city[0]).x, shapely.centroid(city[0]).y
    assert abs(lon - 102.71) < 0.3 and abs(lat - 25.04) < 0.3  # Kunming, WGS-84


def test_grids_denser_downtown(demo):
    db, _ = demo
    with db.session() as s:
        rows = s.execute(select(Grid.area_m2, Grid.minx, Grid.maxx, Grid.miny, Grid.maxy)).all()
    area = np.array([r.area_m2 for r in rows])
    cx = np.array([(r.minx + r.maxx) / 2 for r in rows])
    cy = np.array([(r.miny + r.maxy) / 2 for r in rows])
    dist_km = np.hypot((cx - 102.71) * 101, (cy - 25.04) * 111)
    core, rural = area[dist_km < 8], area[dist_km > 25]
    assert len(core) > len(rural) / 2
    assert np.median(core) * 10 < np.median(rural)


def test_codes_valid_and_nested(demo):
    db, _ = demo
    areas, grids = _areas(db)
    code = {a.id: a.code for a in areas}
    for a in areas:
        if a.level == "street":
            assert validate_street_code(a.code)[:6] == code[a.parent_id]
        elif a.level == "community":
            assert validate_stat_code(a.code)[:9] == code[a.parent_id]
        elif a.level == "district":
            assert a.code.startswith("5301") and code[a.parent_id] == "530100"
    for g in grids:
        assert validate_grid_code(g.code).community_code == code[g.community_id]
    assert len({g.code for g in grids}) == len(grids)
    with db.session() as s:
        cams = s.execute(select(Camera.gb_id, Camera.grid_id)).all()
    district_of_grid = {g.id: code[g.community_id][:6] for g in grids}
    for c in cams:
        parsed = validate_gb28181(c.gb_id, region_prefix="5301")
        assert parsed.civil_code == district_of_grid[c.grid_id]
    assert len({c.gb_id for c in cams}) == len(cams)


def _points_in_one_grid(db: Database, lon, lat, grid_ids) -> None:
    _, grids = _areas(db)
    geoms = np.array([shapely.from_wkb(g.geom_wkb) for g in grids], dtype=object)
    ids = np.array([g.id for g in grids])
    hit_pt, hit_grid = shapely.STRtree(geoms).query(
        shapely.points(lon, lat), predicate="intersects"
    )
    per_point = np.bincount(hit_pt, minlength=len(lon))
    assert per_point.min() == 1 and per_point.max() == 1, "each point in exactly one grid"
    assert (ids[hit_grid[np.argsort(hit_pt)]] == np.asarray(grid_ids)).all(), "grid_id is right"


def test_every_camera_and_incident_in_exactly_one_grid(demo):
    db, _ = demo
    with db.session() as s:
        cams = s.execute(select(Camera.lon, Camera.lat, Camera.grid_id).order_by(Camera.id)).all()
        incs = s.execute(
            select(Incident.lon, Incident.lat, Incident.grid_id).order_by(Incident.id)
        ).all()
    for rows in (cams, incs):
        _points_in_one_grid(db, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def test_centers_inside_their_areas(demo):
    db, _ = demo
    areas, _ = _areas(db)
    geom = {a.id: shapely.from_wkb(a.geom_wkb) for a in areas}
    level = {a.id: a.level for a in areas}
    want = {"city": "city", "district": "county", "street": "township", "community": "village"}
    with db.session() as s:
        centers = s.scalars(select(Center)).all()
    assert collections.Counter(c.level for c in centers) == collections.Counter(
        want[level[a]] for a in geom
    )
    for c in centers:
        assert want[level[c.area_id]] == c.level
        assert shapely.contains_xy(geom[c.area_id], c.lon, c.lat), c.name
        assert c.name and c.services and c.hours and c.phone.startswith("0871-")


def test_cameras_class_mix_attributes_and_roads(demo):
    db, _ = demo
    with db.session() as s:
        cams = s.scalars(select(Camera)).all()
    n = len(cams)
    share = collections.Counter(c.cls for c in cams)
    assert abs(share[1] / n - 0.60) < 0.05
    assert abs(share[2] / n - 0.25) < 0.05
    assert abs(share[3] / n - 0.15) < 0.05
    status = collections.Counter(c.status for c in cams)
    assert status["online"] / n > 0.9 and status["offline"] > 0
    for c in cams:
        assert c.ptz_type in (1, 2, 3, 4) and c.use_type in (1, 2, 3)
        assert 30 <= c.range_m <= 150 and 0 <= c.azimuth < 360
        assert c.fov == 360 if c.ptz_type == 1 else 50 <= c.fov <= 110
        assert c.stream_url == "" and c.owner and c.name
        assert c.last_seen is not None and c.last_seen <= NOW
    lon = np.array([c.lon for c in cams])
    lat = np.array([c.lat for c in cams])
    downtown = np.hypot((lon - 102.71) * 101, (lat - 25.04) * 111) < 10
    assert downtown.mean() > 0.4  # mostly downtown, though downtown is a few % of the area


def test_incident_history_is_consistent(demo):
    db, _ = demo
    with db.session() as s:
        rows = s.execute(
            select(Incident.status, Incident.duplicate_of, Incident.due_at, Incident.priority,
                   Incident.reporter_name, Incident.source, Incident.category_code,
                   *(getattr(Incident, c) for c in STAGES))
        ).all()  # fmt: skip
    now = NOW.astimezone(dt.UTC)
    due = closed = on_time = 0
    for r in rows:
        stamps = [getattr(r, c) for c in STAGES]
        reached = [t for t in stamps if t is not None]
        assert reached == sorted(reached) and all(t <= now for t in reached)
        assert now - reached[0] <= dt.timedelta(days=90)
        if r.duplicate_of is not None:
            assert r.status == "closed" and r.closed_at is not None
            continue
        assert stamps[: len(reached)] == reached, "stages are reached in order"
        assert r.status == STATUS_OF_STAGE[len(reached) - 1]
        assert r.due_at > r.created_at
        if r.source in ("camera", "opinion", "api"):
            assert r.reporter_name == ""
        else:
            assert len(r.reporter_name) >= 2
        if r.due_at <= now:
            due += 1
            closed += r.closed_at is not None
            on_time += r.closed_at is not None and r.closed_at <= r.due_at
    assert 0.88 < closed / due < 0.97  # 结案率 ~93 %
    assert 0.65 < on_time / due < 0.85  # 按期结案率 ~76 %
    old_open = sum(
        1 for r in rows if r.closed_at is None and now - r.created_at > dt.timedelta(days=30)
    )
    assert 0 < old_open < 0.1 * len(rows)
    mix = collections.Counter(r.category_code for r in rows)
    weights = {c["code"]: c["weight"] for c in json.load(open(_categories_file()))["categories"]}
    assert set(mix) == {c for c, w in weights.items() if w > 0}
    assert mix.most_common(1)[0][0] == "ENV"  # the heaviest weight
    local_hour = collections.Counter((r.created_at.hour + 8) % 24 for r in rows)
    assert sum(local_hour[h] for h in range(9, 12)) > 3 * sum(local_hour[h] for h in range(2, 5))


def _categories_file():
    from layers.citygen.history import CATEGORIES_FILE

    return CATEGORIES_FILE


def test_incidents_routed_and_due_as_the_services_do(demo):
    from layers.services import sla
    from layers.services.spatial import locator

    db, _ = demo
    with db.session() as s:
        loc = locator(s)
        sla_of = dict(s.execute(text("SELECT code, sla_hours FROM categories")).all())
        sample = s.scalars(select(Incident).where(Incident.id % 97 == 0)).all()
        workers = dict(
            s.execute(text("SELECT grid_id, id FROM responders WHERE grid_id IS NOT NULL")).all()
        )
        staff_center = dict(s.execute(text("SELECT id, center_id FROM responders")).all())
        owner = dict(s.execute(text("SELECT code, owner_level FROM categories")).all())
    for inc in sample:
        assert inc.due_at == sla.deadline(inc.created_at, sla_of[inc.category_code], inc.priority)
        assert inc.center_id == loc.center_for(inc.grid_id, inc.escalation_level)
        if inc.escalation_level == "grid":
            assert inc.assignee_id == workers[inc.grid_id]
        else:
            assert staff_center[inc.assignee_id] == inc.center_id
        if inc.escalated_at is None:
            assert inc.escalation_level == owner[inc.category_code]


def test_no_escalation_backlog_and_events_logged(demo):
    """The app's escalation loop finds nothing to catch up; every stage has its event."""
    from layers.models import OPEN_STATUSES

    db, counts = demo
    now = NOW.astimezone(dt.UTC)
    with db.session() as s:
        backlog = s.scalar(
            select(func.count()).select_from(Incident).where(
                Incident.status.in_(OPEN_STATUSES), Incident.escalate_at <= now,
                Incident.escalation_level != "city", Incident.duplicate_of.is_(None))
        )  # fmt: skip
        assert backlog == 0
        n_events = s.scalar(select(func.count()).select_from(IncidentEvent))
        creates = s.scalar(
            select(func.count()).select_from(IncidentEvent).where(IncidentEvent.action == "create")
        )
        per_action = dict(
            s.execute(
                select(IncidentEvent.action, func.count()).group_by(IncidentEvent.action)
            ).all()
        )
        closed = s.scalar(
            select(func.count()).select_from(Incident).where(Incident.closed_at.is_not(None))
        )
    assert n_events == counts["incident_events"] and creates == counts["incidents"]
    assert per_action["close"] + per_action["merge"] == closed
    assert per_action["escalate"] > 0


def test_working_clock_matches_the_calendar():
    from layers.services.sla import default_calendar

    cal = default_calendar()
    rng = np.random.default_rng(3)
    start = NOW.timestamp() - 100 * 86400
    t = np.floor(start + rng.uniform(0, 90 * 86400, 300))
    hours = rng.choice([0.5, 2, 12, 24, 48, 72, 120, 180], size=300)
    clock = WorkingClock(cal, t.min(), NOW.timestamp() + 200 * 86400)
    got = clock.add(t, hours)
    for ti, hi, gi in zip(t, hours, got, strict=True):
        want = cal.add_working_hours(dt.datetime.fromtimestamp(ti, dt.UTC), float(hi))
        assert abs(want.timestamp() - gi) < 1e-3


def _checksums(db: Database) -> dict[str, str]:
    out = {}
    with db.engine.connect() as conn:
        for table in ("admin_areas", "grids", "centers", "responders", "cameras", "incidents",
                      "incident_events", "categories"):  # fmt: skip
            h = hashlib.sha256()
            for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id")):
                h.update(repr(tuple(row)).encode())
            out[table] = h.hexdigest()
    return out


def test_same_seed_same_city_other_seed_other_city(db_backend, tmp_path, tiny):
    db_a, counts_a = tiny
    db_b, counts_b = _seed(tmp_path, "b.sqlite", db_backend=db_backend, scale="tiny", seed=7)
    db_c, _ = _seed(tmp_path, "c.sqlite", db_backend=db_backend, scale="tiny", seed=8)
    assert counts_a == counts_b
    assert _checksums(db_a) == _checksums(db_b)
    differ = {k for k, v in _checksums(db_c).items() if v != _checksums(db_a)[k]}
    assert {"grids", "cameras", "incidents"} <= differ


def test_tiny_city_invariants(tiny):
    db, counts = tiny
    assert 40 <= counts["grids"] <= 80 and counts["cameras"] == 200
    _check_hierarchy(db)


def test_bulk_written_rows_read_back_through_the_orm(tiny):
    db, _ = tiny
    with db.session() as s:
        first = s.get(Incident, 1)
        assert first.created_at.tzinfo is not None
        assert first.created_at <= NOW and first.due_at > first.created_at
        total = s.scalar(select(func.count()).select_from(Incident))
        not_before = select(func.count()).select_from(Incident)
        assert s.scalar(not_before.where(Incident.created_at >= first.created_at)) == total
        assert s.scalar(not_before.where(Incident.created_at >= NOW)) == 0
        ev = s.scalars(select(IncidentEvent).where(IncidentEvent.incident_id == 1)).all()
        assert ev[0].action == "create" and ev[0].ts == first.created_at


def test_seeding_twice_refuses_then_force_wipes_layers_only(db_backend, tmp_path):
    db, counts = _seed(tmp_path, "twice.sqlite", db_backend=db_backend, scale="tiny", seed=1)
    with db.session() as s:
        s.add(User(username="keeper", role="admin", password_hash="x"))
    with pytest.raises(CityExistsError, match="force"):
        seed_city(db, scale="tiny", seed=2, now=NOW, progress=False)
    again = seed_city(db, scale="tiny", seed=1, now=NOW, progress=False, force=True)
    assert again == counts
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 1
        assert s.scalar(select(func.count()).select_from(Grid)) == counts["grids"]


def test_cli_seed_refuse_force_and_summary(db_backend, tmp_path, capsys):
    url = db_url(tmp_path / "cli.sqlite", db_backend)
    args = ["seed", "--scale", "tiny", "--db", url, "--no-progress", "--now", NOW.isoformat()]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "seeded 昆明市 (530100), scale tiny, seed 42, in" in out
    assert "grids" in out and "incidents" in out
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "already holds a city" in err and "--force" in err
    assert main([*args, "--force", "--seed", "5"]) == 0


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--districts", "{file}", "--crs", "mars"], "--crs"),
        (["--crs", "gcj02"], "--crs: applies to --districts only"),
        (["--districts", "{missing}"], "--districts"),
        (["--now", "yesterday"], "--now"),
        (["--now", "2026-11-23T08:00:00"], "timezone"),
    ],
)
def test_cli_usage_errors_exit_2_naming_the_option(db_backend, tmp_path, capsys, extra, fragment):
    f = tmp_path / "d.geojson"
    f.write_text('{"type": "FeatureCollection", "features": []}')
    extra = [e.format(file=f, missing=tmp_path / "nope.geojson") for e in extra]
    url = db_url(tmp_path / "u.sqlite", db_backend)
    assert main(["seed", "--scale", "tiny", "--db", url, "--no-progress", *extra]) == 2
    assert fragment in capsys.readouterr().err


def test_bad_scale_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["seed", "--scale", "huge"])
    assert e.value.code == 2 and "--scale" in capsys.readouterr().err


def test_districts_file_errors_are_named(tmp_path):
    import geopandas as gpd

    box = shapely.box(102.6, 25.0, 102.7, 25.1)
    no_code = gpd.GeoDataFrame({"name": ["五华区"]}, geometry=[box], crs=4326)
    with pytest.raises(DistrictsError, match="adcode"):
        load_districts(no_code)
    swapped = gpd.GeoDataFrame(
        {"name": ["五华区"], "adcode": ["530102"]},
        geometry=[shapely.box(25.0, 102.6, 25.1, 102.7)],
        crs=4326,
    )
    with pytest.raises(DistrictsError, match="swapped"):
        load_districts(swapped)
    two_cities = gpd.GeoDataFrame(
        {"name": ["五华区", "姑苏区"], "adcode": ["530102", "320508"]},
        geometry=[box, shapely.box(102.7, 25.0, 102.8, 25.1)],
        crs=4326,
    )
    with pytest.raises(DistrictsError, match="several cities"):
        load_districts(two_cities)
    overlapping = gpd.GeoDataFrame(
        {"name": ["五华区", "盘龙区"], "adcode": ["530102", "530103"]},
        geometry=[box, shapely.box(102.65, 25.0, 102.75, 25.1)],
        crs=4326,
    )
    d = load_districts(overlapping)
    assert shapely.intersection(d[0].geom, d[1].geom).area == 0
    assert d[0].geom.equals(box)


@pytest.mark.shared
def test_seed_from_real_kunming_districts(db_backend, tmp_path, shared_data):
    """Real outlines in GCJ-02: shifted to WGS-84 and tiled like the generated ones."""
    import geopandas as gpd

    path = shared_data / "kunming_districts_gcj02.geojson"
    db = Database(db_url(tmp_path / "km.sqlite", db_backend))
    counts = seed_city(db, scale="tiny", seed=3, districts=path, districts_crs="gcj02",
                       now=NOW, progress=False)  # fmt: skip
    assert counts["districts"] == 14
    _check_hierarchy(db)
    src = gpd.read_file(path)
    with db.session() as s:
        stored = {
            a.code: a for a in s.scalars(select(AdminArea).where(AdminArea.level == "district"))
        }
        cams = s.execute(select(Camera.lon, Camera.lat, Camera.grid_id).order_by(Camera.id)).all()
    assert set(stored) == set(src["adcode"])
    for code, name, geom in zip(src["adcode"], src["name"], src.geometry, strict=True):
        got = stored[code]
        assert got.name == name
        dx = (geom.centroid.x - got.geometry.centroid.x) * 101_000
        dy = (geom.centroid.y - got.geometry.centroid.y) * 111_000
        assert 100 < np.hypot(dx, dy) < 900, f"{name}: GCJ-02 → WGS-84 shift {dx:.0f}, {dy:.0f} m"
        assert abs(got.geometry.area - geom.area) / geom.area < 5e-3  # GCJ-02 bends areas a bit
    _points_in_one_grid(db, [c[0] for c in cams], [c[1] for c in cams], [c[2] for c in cams])
