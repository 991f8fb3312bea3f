"""Auditor page: search the hash-chained audit log, verify the chain, export CSV. Auditor only.

The auditor reads and exports; nothing here changes data (the export itself is audited).
"""

from __future__ import annotations

import datetime as dt
import logging

import dash
from dash import Input, Output, State, callback, dcc, html

from dashboard.auth import (
    CONSOLE_STYLE,
    ROW_STYLE,
    TABLE_STYLE,
    current_principal,
    require_roles,
)
from dashboard.context import get_ctx
from layers.services import ServiceError
from layers.services import audit as audit_service
from layers.services.transaction import run

log = logging.getLogger(__name__)

dash.register_page(__name__, path="/audit", name="audit", title="GridSight · 审计 Audit")

CHINA_TZ = dt.timezone(dt.timedelta(hours=8))
PAGE_ROWS = 500
HEADER = [
    "序号 seq",
    "时间 time (UTC+8)",
    "操作人 actor",
    "角色 role",
    "动作 action",
    "对象 target",
    "详情 detail",
]


@require_roles("auditor")
def layout(**_query) -> html.Div:
    """Return the audit page: filters, results table, chain check and CSV export."""
    return html.Div(
        className="gs-console gs-audit",
        style=CONSOLE_STYLE,
        children=[
            html.H2("审计日志 Audit log"),
            html.Div(
                style=ROW_STYLE,
                children=[
                    dcc.Input(id="audit-actor", placeholder="操作人 actor", type="text"),
                    dcc.Input(
                        id="audit-action", placeholder="动作 action (login. = prefix)", type="text"
                    ),
                    dcc.DatePickerRange(id="audit-dates", display_format="YYYY-MM-DD"),
                    html.Button("查询 Search", id="audit-search", n_clicks=0),
                    html.Button("导出 CSV Export", id="audit-export", n_clicks=0),
                    html.Button("校验 Verify chain", id="audit-verify", n_clicks=0),
                ],
            ),
            html.Div(id="audit-verify-result", className="gs-message"),
            html.Div(id="audit-count", className="gs-message"),
            html.Div(id="audit-results"),
            dcc.Download(id="audit-download"),
        ],
    )


def parse_filters(
    actor: str | None, action: str | None, start: str | None, end: str | None
) -> dict:
    """Return search filters from the form (dates are whole days in China time, end inclusive)."""
    filters: dict = {
        "actor": (actor or "").strip() or None,
        "action": (action or "").strip() or None,
    }
    if start:
        filters["since"] = _day(start, "start_date")
    if end:
        filters["until"] = _day(end, "end_date") + dt.timedelta(days=1)
    return filters


def _day(value: str, field: str) -> dt.datetime:
    """Return midnight (China time) of the ``YYYY-MM-DD`` day ``value`` starts with.

    Raises
    ------
    ServiceError
        If it is not such a day (the message names ``field``).
    """
    try:
        return dt.datetime.fromisoformat(value[:10]).replace(tzinfo=CHINA_TZ)
    except ValueError:
        raise ServiceError(f"{field}: {value[:40]!r} is not a day; use YYYY-MM-DD") from None


def results_table(entries) -> html.Table:
    """Return the results as an HTML table (newest first)."""
    rows = [
        html.Tr(
            [
                html.Td(e.seq),
                html.Td(e.ts.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")),
                html.Td(e.actor),
                html.Td(e.role),
                html.Td(e.action),
                html.Td(e.target),
                html.Td(e.detail if len(e.detail) < 300 else e.detail[:300] + "…"),
            ]
        )
        for e in entries
    ]
    return html.Table(
        id="audit-table",
        className="gs-table",
        style=TABLE_STYLE,
        children=[html.Thead(html.Tr([html.Th(h) for h in HEADER])), html.Tbody(rows)],
    )


@callback(
    Output("audit-results", "children"),
    Output("audit-count", "children"),
    Input("audit-search", "n_clicks"),
    State("audit-actor", "value"),
    State("audit-action", "value"),
    State("audit-dates", "start_date"),
    State("audit-dates", "end_date"),
)
@require_roles("auditor")
def on_search(_n, actor, action, start, end):
    """Return (results table, count line) for the filters (first PAGE_ROWS, newest first)."""
    try:
        filters = parse_filters(actor, action, start, end)
    except ValueError as exc:
        return html.Div(), f"错误 error: {exc}"
    entries = run(get_ctx().db, audit_service.search, limit=PAGE_ROWS, **filters)
    note = f"{len(entries)} 条 entries" + (
        f" (显示前 showing first {PAGE_ROWS})" if len(entries) == PAGE_ROWS else ""
    )
    return results_table(entries), note


@callback(
    Output("audit-download", "data"),
    Input("audit-export", "n_clicks"),
    State("audit-actor", "value"),
    State("audit-action", "value"),
    State("audit-dates", "start_date"),
    State("audit-dates", "end_date"),
    prevent_initial_call=True,
)
@require_roles("auditor")
def on_export(_n, actor, action, start, end):
    """Return the CSV download of the filtered log (the export is itself audited)."""
    p = current_principal()
    filters = parse_filters(actor, action, start, end)
    _n_rows, text = audit_service.export_csv(
        get_ctx().db, None, actor=p.name, role=p.role, filters=filters
    )
    stamp = dt.datetime.now(CHINA_TZ).strftime("%Y%m%d-%H%M")
    return {
        "content": "\ufeff" + text,
        "filename": f"gridsight-audit-{stamp}.csv",
        "type": "text/csv",
    }


@callback(
    Output("audit-verify-result", "children"),
    Input("audit-verify", "n_clicks"),
    prevent_initial_call=True,
)
@require_roles("auditor")
def on_verify(_n):
    """Return the chain check's summary (and the first problems)."""
    report = audit_service.verify(get_ctx().db)
    lines = [("✔ " if report.ok else "✘ ") + report.summary()]
    lines += [f"seq {p.seq}: {p.kind}: {p.message}" for p in report.problems[:10]]
    return [html.Div(line) for line in lines]
