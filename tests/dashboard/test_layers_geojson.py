"""``/layers/<layer>.geojson``: ETag revalidation and gzip transfer of the static map layers."""

from __future__ import annotations

import gzip
import json

import pytest
import shapely

from dashboard.app import create_app
from layers.models import AdminArea, Grid
from layers.settings import load_settings
from tests.helpers_auth import login


def test_gzip_and_etag(tmp_path):
    settings = load_settings(db_url=f"sqlite:///{tmp_path/'gs.sqlite'}", data_dir=tmp_path,
                             seed_on_start=False, simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    db = app.server.config["GRIDSIGHT"].db
    with db.session() as s:
        comm = AdminArea(level="community", code="530102001001", name="社区")
        comm.geometry = shapely.box(102.7, 25.0, 102.72, 25.01)
        s.add(comm)
        s.flush()
        for i in range(20):
            g = Grid(code=f"530102001001{i + 1:02d}", name=f"第{i + 1}网格", community_id=comm.id)
            g.geometry = shapely.box(102.7 + 0.001 * i, 25.0, 102.701 + 0.001 * i, 25.01)
            s.add(g)
    client = app.server.test_client()
    login(client, app, "operator")
    plain = client.get("/layers/grids.geojson", headers={"Accept-Encoding": "identity"})
    packed = client.get("/layers/grids.geojson", headers={"Accept-Encoding": "gzip, deflate"})
    assert plain.status_code == packed.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip"
    assert len(packed.data) < len(plain.data) / 2
    doc = json.loads(gzip.decompress(packed.data))
    assert doc == json.loads(plain.data) and len(doc["features"]) == 20
    again = client.get("/layers/grids.geojson", headers={"If-None-Match": plain.headers["ETag"]})
    assert again.status_code == 304


def test_cameras_layer_is_not_answered_304_after_a_status_or_position_change(db_backend, tmp_path):
    from sqlalchemy import text

    from bench.operator_city import build_city
    from layers.services import cameras
    from tests.dbs import db_url

    settings = load_settings(db_url=db_url(tmp_path / "gs.sqlite", db_backend),
                             data_dir=tmp_path, seed_on_start=False, simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    db = app.server.config["GRIDSIGHT"].db
    cam = build_city(db, incidents=0)["cameras"][0]
    client = app.server.test_client()
    login(client, app, "operator")

    def status_and_lon(resp) -> tuple[str, float]:
        feat = next(f for f in json.loads(resp.data)["features"] if f["id"] == cam)
        return feat["properties"]["status"], feat["geometry"]["coordinates"][0]

    first = client.get("/layers/cameras.geojson")
    assert first.status_code == 200 and status_and_lon(first)[0] == "online"
    same = client.get("/layers/cameras.geojson", headers={"If-None-Match": first.headers["ETag"]})
    assert same.status_code == 304
    cameras.set_status(db, cam, "offline")  # the video engine's call
    second = client.get("/layers/cameras.geojson",
                        headers={"If-None-Match": first.headers["ETag"]})  # fmt: skip
    assert second.status_code == 200 and status_and_lon(second)[0] == "offline"
    with db.session() as s:  # plain SQL, as a GIS tool would
        s.execute(text("UPDATE cameras SET lon = lon + 0.01 WHERE id = :id"), {"id": cam})
    third = client.get("/layers/cameras.geojson",
                       headers={"If-None-Match": second.headers["ETag"]})  # fmt: skip
    assert third.status_code == 200
    assert status_and_lon(third)[1] == pytest.approx(status_and_lon(second)[1] + 0.01, abs=1e-6)
