"""``/layers/<layer>.geojson``: ETag revalidation and gzip transfer of the static map layers."""

from __future__ import annotations

import gzip
import json

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
