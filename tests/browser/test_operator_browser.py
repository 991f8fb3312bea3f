"""The operator map in headless Chromium against a real app on a free port and a SQLite city.

Skipped only where Chromium/chromedriver are missing and ``CI`` is unset; in CI a missing
browser fails the run.
"""

from __future__ import annotations

import threading
import time

import pytest

from bench.operator_city import build_city, cell_center
from dashboard.app import create_app
from layers.services import mapdata
from layers.services.incidents import create_incident
from layers.services.scope import Scope
from layers.settings import load_settings
from tests.browser.chromium import make_driver, require_browser
from tests.helpers_auth import make_user

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    from werkzeug.serving import make_server

    tmp = tmp_path_factory.mktemp("opbrowser")
    settings = load_settings(db_url=f"sqlite:///{tmp / 'gs.sqlite'}", data_dir=tmp,
                             seed_on_start=False, simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    db = app.server.config["GRIDSIGHT"].db
    ids = build_city(db, incidents=60)
    srv = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{srv.server_port}", "app": app, "db": db, "ids": ids}
    srv.shutdown()
    db.dispose()


@pytest.fixture(scope="module")
def browser(server):
    from selenium.webdriver.common.by import By

    d = make_driver(1920, 1080)
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
    user, password = make_user(server["app"], "operator")
    d.get(server["url"] + "/login")
    d.find_element(By.NAME, "username").send_keys(user)
    d.find_element(By.NAME, "password").send_keys(password)
    d.find_element(By.CSS_SELECTOR, "form button[type=submit], form button").click()
    _wait(d, lambda: "/login" not in d.current_url, 10, "login did not leave /login")
    yield d
    d.quit()


def _wait(d, cond, timeout: float, what: str):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = cond()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - the page is still rendering
            last = exc
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s: {what} (last {last!r})")


LAYER_COUNTS_JS = """
var m = window.gridsight && window.gridsight.map; if (!m) { return null; }
var out = {};
m.eachLayer(function (l) {
  var p = l.options && l.options.pane;
  if (p && p.indexOf('gs-') === 0 && !l.getLayers && !(l instanceof L.Renderer)) {
    out[p] = (out[p] || 0) + 1;
  }
});
var img = document.querySelector('.leaflet-gs-heat-pane img');
out.heat_loaded = !!(img && img.complete && img.naturalWidth > 0);
return out;
"""


def _open(d, server, *, fresh_view: bool = True):
    if fresh_view:
        d.get(server["url"] + "/healthz")
        d.execute_script("localStorage.removeItem('operator-view'); "
                         "localStorage.removeItem('app-lang');")  # fmt: skip
    d.get(server["url"] + "/")
    _wait(d, lambda: d.execute_script("return !!(window.gridsight && window.gridsight.map)"), 20,
          "the Leaflet map did not start")  # fmt: skip
    _wait(d, lambda: d.execute_script("return window.gridsight.viewRestored === true"), 10,
          "the stored view was not restored")  # fmt: skip


def _view(d):
    return d.execute_script(
        "var m = window.gridsight.map; var c = m.getCenter(); return [c.lat, c.lng, m.getZoom()];"
    )


def test_page_draws_every_layer(server, browser):
    d = browser
    _open(d, server)
    counts = _wait(
        d,
        lambda: (c := d.execute_script(LAYER_COUNTS_JS)) and c.get("gs-grids", 0) >= 32
        and c.get("gs-centers", 0) >= 15 and c.get("gs-labels", 0) == 2 and c.get("heat_loaded")
        and c.get("gs-cameras", 0) > 0 and c.get("gs-areas", 0) >= 2 and c,
        20, "every layer drawn",
    )  # fmt: skip
    assert counts["gs-grids"] == 32 and counts["gs-centers"] == 15
    # zoomed to the city (>= 15), incidents are points as well
    assert _view(d)[2] >= 15
    _wait(d, lambda: d.execute_script(LAYER_COUNTS_JS).get("gs-points", 0) > 0, 10,
          "incident points at high zoom")  # fmt: skip
    k = mapdata.kpis(server["db"], mapdata.parse_filter({"window": "24h"}, scope=Scope.ALL))
    from selenium.webdriver.common.by import By

    _wait(d, lambda: d.find_element(By.ID, "operator-kpi-open").text == f"{k['open']:,}", 10,
          "KPI open matches the service")  # fmt: skip


def test_layer_toggles(server, browser):
    from selenium.webdriver.common.by import By

    d = browser
    _open(d, server)
    pane_display = (
        "return getComputedStyle(document.querySelector('.leaflet-gs-cameras-pane')).display"
    )
    _wait(d, lambda: d.execute_script(pane_display) != "none", 10, "cameras shown")
    d.find_element(By.ID, "operator-layer-cameras").click()
    _wait(d, lambda: "hide-cameras" in d.find_element(By.ID, "operator-map-wrap").get_attribute("class"),
          5, "cameras hidden class")  # fmt: skip
    assert d.execute_script(pane_display) == "none"
    d.find_element(By.ID, "operator-layer-cameras").click()
    _wait(d, lambda: d.execute_script(pane_display) != "none", 5, "cameras shown again")


def test_new_incident_appears_live_and_keeps_viewport(server, browser):
    from selenium.webdriver.common.by import By

    d = browser
    _open(d, server)
    _wait(d, lambda: d.find_element(By.ID, "operator-kpi-open").text not in ("", "—"), 10, "KPIs")
    lon, lat = cell_center(5, 2)
    d.execute_script(f"window.gridsight.map.setView([{lat}, {lon}], 16.5, {{animate: false}});")
    time.sleep(1.5)  # let the move settle and a couple of ticks pass
    before = _view(d)
    open_before = int(d.find_element(By.ID, "operator-kpi-open").text.replace(",", ""))
    with server["db"].session() as s:
        inc_id = create_incident(s, {"lon": lon, "lat": lat, "category": "SECURITY",
                                     "description": "browser live test"}).id  # fmt: skip
    # live: the marker arrives without a reload (how fast is bench/bench_map.py's business)
    _wait(d, lambda: d.find_elements(By.CSS_SELECTOR, f".gs-live-dot[data-id='{inc_id}']"), 60,
          "the new incident marker")  # fmt: skip
    _wait(d, lambda: f"#{inc_id}" in d.find_element(By.ID, "operator-feed").text, 60, "feed")
    _wait(d, lambda: d.find_element(By.ID, "operator-kpi-open").text == f"{open_before + 1:,}", 60,
          "KPI open +1")  # fmt: skip
    after = _view(d)
    assert after == pytest.approx(before, abs=1e-9)


def test_viewport_survives_page_reload(server, browser):
    d = browser
    _open(d, server)
    lon, lat = cell_center(1, 3)
    d.execute_script(f"window.gridsight.map.setView([{lat}, {lon}], 17, {{animate: false}});")
    _wait(d, lambda: '"zoom":17' in (d.execute_script(
        "return localStorage.getItem('operator-view')") or ""), 5, "view saved")  # fmt: skip
    d.refresh()
    _wait(d, lambda: d.execute_script("return !!(window.gridsight && window.gridsight.map)"), 20,
          "map after reload")  # fmt: skip
    _wait(d, lambda: _view(d)[2] == 17, 10, "zoom restored")
    la, lo, _z = _view(d)
    assert la == pytest.approx(lat, abs=1e-6) and lo == pytest.approx(lon, abs=1e-6)


def test_language_switches(server, browser):
    from selenium.webdriver.common.by import By

    d = browser
    _open(d, server)
    label = lambda: d.find_element(By.ID, "operator-kpi-label-open").text  # noqa: E731
    _wait(d, lambda: label() == "未结事件", 10, "Chinese by default")
    assert d.find_element(By.ID, "operator-layer-grids").text == "网格"
    # the shell's toggle (the app's, not this page's) is clicked by id; its own label is the
    # shell's business
    _wait(d, lambda: d.find_elements(By.ID, "app-lang-toggle"), 10, "language toggle")
    d.execute_script("document.getElementById('app-lang-toggle').click()")
    _wait(d, lambda: label() == "Open", 10, "English labels")
    _wait(d, lambda: d.find_element(By.ID, "operator-layer-grids").text == "Grids", 10, "layers")
    assert "Export" in d.find_element(By.ID, "operator-export").text
    d.execute_script("document.getElementById('app-lang-toggle').click()")
    _wait(d, lambda: label() == "未结事件", 10, "back to Chinese")


def test_click_grid_opens_card_and_drill_down(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    d = browser
    _open(d, server)
    _wait(d, lambda: d.execute_script(LAYER_COUNTS_JS).get("gs-labels") == 2, 10, "labels")
    lon, lat = cell_center(3, 2)
    x, y = d.execute_script(
        f"var p = window.gridsight.map.latLngToContainerPoint([{lat}, {lon}]); return [p.x, p.y];"
    )
    m = d.find_element(By.ID, "operator-map")
    w, h = m.rect["width"], m.rect["height"]
    # between the two cameras of the cell: the grid under the click is selected
    ActionChains(d).move_to_element_with_offset(
        m, int(x - w / 2), int(y - h / 2 + 40)
    ).click().perform()
    code = mapdata.grid_card(server["db"], server["ids"]["grids"][(3, 2)], scope=Scope.ALL)["code"]
    _wait(d, lambda: code in d.find_element(By.ID, "operator-card").text, 5, "grid card")
    assert "****" in d.find_element(By.ID, "operator-card").text  # worker phone masked
    d.find_element(By.CSS_SELECTOR, ".gs-area-label span").click()
    _wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#operator-crumbs button")) == 2, 5,
          "breadcrumb city > district")  # fmt: skip
    _wait(d, lambda: "街道" in d.find_element(By.CSS_SELECTOR, ".gs-area-label span").text, 5,
          "street labels after drilling into the district")  # fmt: skip


CAMERA_COLOR_JS = """
var m = window.gridsight.map, want = L.latLng(arguments[0], arguments[1]), hit = null;
m.eachLayer(function (l) {
  if (l.options && l.options.pane === 'gs-cameras' && l.getLatLng && l.options.fillColor &&
      l.getLatLng().distanceTo(want) < 0.5) { hit = l.options.fillColor; }
});
return hit;
"""


def test_camera_status_change_recolours_its_marker_on_an_open_map(server, browser):
    """A camera goes offline while the map is open: its marker turns red within seconds."""
    from layers.services import cameras as camera_service

    d, db = browser, server["db"]
    cam_id = server["ids"]["cameras"][3]
    cam = camera_service.get_camera(db, cam_id)
    camera_service.set_status(db, cam_id, "online")
    _open(d, server)
    # zoomed in past the clustering, the camera is its own marker
    d.execute_script("window.gridsight.map.setView([arguments[0], arguments[1]], 18);",
                     cam.lat, cam.lon)  # fmt: skip
    online = d.execute_script("return window.gridsight.cameraColors.online")
    offline = d.execute_script("return window.gridsight.cameraColors.offline")
    _wait(d, lambda: d.execute_script(CAMERA_COLOR_JS, cam.lat, cam.lon) == online, 20,
          "the camera marker is not drawn online")  # fmt: skip
    camera_service.set_status(db, cam_id, "offline")
    _wait(d, lambda: d.execute_script(CAMERA_COLOR_JS, cam.lat, cam.lon) == offline, 10,
          "the camera marker did not turn offline")  # fmt: skip
    camera_service.set_status(db, cam_id, "online")
    _wait(d, lambda: d.execute_script(CAMERA_COLOR_JS, cam.lat, cam.lon) == online, 10,
          "the camera marker did not turn online again")  # fmt: skip
