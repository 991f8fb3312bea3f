"""Layer read services against a real SQLite database holding a tiny hand-built city."""

from __future__ import annotations

import datetime as dt
import json

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import Point, box

from geo.measure import haversine_m
from layers.db import Database
from layers.models import AdminArea, Camera, Center, Grid, Incident, Responder
from layers.services import (
    NotFoundError,
    ServiceError,
    areas,
    cameras,
    centers,
    check_bbox,
    grids,
    responders,
    to_geojson,
)
from layers.services.scope import Scope
from tests.dbs import db_url

# An L-shaped community: its bbox covers (102.65..102.70, 25.00..25.05) but the shape does not.
L_SHAPE = shapely.Polygon(
    [(102.60, 24.95), (102.70, 24.95), (102.70, 25.00), (102.65, 25.00), (102.65, 25.05),
     (102.60, 25.05)]
)  # fmt: skip


@pytest.fixture
def db(db_backend, tmp_path):
    database = Database(db_url(tmp_path / "svc.sqlite", db_backend))
    database.migrate()
    with database.session() as s:

        def area(level, code, name, geom, parent=None):
            a = AdminArea(level=level, code=code, name=name, parent_id=parent, area_m2=1.0)
            a.geometry = geom
            s.add(a)
            s.flush()
            return a.id

        city = area("city", "530100", "昆明市", box(102.6, 24.95, 102.8, 25.05))
        d1 = area("district", "530102", "五华区", box(102.6, 24.95, 102.7, 25.05), city)
        d2 = area("district", "530103", "盘龙区", box(102.7, 24.95, 102.8, 25.05), city)
        s1 = area("street", "530102001", "华山街道", box(102.6, 24.95, 102.7, 25.05), d1)
        s2 = area("street", "530103001", "拓东街道", box(102.7, 24.95, 102.8, 25.05), d2)
        c1 = area("community", "530102001001", "翠湖社区", L_SHAPE, s1)
        c2 = area("community", "530103001001", "金碧社区", box(102.7, 24.95, 102.8, 25.05), s2)
        g1 = Grid(code="53010200100101", name="翠湖一格", community_id=c1, area_m2=2.5e6)
        g1.geometry = box(102.60, 24.95, 102.65, 25.05)
        g2 = Grid(code="53010300100101", name="金碧一格", community_id=c2, area_m2=1e7)
        g2.geometry = box(102.70, 24.95, 102.80, 25.05)
        s.add_all([g1, g2])
        s.flush()
        s.add_all(
            [
                Camera(gb_id="53010200001320000001", name="翠湖北门", cls=1, lon=102.62,
                       lat=24.97, stream_url="rtsp://admin:hunter2@10.1.2.3:554/ch1",
                       status="online", grid_id=g1.id),
                Camera(gb_id="53010200001310000002", name="文林街", cls=2, lon=102.63,
                       lat=25.02, status="offline", grid_id=g1.id),
                Camera(gb_id="53010300001320000003", name="金碧路", cls=3, lon=102.75,
                       lat=25.00, grid_id=g2.id),
            ]
        )  # fmt: skip
        ctr = Center(level="county", name="五华区综治中心", area_id=d1, lon=102.66, lat=25.01)
        s.add_all([ctr, Center(level="township", name="华山街道综治中心", area_id=s1,
                               lon=102.62, lat=25.03)])  # fmt: skip
        s.flush()
        s.add_all(
            [
                Responder(name="张三", kind="grid_worker", grid_id=g1.id, phone="13812345678",
                          lon=102.61, lat=24.96),
                Responder(name="李四", kind="grid_worker", grid_id=g1.id, phone="13900001111",
                          available=False, lon=102.62, lat=24.97),
                Responder(name="王五", kind="grid_worker", grid_id=g2.id, phone="13700002222"),
                Responder(name="赵六", kind="center_staff", center_id=ctr.id, phone="0871-1"),
            ]
        )  # fmt: skip
        now = dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC)
        for status in ("collected", "dispatched", "closed"):
            s.add(Incident(lon=102.62, lat=24.97, category_code="ENV", status=status,
                           created_at=now, grid_id=g1.id))  # fmt: skip
    return database


# --- areas ------------------------------------------------------------------------------
def test_areas_read_gdf_levels_and_parents(db):
    gdf = areas.read_gdf(db, scope=Scope.ALL)
    assert isinstance(gdf, gpd.GeoDataFrame) and gdf.crs.to_epsg() == 4326
    assert list(gdf.level) == ["city", "district", "district", "street", "street",
                               "community", "community"]  # fmt: skip
    d = areas.read_gdf(db, level="district", scope=Scope.ALL)
    assert list(d.code) == ["530102", "530103"]
    assert set(d.parent_code) == {"530100"}
    assert list(areas.read_gdf(db, parent_code="530102", scope=Scope.ALL).code) == ["530102001"]
    assert list(
        areas.read_gdf(db, level=["street", "community"], codes=["530103001"], scope=Scope.ALL).code
    ) == ["530103001"]
    with pytest.raises(ServiceError, match="level: 'county'"):
        areas.read_gdf(db, level="county", scope=Scope.ALL)


def test_bbox_uses_index_then_exact_intersects(db):
    window = (102.66, 25.01, 102.69, 25.04)  # inside the L's bbox, outside the L itself
    got = areas.read_gdf(db, level="community", bbox=window, scope=Scope.ALL)
    assert list(got.code) == []
    got = areas.read_gdf(
        db, level="community", bbox=(102.61, 25.01, 102.69, 25.04), scope=Scope.ALL
    )
    assert list(got.code) == ["530102001001"]
    assert list(grids.read_gdf(db, bbox=(102.71, 24.96, 102.72, 24.97), scope=Scope.ALL).code) == [
        "53010300100101"
    ]
    with pytest.raises(ServiceError, match="bbox"):
        check_bbox((1, 2, 0, 3))
    with pytest.raises(ServiceError, match="bbox"):
        check_bbox((1, 2, 3))


def test_city_outline_and_counts(db):
    assert areas.city_outline(db).equals(box(102.6, 24.95, 102.8, 25.05))
    assert areas.counts_by_level(db) == {"city": 1, "district": 2, "street": 2, "community": 2}
    assert areas.get_area(db, "530103").name == "盘龙区"
    with pytest.raises(NotFoundError):
        areas.get_area(db, "999999")


def test_to_geojson_is_plain_json(db, tmp_path):
    fc = to_geojson(cameras.read_gdf(db, scope=Scope.ALL))
    text = json.dumps(fc, ensure_ascii=False)
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 3
    first = next(f for f in fc["features"] if f["properties"]["name"] == "翠湖北门")
    assert first["geometry"] == {"type": "Point", "coordinates": [102.62, 24.97]}
    assert first["properties"]["last_seen"] is None and first["properties"]["cls"] == 1
    assert "hunter2" not in text
    projected = grids.read_gdf(db, scope=Scope.ALL).to_crs(32648)
    back = to_geojson(projected)["features"][0]["geometry"]["coordinates"][0][0]
    assert back[0] == pytest.approx(102.65, abs=1e-9) or back[0] == pytest.approx(102.60, abs=1e-9)
    with pytest.raises(ServiceError, match="no CRS"):
        to_geojson(gpd.GeoDataFrame({"a": [1]}, geometry=[Point(0, 0)]))


# --- grids ------------------------------------------------------------------------------
def test_grids_read_and_get(db):
    gdf = grids.read_gdf(db, scope=Scope.ALL)
    assert list(gdf.code) == ["53010200100101", "53010300100101"]
    assert list(gdf.community_name) == ["翠湖社区", "金碧社区"]
    assert list(grids.read_gdf(db, community_code="530103001001", scope=Scope.ALL).code) == [
        "53010300100101"
    ]
    g = grids.get_grid(db, "53010200100101")
    assert grids.get_grid(db, g.id).code == g.code
    with pytest.raises(NotFoundError):
        grids.get_grid(db, 999)
    with pytest.raises(NotFoundError):
        grids.get_grid(db, "abc")


def test_grid_card_masks_worker_phones_and_counts(db):
    g = grids.get_grid(db, "53010200100101")
    card = grids.grid_card(db, g.id)
    assert card["code"] == "53010200100101"
    assert card["community"] == {"code": "530102001001", "name": "翠湖社区"}
    assert card["street"]["code"] == "530102001" and card["district"]["name"] == "五华区"
    assert [w["phone"] for w in card["workers"]] == ["138****5678", "139****1111"]
    assert "13812345678" not in json.dumps(card, ensure_ascii=False)
    assert card["counts"] == {"cameras": 2, "cameras_online": 1, "incidents": 3,
                              "incidents_open": 2, "responders": 2}  # fmt: skip
    assert card["area_km2"] == 2.5


# --- cameras ----------------------------------------------------------------------------
def test_public_dict_never_contains_the_stream_credentials(db):
    cam = cameras.get_camera(db, "53010200001320000001")
    assert "hunter2" in cam.stream_url  # stored for the video engine ...
    public = cameras.public_dict(cam)
    assert "hunter2" not in json.dumps(public, default=str)  # ... never displayed
    assert "admin" not in public["stream_url"] and "10.1.2.3:554" in public["stream_url"]
    assert public["cls_name"] == "一类"
    for row in cameras.list_cameras(db, scope=Scope.ALL):
        assert "hunter2" not in row["stream_url"]
    assert "hunter2" not in "".join(cameras.read_gdf(db, scope=Scope.ALL).stream_url)


SECRET_URLS = [
    "rtsp://admin:Hunter2pw@10.1.2.3:554/Streaming/Channels/101",
    "rtsp://viewer@10.1.2.4/live",
    "http://10.1.2.5/snap.jpg?token=Hunter2tk&channel=1",
    "rtsp://10.1.2.6/h264?user=admin&password=Hunter2pw&subtype=0",
    "http://10.1.2.7/mjpg?api_key=Hunter2ak;pwd=Hunter2pd",
    "https://cdn.example/cam8.m3u8?X-Amz-Signature=Hunter2sg&access_token=Hunter2at",
    "http://10.1.2.9/video#auth=Hunter2fr",
]


def test_a_camera_listing_never_shows_userinfo_or_secret_parameters(db, tmp_path):
    """Every way cameras are listed (dict, list, GeoDataFrame, export file) is scrubbed."""
    from layers.io import export_layer

    with db.session() as s:
        for i, url in enumerate(SECRET_URLS):
            s.add(Camera(gb_id=f"5301020000132{i + 10:07d}", name=f"密{i}", cls=1,
                         lon=102.62, lat=24.97, stream_url=url))  # fmt: skip
    shown = [
        json.dumps(cameras.list_cameras(db, scope=Scope.ALL), default=str, ensure_ascii=False),
        json.dumps(to_geojson(cameras.read_gdf(db, scope=Scope.ALL)), ensure_ascii=False),
        json.dumps(
            [
                cameras.public_dict(cameras.get_camera(db, f"5301020000132{i + 10:07d}"))
                for i in range(len(SECRET_URLS))
            ],
            default=str,
        ),  # fmt: skip
    ]
    export_layer(db, "cameras", tmp_path / "cams.csv")
    shown.append((tmp_path / "cams.csv").read_text(encoding="utf-8-sig"))
    for text in shown:
        assert "Hunter2" not in text and "admin:" not in text and "viewer@" not in text
    listed = {c["name"]: c["stream_url"] for c in cameras.list_cameras(db, scope=Scope.ALL)}
    assert listed["密0"] == "rtsp://***@10.1.2.3:554/Streaming/Channels/101"
    assert listed["密2"] == "http://10.1.2.5/snap.jpg?token=***&channel=1"
    assert listed["密3"] == "rtsp://10.1.2.6/h264?user=admin&password=***&subtype=0"


def test_cameras_filters_and_counts(db):
    assert list(cameras.read_gdf(db, cls=1, scope=Scope.ALL).gb_id) == ["53010200001320000001"]
    assert len(cameras.read_gdf(db, status=["online", "offline"], scope=Scope.ALL)) == 2
    assert list(cameras.read_gdf(db, bbox=(102.7, 24.9, 102.8, 25.1), scope=Scope.ALL).name) == [
        "金碧路"
    ]
    g2 = grids.get_grid(db, "53010300100101")
    assert [c["grid_code"] for c in cameras.list_cameras(db, grid_id=g2.id, scope=Scope.ALL)] == [
        g2.code
    ]
    assert cameras.counts(db, scope=Scope.ALL) == {
        "by_class": {1: 1, 2: 1, 3: 1},
        "by_status": {"online": 1, "offline": 1, "stale": 0, "stalled": 0, "unknown": 1},
        "total": 3,
    }
    assert cameras.counts_by_class_status(db)[(3, "unknown")] == 1
    with pytest.raises(ServiceError, match="status"):
        cameras.read_gdf(db, status="broken", scope=Scope.ALL)


def test_set_status_validates_and_writes_back(db):
    seen = dt.datetime(2026, 11, 23, 16, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    cam = cameras.set_status(db, "53010300001320000003", "stale", seen)
    assert cam.status == "stale"
    again = cameras.get_camera(db, cam.id)
    assert again.status == "stale" and again.last_seen == seen
    assert again.last_seen.tzinfo is not None
    feature = to_geojson(cameras.read_gdf(db, status="stale", scope=Scope.ALL))["features"][0]
    assert feature["properties"]["last_seen"] == "2026-11-23T08:30:00+00:00"
    cameras.set_status(db, cam.id, "online")  # last_seen kept when not given
    assert cameras.get_camera(db, cam.id).last_seen == seen
    with pytest.raises(cameras.CameraStatusError, match="status: 'up'"):
        cameras.set_status(db, cam.id, "up", seen)
    with pytest.raises(cameras.CameraStatusError, match="naive"):
        cameras.set_status(db, cam.id, "online", dt.datetime(2026, 11, 23, 8))
    with pytest.raises(NotFoundError):
        cameras.set_status(db, "53010300001329999999", "online")
    with db.session() as s:  # with a caller's session the caller commits
        cameras.set_status(s, cam.id, "offline")
        s.rollback()
    assert cameras.get_camera(db, cam.id).status == "online"


# --- centers ----------------------------------------------------------------------------
def test_centers(db):
    gdf = centers.read_gdf(db, scope=Scope.ALL)
    assert list(gdf.level) == ["county", "township"]
    assert list(gdf.area_code) == ["530102", "530102001"]
    assert gdf.geometry.iloc[0].equals(Point(102.66, 25.01))
    assert list(centers.read_gdf(db, level="township", scope=Scope.ALL).name) == [
        "华山街道综治中心"
    ]
    assert list(centers.read_gdf(db, area_code="530102", scope=Scope.ALL).name) == [
        "五华区综治中心"
    ]
    assert centers.read_gdf(db, bbox=(102.7, 24.9, 102.8, 25.1), scope=Scope.ALL).empty
    assert centers.counts_by_level(db) == {"city": 0, "county": 1, "township": 1, "village": 0}
    with pytest.raises(ServiceError, match="level"):
        centers.list_centers(db, level="province", scope=Scope.ALL)


# --- responders -------------------------------------------------------------------------
def test_responders_positions_and_masking(db):
    rows = {r["name"]: r for r in responders.list_responders(db, scope=Scope.ALL)}
    assert rows["张三"]["phone"] == "138****5678"
    # no own position: the grid's representative point, or the center's location
    assert box(102.70, 24.95, 102.80, 25.05).contains(
        Point(rows["王五"]["lon"], rows["王五"]["lat"])
    )
    assert (rows["赵六"]["lon"], rows["赵六"]["lat"]) == (102.66, 25.01)
    assert len(responders.read_gdf(db, kind="grid_worker", scope=Scope.ALL)) == 3
    with pytest.raises(ServiceError, match="kind"):
        responders.list_responders(db, kind="boss", scope=Scope.ALL)


def test_available_near_orders_by_distance_and_skips_unavailable(db):
    near = responders.available_near(db, 102.611, 24.961, n=2, scope=Scope.ALL)
    assert [r["name"] for r in near] == ["张三", "赵六"]
    assert near[0]["distance_m"] < near[1]["distance_m"]
    assert near[0]["distance_m"] == pytest.approx(
        float(haversine_m(102.611, 24.961, 102.61, 24.96)), rel=1e-9
    )
    assert "李四" not in [
        r["name"] for r in responders.available_near(db, 102.62, 24.97, 10, scope=Scope.ALL)
    ]
    assert len(responders.available_near(db, 102.62, 24.97, 10, scope=Scope.ALL)) == 3
    assert [
        r["name"]
        for r in responders.available_near(
            db, 102.62, 24.97, 5, kind="center_staff", scope=Scope.ALL
        )
    ] == ["赵六"]
    with pytest.raises(ServiceError, match="lon/lat"):
        responders.available_near(db, 200, 24.97, 3, scope=Scope.ALL)
    with pytest.raises(ServiceError, match="n:"):
        responders.available_near(db, 102.6, 24.97, 0, scope=Scope.ALL)
    responders.set_available(db, near[0]["id"], False)
    assert responders.available_near(db, 102.611, 24.961, 1, scope=Scope.ALL)[0]["name"] != "张三"


def test_haversine_known_distance():
    # one degree of latitude is ~111.2 km
    assert float(haversine_m(102.0, 25.0, 102.0, 26.0)) == pytest.approx(111_195, rel=1e-3)
