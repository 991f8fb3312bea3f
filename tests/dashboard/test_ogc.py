"""OGC API – Features at /ogc: documents, paging, bbox; GDAL's OAPIF driver on a live server."""

from __future__ import annotations

import json
import subprocess

import pytest

from bench.incident_city import LAT0, LON0, free_port, grid_center, start_server
from dashboard.app import create_app
from dashboard.routes.ogc import COLLECTIONS
from layers.settings import load_settings
from tests.absent import require_executable
from tests.dbs import new_db
from tests.helpers_auth import bearer


@pytest.fixture(scope="module")
def app(db_backend, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ogc")
    db = new_db(tmp / "gs.sqlite", db_backend)
    from layers.services import incidents

    with db.session() as s:
        lon, lat = grid_center(1, 1)
        incidents.create_incident(s, {"lon": lon, "lat": lat, "category": "ENV",
                                      "reporter_phone": "13812345678", "reporter_name": "王五"})  # fmt: skip
    settings = load_settings(db_url=db.url, data_dir=tmp, seed_on_start=False, simulator=False)
    return create_app(settings, db=db, start_background=False)


@pytest.fixture(scope="module")
def gis(app):
    return bearer(app, "gis")


def get(app, path, headers):
    return app.server.test_client().get(path, headers=headers)


def test_landing_conformance_and_collections(app, gis):
    r = get(app, "/ogc", gis)
    assert r.status_code == 200
    rels = {lk["rel"] for lk in r.get_json()["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= rels
    conf = get(app, "/ogc/conformance", gis).get_json()["conformsTo"]
    assert any(c.endswith("/conf/core") for c in conf) and any(
        c.endswith("/conf/geojson") for c in conf
    )
    cols = get(app, "/ogc/collections", gis).get_json()["collections"]
    assert [c["id"] for c in cols] == list(COLLECTIONS)
    grids = next(c for c in cols if c["id"] == "grids")
    assert grids["extent"]["spatial"]["bbox"][0] == pytest.approx(
        [LON0, LAT0, LON0 + 0.08, LAT0 + 0.04]
    )
    assert get(app, "/ogc/collections/grids", gis).get_json()["id"] == "grids"
    assert get(app, "/ogc/collections/planets", gis).status_code == 404
    assert get(app, "/ogc/api", gis).get_json()["openapi"].startswith("3.0")


def test_items_paging_with_next_links(app, gis):
    seen = []
    r = get(app, "/ogc/collections/grids/items?limit=5", gis)
    assert r.mimetype == "application/geo+json"
    doc = r.get_json()
    assert doc["numberMatched"] == 16 and doc["numberReturned"] == 5
    while True:
        seen += [f["id"] for f in doc["features"]]
        nxt = [lk["href"] for lk in doc["links"] if lk["rel"] == "next"]
        if not nxt:
            break
        doc = get(app, nxt[0].replace("http://localhost", ""), gis).get_json()
    assert len(seen) == len(set(seen)) == 16
    f = doc["features"][0]
    assert f["type"] == "Feature" and f["geometry"]["type"] == "Polygon"
    assert len(f["properties"]["code"]) == 14


def test_bbox_filter_and_single_item(app, gis):
    west = f"{LON0},{LAT0},{LON0 + 0.015},{LAT0 + 0.015}"  # columns 0-1, row 0
    doc = get(app, f"/ogc/collections/grids/items?bbox={west}", gis).get_json()
    assert doc["numberMatched"] == 2
    gid = doc["features"][0]["id"]
    one = get(app, f"/ogc/collections/grids/items/{gid}", gis)
    assert one.status_code == 200 and one.get_json()["id"] == gid
    assert get(app, "/ogc/collections/grids/items/999999", gis).status_code == 404
    for q in ("bbox=1,2,3", "bbox=a,b,c,d", "limit=0", "limit=x", "colour=red", "f=xml",
              "bbox=10,5,0,0"):  # fmt: skip
        r = get(app, f"/ogc/collections/grids/items?{q}", gis)
        assert r.status_code == 400, q
        assert r.get_json()["code"] == "InvalidParameterValue"


def test_no_secrets_or_reporters_leak(app, gis):
    cams = get(app, "/ogc/collections/cameras/items", gis).get_json()["features"]
    assert cams and all("stream_url" not in f["properties"] for f in cams)
    incs = get(app, "/ogc/collections/incidents/items", gis).get_json()["features"]
    text = json.dumps(incs, ensure_ascii=False)
    assert incs and "13812345678" not in text and "王五" not in text
    staff = get(app, "/ogc/collections/responders/items?limit=1000", gis).get_json()["features"]
    assert staff and all("****" in f["properties"]["phone"] for f in staff)


def test_every_collection_serves_geojson(app, gis):
    for name in COLLECTIONS:
        doc = get(app, f"/ogc/collections/{name}/items?limit=1000", gis).get_json()
        assert doc["numberMatched"] == len(doc["features"]) > 0, name


def test_access_needs_a_gis_role(app):
    c = app.server.test_client()
    r = c.get("/ogc/collections")
    assert r.status_code == 401 and "Basic" in r.headers.get("WWW-Authenticate", "")
    assert c.get("/ogc", headers=bearer(app, "intake")).status_code == 403


@pytest.mark.slow
def test_gdal_oapif_lists_and_reads_layers_from_a_live_server(db_backend, tmp_path):
    """GDAL's OAPIF driver (gdal-bin) against a real ``python -m dashboard`` on 127.0.0.1."""
    require_executable("ogrinfo", "apt-get install gdal-bin; .ci/apt-packages.txt")
    db = new_db(tmp_path / "live.sqlite", db_backend)
    from layers.services import users

    with db.session() as s:
        users.create_user(s, "qgis-user", "operator", "correct-horse-battery", actor="tests",
                          must_change_password=False)  # fmt: skip
    db.dispose()
    port = free_port()
    proc = start_server(db.url, tmp_path, port)
    try:
        auth = ["--config", "GDAL_HTTP_AUTH", "BASIC",
                "--config", "GDAL_HTTP_USERPWD", "qgis-user:correct-horse-battery"]  # fmt: skip
        url = f"OAPIF:http://127.0.0.1:{port}/ogc"
        out = subprocess.run(["ogrinfo", "-ro", "-q", *auth, url], capture_output=True,
                             text=True, timeout=120, check=False)  # fmt: skip
        assert out.returncode == 0, out.stderr
        for name in COLLECTIONS:
            assert name in out.stdout, (name, out.stdout)
        grids = subprocess.run(["ogrinfo", "-ro", "-so", *auth, url, "grids"],
                               capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert grids.returncode == 0, grids.stderr
        assert "Feature Count: 16" in grids.stdout, grids.stdout
        denied = subprocess.run(["ogrinfo", "-ro", "-q", url], capture_output=True, text=True,
                                timeout=60, check=False)  # fmt: skip
        assert denied.returncode != 0
    finally:
        proc.kill()
        proc.wait(10)


def test_paging_cache_follows_layer_changes(app, gis):
    import shapely

    from layers.models import Grid

    before = get(app, "/ogc/collections/grids/items?limit=1", gis).get_json()["numberMatched"]
    db = app.server.config["GRIDSIGHT"].db
    with db.session() as s:
        g = Grid(code="53010200100199", name="新网格", community_id=db.city["communities"][0])
        g.geometry = shapely.box(LON0 + 0.0, LAT0 - 0.01, LON0 + 0.01, LAT0)
        s.add(g)
    after = get(app, "/ogc/collections/grids/items?limit=1", gis).get_json()["numberMatched"]
    assert after == before + 1
