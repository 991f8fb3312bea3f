"""Operator page through the app factory: refresh payloads, heat PNG, tiles, offline export."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from dash import Patch, no_update

from bench.operator_city import build_city, cell_center
from dashboard.app import create_app
from dashboard.operator import common, views
from dashboard.operator.live import live_refresh
from dashboard.operator.panes import map_component
from layers.services import mapdata
from layers.services.incidents import create_incident
from layers.services.scope import Scope
from layers.settings import Settings, load_settings
from tests.absent import require_executable
from tests.helpers_auth import login

REPO = Path(__file__).resolve().parents[2]
CDN_HOSTS = ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com", "code.jquery.com",
             "bootstrapcdn.com", "googleapis.com", "fontawesome", "openstreetmap.org")  # fmt: skip


def _settings(tmp_path, **kw) -> Settings:
    return load_settings(db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}", data_dir=tmp_path,
                         seed_on_start=False, simulator=False, **kw)  # fmt: skip


@pytest.fixture
def app_city(tmp_path):
    app = create_app(_settings(tmp_path), start_background=False)
    ids = build_city(app.server.config["GRIDSIGHT"].db, incidents=40)
    return app, ids


def _payload_bytes(value) -> int:
    from plotly.utils import PlotlyJSONEncoder

    def plain(v):
        if isinstance(v, Patch):
            return v.to_plotly_json()
        if v is no_update:
            return None
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    return len(json.dumps(plain(value), cls=PlotlyJSONEncoder))


def test_refresh_full_then_incremental(app_city):
    app, ids = app_city
    db = app.server.config["GRIDSIGHT"].db
    f = {"window": "24h"}
    with app.server.test_request_context():
        hide, live, feed, cursor, kpis, _ = live_refresh(f, None, None, "zh", Scope.ALL)
        assert isinstance(hide, Patch)
        full_counts = hide.to_plotly_json()["operations"][0]["params"]["value"]
        assert full_counts == {str(k): v for k, v in
                               mapdata.grid_counts(db, mapdata.parse_filter(f, scope=Scope.ALL)).items()}  # fmt: skip
        assert live == {"type": "FeatureCollection", "features": []}
        # nothing happened: nothing but the cursor is sent
        out = live_refresh(f, cursor, "operator-tick", "zh", Scope.ALL)
        assert out[0] is no_update and out[1] is no_update and out[2] is no_update
        assert all(v is no_update for v in out[4])
        # one new incident: one grid count and one feature, as Patch operations
        lon, lat = cell_center(6, 2)
        with db.session() as s:
            inc_id = create_incident(s, {"lon": lon, "lat": lat, "category": "SECURITY"}).id
        hide2, live2, feed2, cursor2, kpis2, _ = live_refresh(
            f, out[3], "operator-tick", "zh", Scope.ALL
        )
        ops = hide2.to_plotly_json()["operations"]
        gid = str(ids["grids"][(6, 2)])
        assert [(o["location"], o["params"]["value"]) for o in ops if o["operation"] == "Assign"][
            0
        ] == (["counts", gid], full_counts.get(gid, 0) + 1)
        feats = live2.to_plotly_json()["operations"][0]["params"]["value"]
        assert [ft["id"] for ft in feats] == [inc_id]
        assert cursor2["inc"] == inc_id and kpis2[0] == f"{int(kpis[0]) + 1:,}"
        assert _payload_bytes((hide2, live2, kpis2)) < 1500


def test_density_png_route(app_city):
    app, _ = app_city
    c = app.server.test_client()
    assert c.get("/map/density.png").status_code in (302, 401)  # behind the login
    login(c, app, "operator")
    r = c.get("/map/density.png?window=7d")
    assert r.status_code == 200 and r.data[:4] == b"\x89PNG"
    bad = c.get("/map/density.png?window=3d")
    assert bad.status_code == 400 and bad.get_json()["error"].startswith("window:")


def _mbtiles(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE metadata (name text, value text);"
        "CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer,"
        " tile_data blob);"
        "INSERT INTO metadata VALUES ('format', 'png'), ('name', 'test');"
    )
    # z=3, x=5, XYZ y=2 is TMS row 2**3 - 1 - 2 = 5
    conn.execute("INSERT INTO tiles VALUES (3, 5, 5, ?)", (b"\x89PNG-tile-3-5-2",))
    conn.commit()
    conn.close()
    return path


def test_mbtiles_route_flips_y(tmp_path):
    mb = _mbtiles(tmp_path / "base.mbtiles")
    app = create_app(_settings(tmp_path, mbtiles_path=mb), start_background=False)
    c = app.server.test_client()
    login(c, app, "operator")
    r = c.get("/tiles/3/5/2.png")
    assert r.status_code == 200 and r.data == b"\x89PNG-tile-3-5-2" and r.mimetype == "image/png"
    assert c.get("/tiles/3/5/5.png").status_code == 404
    assert c.get("/tiles/3/99/2.png").status_code == 404


def test_tiles_without_mbtiles_say_how_to_configure(tmp_path):
    app = create_app(_settings(tmp_path), start_background=False)
    c = app.server.test_client()
    login(c, app, "operator")
    r = c.get("/tiles/1/0/0.png")
    assert r.status_code == 404 and "GRIDSIGHT_MBTILES_PATH" in r.get_json()["error"]


def test_missing_mbtiles_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="mbtiles_path"):
        create_app(_settings(tmp_path, mbtiles_path=tmp_path / "nope.mbtiles"),
                   start_background=False)  # fmt: skip


def test_export_is_offline_and_audited(app_city):
    app, ids = app_city
    c = app.server.test_client()
    assert c.get("/export/situation.html").status_code in (302, 401)
    login(c, app, "operator")
    r = c.get("/export/situation.html?window=7d&lang=en&mode=incidents")
    assert r.status_code == 200
    assert "attachment" in r.headers["Content-Disposition"]
    body = r.get_data(as_text=True)
    # nothing is loaded from the network: no script/link/img/iframe or CSS url() pointing at
    # http(s) (Leaflet's own source keeps a plain <a href> to its home page in a string)
    assert not re.search(r"""<(?:script|link|img|iframe)[^>]*(?:src|href)\s*=\s*["']?https?://""",
                         body, re.I)  # fmt: skip
    assert not re.search(r"""url\(\s*["']?https?://""", body, re.I)
    assert not [h for h in CDN_HOSTS if h in body]
    assert "L.map(" in body or "L.map (" in body  # Leaflet inlined and used
    assert "GridSight situation map" in body
    # every grid in view is drawn (32) and the district outlines (2)
    assert body.count('"code"') >= 32
    from sqlalchemy import select

    from layers.models import AuditEntry

    with app.server.config["GRIDSIGHT"].db.session() as s:
        actions = s.execute(select(AuditEntry.action)).scalars().all()
    assert "map.export" in actions


@pytest.mark.parametrize(
    ("query", "field"),
    [("window=9d", "window"), ("bbox=1,2,3", "bbox"), ("layers=grids,roads", "layers"),
     ("mode=heat", "mode"), ("lang=fr", "lang")],
)  # fmt: skip
def test_export_bad_parameter_is_400(app_city, query, field):
    app, _ = app_city
    c = app.server.test_client()
    login(c, app, "operator")
    r = c.get(f"/export/situation.html?{query}")
    assert r.status_code == 400 and r.get_json()["error"].startswith(field)


def test_cards_render_in_both_languages(app_city):
    app, ids = app_city
    db = app.server.config["GRIDSIGHT"].db
    with app.server.test_request_context():
        for lang in ("zh", "en"):
            card = views.grid_card_view(
                mapdata.grid_card(db, ids["grids"][(0, 0)], scope=Scope.ALL), lang
            )
            text = json.dumps(card[1].to_plotly_json(), default=str, ensure_ascii=False)
            assert "138****" in text and "13800" not in text.replace("138****", "")
            cam = views.camera_card_view(mapdata.camera_card(db, ids["cameras"][0], scope=Scope.ALL), lang,
                                            video=True)  # fmt: skip
            assert cam[-1].src == f"/video/{ids['cameras'][0]}.mjpg"
            meta_only = views.camera_card_view(
                mapdata.camera_card(db, ids["cameras"][0], scope=Scope.ALL), lang, video=False
            )
            assert meta_only[-1].className == "gs-muted"


def test_every_operator_label_exists_in_both_catalogs():
    zh = json.loads((REPO / "dashboard/i18n/zh.json").read_text(encoding="utf-8"))
    en = json.loads((REPO / "dashboard/i18n/en.json").read_text(encoding="utf-8"))
    src = "".join(
        (REPO / p).read_text(encoding="utf-8")
        for p in ("dashboard/pages/operator.py", "dashboard/routes/situation_export.py",
                  *(f"dashboard/operator/{m}.py" for m in ("callbacks", "views", "layout")))
    )  # fmt: skip
    used = set(re.findall(r"""t\(\s*["'](operator\.[a-z0-9_.]+)["']""", src))
    assert used and not (used - set(zh)) and not (used - set(en))
    assert {k for k in zh if k.startswith("operator.")} == {
        k for k in en if k.startswith("operator.")
    }


def test_js_gcj02_shift_matches_geo_crs():
    from geo.crs import wgs84_to_gcj02

    require_executable("node", "apt-get install nodejs; .ci/apt-packages.txt")

    js = (REPO / "dashboard/assets/gridsight_map.js").read_text(encoding="utf-8")
    pts = [(102.71, 25.04), (118.78, 32.06), (116.39, 39.9), (2.35, 48.85)]
    script = ("var L = {latLng: function (a, b) { return [a, b]; },"
              " Map: {addInitHook: function () {}}}; var window = {L: L};\n" + js +
              f"\nconsole.log(JSON.stringify({json.dumps(pts)}.map(function (p) {{"
              " return window.gridsight.wgs84ToGcj02(p[0], p[1]); })));")  # fmt: skip
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True,
                         timeout=60)  # fmt: skip
    got = json.loads(out.stdout)
    for (lon, lat), (glon, glat) in zip(pts, got, strict=True):
        elon, elat = wgs84_to_gcj02(lon, lat)
        assert glon == pytest.approx(float(elon), abs=1e-9)
        assert glat == pytest.approx(float(elat), abs=1e-9)


def _refresh_body(app, cursor=None) -> dict:
    key = next(k for k in app.callback_map if "operator-cursor.data" in k and "hideout" in k)
    outputs = key.strip(".").split("...")
    return {
        "output": key,
        "outputs": [{"id": o.split(".")[0], "property": o.split(".")[1]} for o in outputs],
        "inputs": [
            {"id": "operator-tick", "property": "n_intervals", "value": 1},
            {"id": "operator-filter", "property": "data", "value": {"window": "24h"}},
            {"id": "app-lang", "property": "data", "value": "zh"},
        ],
        "state": [{"id": "operator-cursor", "property": "data", "value": cursor}],
        "changedPropIds": ["operator-tick.n_intervals"],
    }


@pytest.mark.parametrize(("role", "status"), [("operator", (200,)), ("auditor", (204, 403))])
def test_map_data_only_for_map_roles(app_city, role, status):
    from tests.helpers_auth import csrf_headers

    app, _ = app_city
    c = app.server.test_client()
    login(c, app, role)
    r = c.post("/_dash-update-component", json=_refresh_body(app), headers=csrf_headers(c))
    assert r.status_code in status
    if r.status_code == 200:
        assert "operator-grids" in r.get_json()["response"]
    else:
        assert b"counts" not in r.data


def test_gcj02_base_map_shifts_our_wgs84_layers(tmp_path):
    from geo.crs import wgs84_to_gcj02

    app = create_app(
        _settings(tmp_path, basemap_url="http://tiles.intranet/{z}/{x}/{y}.png",
                  basemap_crs="gcj02"),
        start_background=False,
    )  # fmt: skip
    build_city(app.server.config["GRIDSIGHT"].db, incidents=0)
    with app.server.test_request_context():
        b = mapdata.city_bounds(app.server.config["GRIDSIGHT"].db)
        (s, w), (n, e) = common.display_bounds(b)
        ex, ey = wgs84_to_gcj02([b[0], b[2]], [b[1], b[3]])
        assert (w, s, e, n) == pytest.approx((ex[0], ey[0], ex[1], ey[1]))
        assert w - b[0] > 0.001  # ~ a few hundred metres east in Kunming
        lon, lat = common.unshift(float(ex[0]), float(ey[0]))
        assert (lon, lat) == pytest.approx((b[0], b[1]), abs=1e-7)
        m = map_component(common.display_bounds(b), True)
        text = json.dumps(m.to_plotly_json(), default=lambda o: o.to_plotly_json())
        assert text.count("gridsight.gcjLatLng") == 10  # every GeoJSON layer on the map
        assert "tiles.intranet" in text
