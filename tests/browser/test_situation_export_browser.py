"""The situation export keeps template- and script-looking names as text, in Chromium.

Area, grid and center names carry Jinja delimiters (folium renders each layer's
script as a template, then that output again), ``</script>``, quotes, backticks, ``${}`` and
a trailing backslash. The export is fetched through the app, checked as text (no template
was evaluated on the server) and opened as a file: no payload may have run, and every name
must read exactly as typed in the side box and the tooltips.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from bench.operator_city import build_city
from dashboard.app import create_app
from layers.models import AdminArea, Center, Grid
from layers.settings import load_settings
from tests.browser.chromium import make_driver, require_browser
from tests.browser.test_operator_browser import _wait
from tests.helpers_auth import login

pytestmark = pytest.mark.browser

#: each would set window.__xss, change the title, or print gs-evaluated / a module's globals
#: (``__builtins__``) if it were evaluated
PAYLOADS = [
    "{{ 'gs-' ~ 'evaluated' }}",
    "{% if 1 %}{{ 'gs-' ~ 'evaluated' }}{% endif %}{# c #}",
    "{{ self.__init__.__globals__ }}",
    "</script><script>window.__xss=11;document.title='XSS'</script>",
    "`;window.__xss=12;document.title='XSS';`",
    "${window.__xss=13}${document.title='XSS'}",
    "'\";window.__xss=14;//",
    "end\\",
]


def _poison(db) -> dict[str, list[str]]:
    """Give every name the export shows a payload; return the names per kind."""
    names: dict[str, list[str]] = {"areas": [], "grids": [], "centers": []}
    k = 0

    def nxt(prefix: str, kind: str) -> str:
        nonlocal k
        k += 1
        name = f"{prefix}{PAYLOADS[k % len(PAYLOADS)]}"
        names[kind].append(name)
        return name

    with db.session() as s:
        for a in s.scalars(select(AdminArea)):
            a.name = nxt(f"A{a.id}", "areas")
        for g in s.scalars(select(Grid)):
            g.name = nxt(f"G{g.id}", "grids")
        for c in s.scalars(select(Center)):
            c.name = nxt(f"C{c.id}", "centers")
    return names


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    require_browser()
    tmp = tmp_path_factory.mktemp("sitexport")
    settings = load_settings({}, db_url=f"sqlite:///{tmp / 'gs.sqlite'}", data_dir=tmp,
                             seed_on_start=False, simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    db = app.server.config["GRIDSIGHT"].db
    ids = build_city(db, incidents=40)
    names = _poison(db)
    client = app.server.test_client()
    login(client, app, "operator")
    r = client.get(f"/export/situation.html?window=7d&area_id={ids['streets'][0]}"
                   "&layers=grids,incidents,centers,areas")  # fmt: skip
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    path = tmp / "situation.html"
    path.write_bytes(r.get_data())
    yield {"text": r.get_data(as_text=True), "path": path, "names": names, "ids": ids}
    db.dispose()


def test_no_template_was_evaluated_on_the_server(exported):
    text = exported["text"]
    assert "gs-evaluated" not in text and "__builtins__" not in text
    assert "</script><script>window.__xss" not in text
    assert "${window" not in text and "`;window" not in text


def test_names_run_nothing_and_read_as_typed(exported):
    d = make_driver(1600, 1000)
    try:
        d.get(exported["path"].as_uri())
        _wait(d, lambda: d.execute_script("return !!document.querySelector('.leaflet-container')"),
              15, "the exported map")  # fmt: skip
        texts = d.execute_script(TOOLTIP_TEXTS_JS)
        assert len(texts) > 10, "few tooltips could be opened: the test would prove nothing"
        tips = "\n".join(texts)
        time.sleep(1.0)  # an onerror or timer would have fired by now
        ran = d.execute_script("return [window.__xss || null, document.title];")
        assert ran[0] is None and "XSS" not in ran[1], f"a payload ran: {ran}"
        box = d.execute_script("return document.querySelector('.gs-box').innerText;")
    finally:
        d.quit()
    # the breadcrumb (city > district > street) reads as typed
    shown_areas = [n for n in exported["names"]["areas"] if n in box]
    assert len(shown_areas) >= 2, box
    assert "gs-evaluated" not in box
    # grid tooltips (GeoJSON properties) and center tooltips (text tooltips)
    for kind in ("grids", "centers"):
        shown = [n for n in exported["names"][kind] if n in tips]
        assert shown, f"no {kind} name reads as typed in the tooltips:\n{tips[:2000]}"
    every_payload = [p for p in PAYLOADS if p in tips or p in box]
    assert every_payload == PAYLOADS, f"shown: {every_payload}"
    assert "gs-evaluated" not in tips


#: hover every feature of every layer with a tooltip (a GeoJSON layer shares one tooltip
#: among its features) and return the text each tooltip shows
TOOLTIP_TEXTS_JS = """
var out = [];
Object.keys(window).forEach(function (k) {
  var m = window[k];
  if (!(m instanceof L.Map)) { return; }
  var layers = [];
  m.eachLayer(function (l) { layers.push(l); });
  layers.forEach(function (l) {
    var tip = l.getTooltip && l.getTooltip();
    if (!tip) { return; }
    var targets = [];
    if (l.eachLayer) { l.eachLayer(function (c) { targets.push(c); }); } else { targets = [l]; }
    targets.forEach(function (c) {
      var at = c.getCenter ? c.getCenter() : c.getLatLng();
      l.fire('mouseover', {latlng: at, layer: c});
      var el = tip.getElement();
      if (el) { out.push(el.innerText); }
      l.fire('mouseout', {latlng: at, layer: c});
    });
  });
});
return out;
"""
