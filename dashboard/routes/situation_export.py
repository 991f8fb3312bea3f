"""``GET /export/situation.html``: a standalone, offline HTML snapshot of the situation map.

Made with folium for briefings: the grids in view coloured like the live map (open incidents
or camera coverage), district outlines, the incident heat map (PNG inlined as a data URL),
incident points, cameras and governance centers, plus the KPIs and the filters in a side box.
folium links Leaflet, jQuery, Bootstrap and Font Awesome from CDNs by default; here every one
of those links is removed and the vendored Leaflet 1.9.4 (``dashboard/components/vendor``) is
inlined, so the file opens on an isolated network. Each export is written to the audit log.

Data text (names from the database) is made inert where it becomes HTML or JavaScript:
folium renders each layer's script with Jinja and then renders that output again as a
template, so text such as ``{{ ... }}`` in a name would be evaluated on the server. Every
name goes through ``inert_html`` (HTML-escaped, with braces, ``$``, backticks and
backslashes as character references) before folium sees it; tooltips are JSON string
literals (``SafeTooltip``), never JavaScript template literals; the side box and title are
``LiteralHtml`` elements, inserted as they are and never parsed as a template.

Query parameters: the map filter (window, start, end, playback, categories, area_id, as for
``mapdata.parse_filter``), ``bbox`` (minx,miny,maxx,maxy WGS-84; default: the city),
``layers`` (comma list of grids, heat, incidents, cameras, centers, areas), ``mode``
(incidents | coverage) and ``lang`` (zh | en). A bad value gives 400 naming the field.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import math
import re
from functools import cache
from pathlib import Path

import flask
from markupsafe import escape

from dashboard.components.heatmap import density_png
from dashboard.context import AppContext
from dashboard.i18n import t
from dashboard.policy import declare_policy
from dashboard.scoping import request_scope
from geo.density import density_image
from layers.services import mapdata
from layers.services.scope import Scope
from layers.services.situation import Situation, situation
from layers.services.transaction import run

log = logging.getLogger(__name__)

VENDOR = Path(__file__).resolve().parents[1] / "components" / "vendor" / "leaflet"
EXPORT_ROLES = ("operator", "dispatcher", "privacy_officer", "admin")
LAYER_NAMES = ("grids", "heat", "incidents", "cameras", "centers", "areas")
CAMERA_COLORS = {"online": "#2ecc71", "offline": "#e74c3c", "stale": "#f39c12",
                 "unknown": "#95a5a6"}  # fmt: skip
CENTER_COLORS = {"city": "#ff4d6d", "county": "#ff9f1c", "township": "#ffd166",
                 "village": "#06d6a0"}  # fmt: skip
CAT_COLORS = {"DISPUTE": "#f78c6b", "SECURITY": "#ef476f", "SAFETY": "#ff4d4d", "ENV": "#06d6a0",
              "CITY": "#4cc9f0", "SPECIAL_GROUPS": "#b39ddb", "CAMPUS": "#ffd166",
              "EMERGENCY": "#ff0054", "SERVICE": "#90be6d"}  # fmt: skip
_URL_IN_TAG = re.compile(r"""<(?:script|link|img)[^>]+(?:src|href)=["']?https?://""", re.I)


class ExportError(ValueError):
    """An export parameter is unusable; the message names the field and the fix."""


@cache
def _vendored() -> tuple[str, str]:
    js = (VENDOR / "leaflet.js").read_text(encoding="utf-8")
    css = (VENDOR / "leaflet.css").read_text(encoding="utf-8")
    return js, css


def _parse_bbox(value: str | None, city: list[float]) -> list[float]:
    if not value:
        return city
    try:
        parts = [float(v) for v in value.split(",", 4)]
    except ValueError:
        raise ExportError(f"bbox: {value[:80]!r} is not four numbers minx,miny,maxx,maxy") from None
    if len(parts) != 4 or not all(math.isfinite(v) for v in parts):
        raise ExportError(f"bbox: {value[:80]!r} is not four finite numbers minx,miny,maxx,maxy")
    if parts[0] >= parts[2] or parts[1] >= parts[3]:
        raise ExportError(f"bbox: {value[:80]!r} must be minx,miny,maxx,maxy with min < max")
    if not (-180 <= parts[0] and parts[2] <= 180 and -90 <= parts[1] and parts[3] <= 90):
        raise ExportError("bbox: give WGS-84 degrees (longitude -180..180, latitude -90..90)")
    return parts


#: characters markupsafe leaves alone that still mean something to Jinja or JavaScript
_INERT = str.maketrans({"{": "&#123;", "}": "&#125;", "$": "&#36;", "`": "&#96;",
                        "\\": "&#92;"})  # fmt: skip


def inert_html(value: object) -> str:
    """Return ``value`` as HTML text that stays text in HTML, JavaScript strings and Jinja.

    HTML-escaped (``< > & " '``), and ``{ } $ ` \\`` as character references: a browser
    shows them as typed, while no Jinja delimiter, template-literal substitution, backtick
    or escape character survives into the page source.
    """
    return str(escape(str(value))).translate(_INERT)


def _text(value: object) -> object:
    """Return ``value`` made inert (``inert_html``) if it is text; numbers stay numbers."""
    return inert_html(value) if isinstance(value, str) else value


@cache
def _literal_html_class():
    from branca.element import Element
    from jinja2 import Template

    class LiteralHtml(Element):
        """A piece of finished HTML placed in the page as it is (never parsed as a template)."""

        _template = Template("{{ this.markup }}")

        def __init__(self, markup: str) -> None:
            super().__init__()
            self._name = "LiteralHtml"
            self.markup = markup

    return LiteralHtml


@cache
def _safe_tooltip_class():
    import folium
    from jinja2 import Template

    class SafeTooltip(folium.Tooltip):
        """A folium tooltip whose inert HTML text is a JSON string literal in the script."""

        _template = Template(
            "{% macro script(this, kwargs) %}"
            "{{ this._parent.get_name() }}.bindTooltip({{ this.text|tojson }}, "
            "{{ this.options|tojson }});"
            "{% endmacro %}"
        )

    return SafeTooltip


def _ramp(n: int, mx: int) -> str:
    if n <= 0:
        return "#1b3550"
    f = min(1.0, n / max(mx, 1))
    stops = [(40, 110, 170), (255, 200, 60), (255, 120, 40), (230, 40, 50)]
    x = f * (len(stops) - 1)
    i = min(int(x), len(stops) - 2)
    a, b, r = stops[i], stops[i + 1], x - i
    return "#" + "".join(f"{round(a[k] + (b[k] - a[k]) * r):02x}" for k in range(3))


def _cov_color(v: float | None) -> str:
    if v is None:
        return "#1b3550"
    stops = [(200, 50, 60), (230, 180, 60), (60, 200, 120)]
    x = max(0.0, min(1.0, v)) * 2
    i = min(int(x), 1)
    a, b, r = stops[i], stops[i + 1], x - i
    return "#" + "".join(f"{round(a[k] + (b[k] - a[k]) * r):02x}" for k in range(3))


def _check_args(args: dict, default_lang: str) -> tuple[str, str, list[str], dict]:
    """Return (lang, mode, layers, map filter dict) of the query, or raise ExportError."""
    lang = args.get("lang") or default_lang
    if lang not in ("zh", "en"):
        raise ExportError(f"lang: {lang!r} is unknown; use zh or en")
    mode = args.get("mode") or "incidents"
    if mode not in ("incidents", "coverage"):
        raise ExportError(f"mode: {mode!r} is unknown; use incidents or coverage")
    layers = [v for v in (args.get("layers") or ",".join(LAYER_NAMES)).split(",") if v]
    bad = [v for v in layers if v not in LAYER_NAMES]
    if bad:
        raise ExportError(f"layers: {bad[0]!r} is unknown; use any of {', '.join(LAYER_NAMES)}")
    fdict = {k: args.get(k) for k in ("window", "start", "end", "playback", "categories",
                                       "area_id") if args.get(k) not in (None, "")}  # fmt: skip
    return lang, mode, layers, fdict


def _base_map(window: list[float]):
    """Return a folium map of ``window`` with the vendored Leaflet inlined (no CDN link)."""
    import folium

    minx, miny, maxx, maxy = window
    m = folium.Map(location=[(miny + maxy) / 2, (minx + maxx) / 2], tiles=None,
                   prefer_canvas=True, control_scale=True, attribution_control=False,
                   zoom_start=13)  # fmt: skip
    # folium's default links all point at CDNs: drop them, inline the vendored Leaflet instead
    m.default_js = []
    m.default_css = []
    js, css = _vendored()
    root = m.get_root()
    literal = _literal_html_class()
    root.header.add_child(literal(f"<style>{css}</style>"), name="leaflet_css_inline")
    root.header.add_child(literal(f"<script>{js}</script>"), name="leaflet_js_inline")
    root.header.add_child(literal(
        "<style>body{background:#0f1720;font-family:'Noto Sans CJK SC','Microsoft YaHei',"
        "sans-serif}.leaflet-container{background:#16212e}.gs-box{position:absolute;top:10px;"
        "right:10px;z-index:1000;background:rgba(12,20,30,.9);color:#e5edf5;border:1px solid "
        "#24405f;border-radius:6px;padding:10px 12px;font-size:13px;max-width:340px}"
        ".gs-box h1{font-size:16px;margin:0 0 6px;color:#7fd3ff}.gs-box td{padding:1px 6px 1px 0}"
        ".gs-box td:first-child{color:#8aa4bf}.sw{display:inline-block;width:10px;height:10px;"
        "border-radius:50%;margin-right:4px}</style>"), name="gs_style")  # fmt: skip
    return m


def _add_grids(m, sit: Situation, cov: dict, mode: str, lang: str) -> None:
    import folium
    import shapely

    mx = max(sit.counts.values(), default=1)
    feats = []
    for g in sit.grids:
        n = sit.counts.get(g["id"], 0)
        color = _cov_color(cov.get(g["id"])) if mode == "coverage" else _ramp(n, mx)
        feats.append({"type": "Feature", "id": g["id"],
                      "geometry": shapely.geometry.mapping(g["geometry"]),
                      "properties": {"code": _text(g["code"]), "name": _text(g["name"]),
                                     "open": n, "fill": color}})  # fmt: skip
    folium.GeoJson(
        {"type": "FeatureCollection", "features": feats},
        name=t("operator.layer.grids", lang),
        style_function=lambda ft: {"fillColor": ft["properties"]["fill"],
                                   "color": "#3d6a99", "weight": 0.6,
                                   "fillOpacity": 0.55},
        tooltip=folium.GeoJsonTooltip(["code", "name", "open"], labels=False),
    ).add_to(m)  # fmt: skip


def _add_districts(m, sit: Situation, lang: str) -> None:
    import folium
    import shapely

    feats = [{"type": "Feature", "id": d["id"], "properties": {"name": _text(d["name"])},
              "geometry": shapely.geometry.mapping(d["geometry"])} for d in sit.districts]  # fmt: skip
    if feats:
        folium.GeoJson(
            {"type": "FeatureCollection", "features": feats},
            name=t("operator.layer.areas", lang),
            style_function=lambda _ft: {"color": "#7fd3ff", "weight": 2, "fill": False,
                                        "dashArray": "6 4"},
        ).add_to(m)  # fmt: skip


def _add_heat(m, sit: Situation, city: list[float], lang: str) -> None:
    import folium

    lon, lat = sit.heat
    raster = density_image(lon, lat, city, (320, 320), 350.0)
    png = base64.b64encode(density_png(raster)).decode()
    folium.raster_layers.ImageOverlay(
        image=f"data:image/png;base64,{png}", bounds=[[city[1], city[0]], [city[3], city[2]]],
        opacity=0.6, name=t("operator.layer.heat", lang),
    ).add_to(m)  # fmt: skip


def _add_points(m, sit: Situation, layers: list[str], lang: str) -> None:
    """Add the incident, camera and center layers asked for."""
    import folium

    tooltip = _safe_tooltip_class()
    if "incidents" in layers:
        group = folium.FeatureGroup(name=t("operator.layer.incidents", lang))
        for ft in sit.incidents["features"]:
            p = ft["properties"]
            x, y = ft["geometry"]["coordinates"]
            folium.CircleMarker([y, x], radius=4, color="#0b1118", weight=1, fill=True,
                                fill_color=CAT_COLORS.get(p["cat"], "#e5edf5"), fill_opacity=0.9,
                                tooltip=tooltip(inert_html(f"#{p['id']} {p['name']}"))).add_to(group)  # fmt: skip
        group.add_to(m)
    if "cameras" in layers:
        group = folium.FeatureGroup(name=t("operator.layer.cameras", lang))
        for r in sit.cameras:
            folium.CircleMarker([r["lat"], r["lon"]], radius=4 if r["cls"] == 1 else 3,
                                color="#0b1118", weight=1, fill=True, fill_opacity=0.95,
                                fill_color=CAMERA_COLORS.get(r["status"], "#95a5a6")).add_to(group)  # fmt: skip
        group.add_to(m)
    if "centers" in layers:
        group = folium.FeatureGroup(name=t("operator.layer.centers", lang))
        for r in sit.centers:
            folium.CircleMarker([r["lat"], r["lon"]], radius={"city": 10, "county": 8,
                                                              "township": 6}.get(r["level"], 5),
                                color="#ffffff", weight=2, fill=True, fill_opacity=1,
                                fill_color=CENTER_COLORS.get(r["level"], "#fff"),
                                tooltip=tooltip(inert_html(r["name"]))).add_to(group)  # fmt: skip
        group.add_to(m)


def _side_box(sit: Situation, f, lang: str, now: dt.datetime) -> tuple[str, str]:
    """Return the side box HTML (filters, KPIs, legend) and the page title."""
    cst = now.astimezone(mapdata.CST)
    start, end = f.time_range(now)
    cats = ", ".join(f.categories) if f.categories else t("operator.export.all", lang)
    area = " › ".join(p["name"] for p in sit.path) or t("operator.city", lang)
    window = t(f"operator.window.{f.window}", lang)
    if f.window == "custom":
        window += (
            f" {start.astimezone(mapdata.CST):%Y-%m-%d} – {end.astimezone(mapdata.CST):%Y-%m-%d}"
        )
    kp = sit.kpis
    pct = lambda v: "—" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    rows_html = "".join(
        f"<tr><td>{inert_html(k)}</td><td>{inert_html(v)}</td></tr>"
        for k, v in [
            (t("operator.export.generated", lang), f"{cst:%Y-%m-%d %H:%M} (UTC+8)"),
            (t("operator.categories", lang), cats),
            (t("operator.card.area", lang), area),
            (t("operator.kpi.open", lang), kp["open"]),
            (t("operator.kpi.overdue", lang), kp["overdue"]),
            (t("operator.kpi.new_today", lang), kp["new_today"]),
            (t("operator.kpi.closure_rate", lang), pct(kp["closure_rate"])),
            (t("operator.kpi.ontime_rate", lang), pct(kp["ontime_rate"])),
        ]
    )  # fmt: skip
    legend = "".join(
        f"<span><span class='sw' style='background:{c}'></span>{inert_html(t(f'camera.status.{k}', lang))}</span> "
        for k, c in list(CAMERA_COLORS.items())[:3]
    )  # fmt: skip
    box = (f"<div class='gs-box'><h1>{inert_html(t('operator.export.title', lang))}</h1>"
           f"<div>{inert_html(window)}</div><table>{rows_html}</table>"
           f"<div style='margin-top:6px'>{legend}</div></div>")  # fmt: skip
    title = f"{t('operator.export.title', lang)} {cst:%Y-%m-%d %H:%M}"
    return box, title


def build_situation_html(
    ctx: AppContext, args: dict, scope: Scope, *, now: dt.datetime | None = None
) -> str:
    """Return the standalone situation-map HTML of ``scope`` for the query ``args`` (offline).

    Every text from the database (grid, area, center names, category names) is made inert
    (``inert_html``) before folium puts it into the page.

    Raises
    ------
    mapdata.MapFilterError, ExportError
        For a bad filter, bbox, layer list, mode or language (message names the field).
    """
    import folium

    now = now or dt.datetime.now(dt.UTC)
    lang, mode, layers, fdict = _check_args(args, ctx.settings.web.language)
    f = mapdata.parse_filter(fdict, scope)
    db = ctx.db
    city = mapdata.city_bounds(db) or [102.6, 24.95, 102.85, 25.15]
    window = _parse_bbox(args.get("bbox"), city)
    sit = run(db, situation, f, tuple(window), layers, now=now, lang=lang)
    m = _base_map(window)
    if "grids" in layers:
        cov = mapdata.grid_coverage(db, scope) if mode == "coverage" else {}
        _add_grids(m, sit, cov, mode, lang)
    if "areas" in layers:
        _add_districts(m, sit, lang)
    if "heat" in layers:
        _add_heat(m, sit, city, lang)
    _add_points(m, sit, layers, lang)
    folium.LayerControl(collapsed=False, position="bottomleft").add_to(m)
    minx, miny, maxx, maxy = window
    m.fit_bounds([[miny, minx], [maxy, maxx]])
    box, title = _side_box(sit, f, lang, now)
    literal = _literal_html_class()
    m.get_root().html.add_child(literal(box))
    m.get_root().header.add_child(literal(f"<title>{inert_html(title)}</title>"), name="gs_title")
    out = m.get_root().render()
    if _URL_IN_TAG.search(out):  # a folium element brought its own CDN link: fail loudly
        raise RuntimeError("the situation export would load a resource from the internet")
    return out


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Add ``/export/situation.html`` to ``server`` (map roles only, each export audited)."""
    declare_policy(server, "/export/", EXPORT_ROLES)

    @server.get("/export/situation.html")
    def situation_export():
        args = flask.request.args.to_dict()
        try:
            body = build_situation_html(ctx, args, request_scope())
        except (mapdata.MapFilterError, ExportError) as exc:
            return flask.jsonify(error=str(exc)), 400
        audit = ctx.hooks.audit
        if audit is not None:
            audit("map.export", **{k: v for k, v in args.items() if k != "lang"})
        stamp = dt.datetime.now(mapdata.CST).strftime("%Y%m%d-%H%M")
        resp = flask.Response(body, mimetype="text/html")
        resp.headers["Content-Disposition"] = f'attachment; filename="situation-{stamp}.html"'
        return resp
