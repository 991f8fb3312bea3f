"""No script runs from data: every text field of the city is a script payload, in Chromium.

Names of districts, streets, communities, grids, centers, cameras and responders, center
hours, camera owners, incident descriptions and the category names all carry payloads that
would set ``window.__xss`` and the page title if any of them became markup. The operator map
is opened, a district label clicked (street labels), a grid card opened; the dispatcher's
queue and a case; the situation export is served, checked as text and opened as a file. Nothing
may have run.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from bench.operator_city import build_city, cell_center
from dashboard.app import create_app
from layers.models import AdminArea, Camera, Category, Center, Grid, Incident, Responder
from layers.settings import load_settings
from tests.browser.chromium import make_driver, require_browser
from tests.browser.test_operator_browser import LAYER_COUNTS_JS, _open, _wait
from tests.helpers_auth import login, make_user

pytestmark = pytest.mark.browser

PAYLOADS = [
    "<img src=x onerror=\"window.__xss=1;document.title='XSS'\">",
    "\"><script>window.__xss=2;document.title='XSS'</script>",
    '</script><svg onload="window.__xss=3">',
]
RAW = ("<img src=x onerror", "<script>window.__xss", "<svg onload")


def _poison(db) -> None:
    """Put a payload into every text field a page or export shows."""
    k = 0

    def nxt(prefix: str) -> str:
        nonlocal k
        k += 1
        return f"{prefix}{PAYLOADS[k % len(PAYLOADS)]}"

    with db.session() as s:
        for a in s.scalars(select(AdminArea)):
            a.name = nxt(a.name)
        for g in s.scalars(select(Grid)):
            g.name = nxt(g.name)
        for c in s.scalars(select(Center)):
            c.name, c.hours = nxt(c.name), nxt("")
        for c in s.scalars(select(Camera)):
            c.name, c.owner = nxt(c.name), nxt("")
        for r in s.scalars(select(Responder)):
            r.name = nxt(r.name)[:64]
        for i in s.scalars(select(Incident)):
            i.description = nxt(i.description or "")
        for c in s.scalars(select(Category)):
            c.name_zh, c.name_en = nxt(c.name_zh), nxt(c.name_en)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    from werkzeug.serving import make_server

    tmp = tmp_path_factory.mktemp("xss")
    settings = load_settings(db_url=f"sqlite:///{tmp / 'gs.sqlite'}", data_dir=tmp,
                             seed_on_start=False, simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    db = app.server.config["GRIDSIGHT"].db
    ids = build_city(db, incidents=30)
    _poison(db)
    srv = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{srv.server_port}", "app": app, "db": db, "ids": ids,
           "tmp": tmp}  # fmt: skip
    srv.shutdown()
    db.dispose()


def _sign_in(d, server, role: str) -> None:
    from selenium.webdriver.common.by import By

    user, password = make_user(server["app"], role)
    d.delete_all_cookies()
    d.get(server["url"] + "/login")
    d.find_element(By.NAME, "username").send_keys(user)
    d.find_element(By.NAME, "password").send_keys(password)
    d.find_element(By.CSS_SELECTOR, "form button[type=submit], form button").click()
    _wait(d, lambda: "/login" not in d.current_url, 10, "login did not leave /login")


def _nothing_ran(d, where: str) -> None:
    time.sleep(1.0)  # an onerror handler fires after the image fails to load
    ran = d.execute_script("return [window.__xss || null, document.title];")
    assert ran[0] is None and "XSS" not in ran[1], f"a payload ran on {where}: {ran}"


@pytest.fixture(scope="module")
def browser(server):
    d = make_driver(1600, 1000)
    yield d
    d.quit()


def test_operator_map_labels_cards_run_no_payload(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    d = browser
    _sign_in(d, server, "operator")
    _open(d, server)
    _wait(d, lambda: d.execute_script(LAYER_COUNTS_JS).get("gs-labels") == 2, 15, "labels")
    label = d.find_element(By.CSS_SELECTOR, ".gs-area-label span")
    assert "<img" in label.text or "<script>" in label.text or "<svg" in label.text  # as text
    _nothing_ran(d, "the operator map")
    label.click()
    _wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#operator-crumbs button")) == 2, 10,
          "breadcrumb after drilling into the district")  # fmt: skip
    _nothing_ran(d, "the street labels")
    lon, lat = cell_center(1, 1)
    x, y = d.execute_script(
        f"var p = window.gridsight.map.latLngToContainerPoint([{lat}, {lon}]); return [p.x, p.y];"
    )
    m = d.find_element(By.ID, "operator-map")
    ActionChains(d).move_to_element_with_offset(
        m, int(x - m.rect["width"] / 2), int(y - m.rect["height"] / 2 + 40)
    ).click().perform()
    _wait(d, lambda: "网格" in d.find_element(By.ID, "operator-card").text, 10, "grid card")
    _nothing_ran(d, "the grid card")


def test_dispatch_queue_and_case_run_no_payload(server, browser):
    from selenium.webdriver.common.by import By

    d = browser
    _sign_in(d, server, "dispatcher")
    d.get(server["url"] + "/dispatch")
    _wait(d, lambda: d.find_elements(By.CSS_SELECTOR, ".ag-row"), 20, "queue rows")
    d.find_elements(By.CSS_SELECTOR, ".ag-row .ag-cell")[0].click()
    _wait(d, lambda: "#" in d.find_element(By.ID, "dispatch-detail").text, 10, "case detail")
    assert any(p.split("=")[0][:4] in d.find_element(By.ID, "dispatch-detail").text
               for p in PAYLOADS)  # fmt: skip
    _nothing_ran(d, "the dispatch page")


def test_situation_export_runs_no_payload(server, browser):
    client = server["app"].server.test_client()
    login(client, server["app"], "operator")
    r = client.get("/export/situation.html?window=7d&layers=grids,incidents,cameras,centers,areas")
    assert r.status_code == 200
    text = r.get_data(as_text=True)
    assert not [raw for raw in RAW if raw in text], "a payload reached the export unescaped"
    path = server["tmp"] / "situation.html"
    path.write_text(text, encoding="utf-8")
    d = browser
    d.get(path.as_uri())
    _wait(d, lambda: d.execute_script("return !!document.querySelector('.leaflet-container')"),
          15, "the exported map")  # fmt: skip
    opened = d.execute_script(OPEN_TOOLTIPS_JS)  # every tooltip of every layer, once
    assert opened > 0, "no tooltip could be opened: the test would prove nothing"
    _wait(d, lambda: d.find_elements("css selector", ".leaflet-tooltip"), 5, "a tooltip")
    _nothing_ran(d, "the situation export")


OPEN_TOOLTIPS_JS = """
var n = 0;
Object.keys(window).forEach(function (k) {
  var m = window[k];
  if (!(m instanceof L.Map)) { return; }
  m.eachLayer(function (g) {
    if (!g.getTooltip || !g.getTooltip()) { return; }
    var subs = g.eachLayer ? [] : [g];
    if (g.eachLayer) { g.eachLayer(function (l) { subs.push(l); }); }
    subs.forEach(function (l) {
      var at = l.getCenter ? l.getCenter() : l.getLatLng();
      try { g.openTooltip(l === g ? at : l, at); n += 1; } catch (e) { /* next */ }
    });
  });
});
return n;
"""
