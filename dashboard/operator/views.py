"""What the operator page's callbacks render from service data: labels, legend, grid and
camera cards, the trend chart, hotspots and feed items. Plain functions, no data access."""

from __future__ import annotations

import datetime as dt

import plotly.graph_objects as go
from dash import html

from dashboard.i18n import t
from dashboard.operator.common import CAT_COLORS, GRID_MODES, KPIS, LAYERS
from layers.services import mapdata

WINDOWS = ("1h", "24h", "7d", "custom")
SECTIONS = ("layers", "categories", "trend", "hotspots", "card", "feed")


def labels(lang: str, category_names: dict[str, str]) -> tuple:
    """Return every static label of the page in ``lang`` (the order of ``render_labels``)."""
    windows = [{"label": t(f"operator.window.{w}", lang), "value": w} for w in WINDOWS]
    layers = [{"label": html.Span(t(f"operator.layer.{k}", lang), id=f"operator-layer-{k}"),
               "value": k} for k in LAYERS]  # fmt: skip
    modes = [{"label": t(f"operator.gridmode.{m}", lang), "value": m} for m in GRID_MODES]
    cats = [{"label": html.Span([html.Span(className="sw", style={"background": CAT_COLORS.get(c, "#ccc")}),
                                 name]), "value": c}
            for c, name in category_names.items()]  # fmt: skip
    titles = [t(f"operator.{k}", lang) for k in SECTIONS]
    kpi_labels = [t(f"operator.kpi.{k}", lang) for k in KPIS]
    return (windows, layers, modes, cats, *titles, t("operator.export", lang),
            t("operator.export.hint", lang), t("operator.range.start", lang),
            t("operator.range.end", lang), *kpi_labels)  # fmt: skip


def _swatch(color: str, label: str, square: bool = False) -> html.Div:
    cls = "sw sq" if square else "sw"
    return html.Div([html.Span(className=cls, style={"background": color}), label])


def legend(lang: str, mode: str | None, mx: int) -> list:
    """Return the legend for the grid colouring (largest count ``mx``), heat, cameras, centers."""
    if mode == "coverage":
        grid_rows = [_swatch("rgb(200,50,60)", "0%", True), _swatch("rgb(230,180,60)", "50%", True),
                     _swatch("rgb(60,200,120)", "100%", True)]  # fmt: skip
    else:
        grid_rows = [_swatch("#1b3550", "0", True), _swatch("rgb(40,110,170)", "1", True)]
        if mx >= 4:
            mid = round((1 + mx) ** 0.5 - 1)  # the colour ramp is logarithmic
            grid_rows.append(_swatch("rgb(255,160,50)", f"{mid}", True))
        if mx >= 2:
            grid_rows.append(_swatch("rgb(230,40,50)", f"≥{mx}", True))
    cams = [_swatch(c, t(f"camera.status.{s}", lang)) for s, c in
            (("online", "#2ecc71"), ("offline", "#e74c3c"), ("stale", "#f39c12"))]  # fmt: skip
    centers = [_swatch(c, t(f"center.level.{lv}", lang)) for lv, c in
               (("city", "#ff4d6d"), ("county", "#ff9f1c"), ("township", "#ffd166"),
                ("village", "#06d6a0"))]  # fmt: skip
    return [
        html.Div(
            t(f"operator.legend.grids.{mode or 'incidents'}", lang), className="gs-legend-sub"
        ),
        html.Div(grid_rows, className="gs-legend-row"),
        html.Div(t("operator.legend.heat", lang), className="gs-legend-sub"),
        html.Div(className="gs-heat-ramp"),
        html.Div(t("operator.legend.cameras", lang), className="gs-legend-sub"),
        html.Div(cams, className="gs-legend-row"),
        html.Div(t("operator.legend.classes", lang), className="gs-legend-note"),
        html.Div(t("operator.legend.centers", lang), className="gs-legend-sub"),
        html.Div(centers, className="gs-legend-col"),
    ]


def _rows(pairs) -> html.Table:
    return html.Table(html.Tbody([html.Tr([html.Td(k), html.Td(v)]) for k, v in pairs]))


def grid_card_view(card: dict, lang: str) -> list:
    """Return the grid card's children (code, area chain, worker, open incidents, coverage)."""
    cov = card.get("coverage")
    workers = card.get("workers") or []
    worker = ", ".join(f"{w['name']} {w['phone']}" for w in workers
                       if w.get("kind") == "grid_worker") or "—"  # fmt: skip
    chain = " / ".join(c["name"] for c in (card.get("district"), card.get("street"),
                                           card.get("community")) if c)  # fmt: skip
    rows = [
        (t("operator.card.grid_code", lang), card["code"]),
        (t("operator.card.name", lang), card["name"]),
        (t("operator.card.area", lang), chain),
        (t("operator.card.worker", lang), worker),
        (t("operator.card.open", lang), str(card["counts"]["incidents_open"])),
        (t("operator.card.cameras", lang),
         f"{card['counts']['cameras_online']}/{card['counts']['cameras']}"),
        (t("operator.card.coverage", lang), "—" if cov is None else f"{100 * cov:.0f}%"),
    ]  # fmt: skip
    incs = [html.Li(f"#{p['id']} {p['name']} · P{p['prio']}") for p in card["open_incidents"]]
    return [html.Div(t("operator.card.grid", lang), className="gs-card-kind"), _rows(rows),
            html.Ul(incs, className="gs-card-list") if incs else None]  # fmt: skip


def camera_card_view(card: dict, lang: str, video: bool) -> list:
    """Return the camera card's children; the live redacted video when the route exists."""
    rows = [
        (t("operator.card.gb_id", lang), card["gb_id"]),
        (t("operator.card.name", lang), card["name"]),
        (t("operator.card.class", lang), t(f"camera.class.{card['cls']}", lang)),
        (t("operator.card.status", lang), t(f"camera.status.{card['status']}", lang)),
        (t("operator.card.ptz", lang), t(f"operator.ptz.{card['ptz_type']}", lang)),
        (t("operator.card.view", lang),
         f"{card['azimuth']:.0f}° / {card['fov']:.0f}° / {card['range_m']:.0f} m"),
        (t("operator.card.last_seen", lang), card.get("last_seen") or "—"),
        (t("operator.card.grid_code", lang), card.get("grid_code") or "—"),
    ]  # fmt: skip
    out = [html.Div(t("operator.card.camera", lang), className="gs-card-kind"), _rows(rows)]
    if video:
        out.append(html.Img(src=f"/video/{card['id']}.mjpg", className="gs-video",
                            id="operator-video", alt=t("operator.card.video", lang)))  # fmt: skip
    else:
        out.append(html.Div(t("operator.card.no_video", lang), className="gs-muted"))
    return out


def trend_figure(tr: dict, names: dict[str, str], lang: str) -> go.Figure:
    """Return the stacked bar chart of incidents per time bucket and category group."""
    fig = go.Figure()
    x = [e[5:16].replace("T", " ") for e in tr["edges"]]
    for code, ys in tr["series"].items():
        fig.add_bar(x=x, y=ys, name=names.get(code, code), marker_color=CAT_COLORS.get(code))
    fig.update_layout(
        barmode="stack", margin={"l": 30, "r": 6, "t": 4, "b": 24}, height=190,
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
        font={"color": "#c8d6e5", "size": 10,
              "family": "Noto Sans CJK SC, Microsoft YaHei, sans-serif"},
        legend={"orientation": "h", "y": -0.25, "font": {"size": 9}}, showlegend=False,
        xaxis={"showgrid": False, "nticks": 6}, yaxis={"gridcolor": "#24405f"},
        bargap=0.15,
    )  # fmt: skip
    if not tr["series"]:
        fig.add_annotation(text=t("operator.trend.empty", lang), showarrow=False,
                           font={"color": "#8aa4bf"})  # fmt: skip
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return fig


def _hot_title(h: dict) -> str:
    return h["code"] if h.get("z") is None else f"{h['code']} · Gi* z = {h['z']:.2f}"


def hotspot_items(hot: list[dict], lang: str) -> list:
    """Return the hotspot list: one button per grid (rank, name, count; code and Gi* z as its
    tooltip), or the empty note."""
    return [
        html.Button([html.Span(f"{i + 1}", className="gs-hot-rank"),
                     html.Span(h["name"], className="gs-hot-name"),
                     html.Span(f"{h['count']}", className="gs-hot-count")],
                    id={"type": "operator-hot", "grid": h["grid_id"]}, className="gs-hot-item",
                    n_clicks=0, title=_hot_title(h))
        for i, h in enumerate(hot)
    ] or [html.Div(t("operator.hotspots.empty", lang), className="gs-muted")]  # fmt: skip


def feed_item(p: dict) -> html.Div:
    """Return one feed line (colour, China time, name, id) of an incident's properties."""
    when = dt.datetime.fromisoformat(p["t"]).astimezone(mapdata.CST).strftime("%H:%M:%S")
    return html.Div(
        [html.Span(className="sw", style={"background": CAT_COLORS.get(p["cat"], "#ccc")}),
         html.Span(when, className="gs-feed-time"), p["name"],
         html.Span(f"#{p['id']}", className="gs-feed-id")],
        className="gs-feed-item")  # fmt: skip


def feed_items(features: list[dict], lang: str) -> list:
    """Return the feed, newest first, of incident ``features`` (oldest first), or the note."""
    items = [feed_item(feat["properties"]) for feat in reversed(features)]
    return items or [html.Div(t("operator.feed.empty", lang), className="gs-muted")]
