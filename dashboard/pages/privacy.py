"""Privacy officer's console: redaction rules per scope, privacy masks drawn on a camera's
snapshot, rule versions, the live redacted view, rule changes awaiting a second officer, and
time-limited unmask grants.

Privacy officer only. Rules change through ``layers.services.rule_changes`` (held to the
deployment's privacy floor; a change that lowers protection waits for a second privacy officer
when the two-person setting is on; running streams pick a change up within a second through
the rules' revision token); grants through ``layers.services.grants``. Every save, pending
change, approval, rejection, grant and revocation is audited, naming both people.
Masks are image-space polygons in relative 0-1 frame coordinates (x right, y down), never map
coordinates. The officer draws on the *redacted* snapshot: seeing unredacted video needs a
grant like anybody else.
"""

from __future__ import annotations

import json
import logging
import re

import dash
from dash import Input, Output, State, callback, dcc, html
from pydantic import ValidationError

from dashboard.auth import (
    CONSOLE_STYLE,
    ROW_STYLE,
    TABLE_STYLE,
    current_principal,
    require_roles,
)
from dashboard.components import rule_changes as changes_ui
from dashboard.components.mask_canvas import (  # noqa: F401 - re-exported for the page's tests
    canvas_figure,
    masks_from_shapes,
    path_to_points,
    shape_to_points,
    shapes_from_masks,
    shapes_from_relayout,
)
from dashboard.context import get_ctx
from dashboard.scoping import request_scope
from layers.services import NotFoundError, ServiceError
from layers.services import audit as audit_service
from layers.services import cameras as camera_service
from layers.services import grants as grant_service
from layers.services import rule_changes as change_service
from layers.services import rules as rule_service
from layers.services.transaction import run
from streams.rules import RedactionRules, RuleScope

log = logging.getLogger(__name__)

dash.register_page(__name__, path="/privacy", name="privacy", title="GridSight · 隐私 Privacy")

ROLE = "privacy_officer"
MAX_CAMERAS = 5000
SCOPE_KINDS = [
    {"label": "摄像机 camera", "value": "camera"},
    {"label": "网格 grid", "value": "grid"},
    {"label": "区县 district", "value": "district"},
    {"label": "类别 camera class", "value": "camera_class"},
    {"label": "全局 default", "value": "default"},
]


def build_rules(
    targets: list[str], method: str, strength: float, masks: list[dict], base: dict | None = None
) -> dict:
    """Return a validated ``RedactionRules`` dict from the editor's fields.

    ``base`` is the rule being edited: the fields the editor does not show (detectors,
    detection cadence, margin ...) keep its values instead of going back to the defaults.

    Raises
    ------
    ValueError
        With the field and the fix, when a value is not allowed.
    """
    edited = {
        "targets": sorted(targets or []),
        "method": method,
        "strength": strength,
        "masks": masks,
    }
    try:
        rules = RedactionRules.model_validate({**(base or {}), **edited})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{where}: {err['msg']}") from exc
    return rules.model_dump(mode="json")


# -- layout ---------------------------------------------------------------------------------
def camera_options() -> list[dict]:
    """Return dropdown options for the cameras (id, name, GB/T 28181 id)."""
    cams = camera_service.list_cameras(get_ctx().db, scope=request_scope())[:MAX_CAMERAS]
    return [{"label": f"{c['id']} · {c['name']} · {c['gb_id']}", "value": c["id"]} for c in cams]


@require_roles(ROLE)
def layout(**_query) -> html.Div:
    """Return the privacy console."""
    return html.Div(
        className="gs-console gs-privacy",
        style=CONSOLE_STYLE,
        children=[
            dcc.Store(id="privacy-shapes", data=[]),
            html.H2("脱敏规则 Redaction rules"),
            changes_ui.floor_note(
                get_ctx().settings.privacy.floor(),
                get_ctx().settings.privacy.unmask_requires_second_approver,
            ),
            html.Div(
                style=ROW_STYLE,
                children=[
                    dcc.Dropdown(
                        id="privacy-camera",
                        options=camera_options(),
                        placeholder="选择摄像机 choose a camera",
                        style={"minWidth": "420px"},
                    ),
                    dcc.RadioItems(
                        id="privacy-scope-kind", options=SCOPE_KINDS, value="camera", inline=True
                    ),  # fmt: skip
                    dcc.Input(
                        id="privacy-scope-value", placeholder="范围值 scope value", type="text"
                    ),
                ],
            ),
            html.Div(
                className="gs-privacy-editor",
                style={"display": "flex", "gap": "16px", "flexWrap": "wrap"},
                children=[
                    html.Div(
                        style={"flex": "1 1 480px"},
                        children=[
                            html.Div("在快照上绘制遮挡区域 Draw privacy masks on the snapshot"),
                            dcc.Graph(
                                id="privacy-canvas",
                                figure=canvas_figure(None, []),
                                config={
                                    "displaylogo": False,
                                    "modeBarButtonsToAdd": [
                                        "drawclosedpath",
                                        "drawrect",
                                        "eraseshape",
                                    ],
                                    "modeBarButtonsToRemove": ["toImage"],
                                },
                            ),
                        ],
                    ),
                    html.Div(
                        style={"flex": "1 1 320px"},
                        children=[
                            html.Div("实时脱敏画面 Live redacted view"),
                            html.Img(id="privacy-live", style={"width": "100%"}),
                        ],
                    ),
                ],
            ),
            html.Div(
                style=ROW_STYLE,
                children=[
                    dcc.Checklist(
                        id="privacy-targets",
                        options=[
                            {"label": "人脸 faces", "value": "faces"},
                            {"label": "车牌 plates", "value": "plates"},
                            {"label": "行人 persons", "value": "persons"},
                        ],
                        value=sorted(get_ctx().settings.privacy.floor().targets),
                        inline=True,
                    ),
                    dcc.RadioItems(
                        id="privacy-method",
                        options=[
                            {"label": "马赛克 pixelate", "value": "pixelate"},
                            {"label": "模糊 blur", "value": "blur"},
                            {"label": "填充 fill", "value": "fill"},
                        ],
                        value="pixelate",
                        inline=True,
                    ),
                    html.Div(
                        style={"width": "260px"},
                        children=[
                            html.Span("强度 strength"),
                            dcc.Slider(
                                id="privacy-strength",
                                min=0,
                                max=1,
                                step=0.05,
                                value=0.6,
                                marks=None,
                                tooltip={"placement": "bottom"},
                            ),  # fmt: skip
                        ],
                    ),
                    dcc.Checklist(
                        id="privacy-permanent",
                        options=[{"label": "遮挡不可解除 masks stay under grants", "value": "yes"}],
                        value=["yes"],
                    ),
                    html.Button("保存规则 Save rule", id="privacy-save", n_clicks=0),
                ],
            ),
            html.Div(id="privacy-message", className="gs-message"),
            html.H3("规则版本 Rule versions"),
            html.Div(id="privacy-versions"),
            changes_ui.changes_panel(),
            html.H2("解除脱敏授权 Unmask grants"),
            html.Div(
                style=ROW_STYLE,
                children=[
                    dcc.Input(id="privacy-grantee", placeholder="被授权用户 user", type="text"),
                    dcc.Input(
                        id="privacy-grant-cameras",
                        placeholder="摄像机 camera ids (1,2)",
                        type="text",
                    ),  # fmt: skip
                    dcc.Input(
                        id="privacy-grant-minutes",
                        type="number",
                        value=30,
                        min=1,
                        max=grant_service.MAX_MINUTES,
                    ),  # fmt: skip
                    dcc.Input(
                        id="privacy-grant-reason",
                        placeholder="事由 reason",
                        type="text",
                        style={"minWidth": "280px"},
                    ),  # fmt: skip
                    html.Button("授权 Grant", id="privacy-grant", n_clicks=0),
                ],
            ),
            html.Div(
                style=ROW_STYLE,
                children=[
                    dcc.Input(id="privacy-grant-id", placeholder="授权号 grant #", type="number"),
                    html.Button("复核批准 Approve", id="privacy-approve", n_clicks=0),
                    html.Button("撤销 Revoke", id="privacy-revoke", n_clicks=0),
                ],
            ),
            html.Div(id="privacy-grant-message", className="gs-message"),
            html.Div(id="privacy-grants"),
        ],
    )


# -- data helpers ---------------------------------------------------------------------------
def _scope(kind: str, value: str | None, camera_id: int | None) -> RuleScope:
    if kind == "camera" and not value and camera_id is not None:
        value = str(camera_id)
    try:
        return RuleScope(
            kind=kind or "default", value=(value or None) if kind != "default" else None
        )
    except ValidationError as exc:
        raise ValueError(f"scope: {exc.errors()[0]['msg']}") from exc


def versions_table(scope: RuleScope | None) -> html.Table:
    """Return the version history of ``scope`` (all scopes when None): who, when, what."""
    rows = rule_service.list_versions(get_ctx().db, scope)[:200]
    body = [
        html.Tr(
            [
                html.Td(f"{r['scope']['kind']}/{r['scope']['value'] or '-'}"),
                html.Td(r["version"]),
                html.Td("✔" if r["active"] else ""),
                html.Td(r["created_by"]),
                html.Td(r.get("approved_by") or "—"),
                html.Td((r["created_at"] or "")[:19]),
                html.Td(
                    ", ".join(sorted((r["config"] or {}).get("targets", [])))
                    + f" · {(r['config'] or {}).get('method', '?')}"
                    + f" · masks {len((r['config'] or {}).get('masks', []))}"
                ),
            ]
        )
        for r in rows
    ]
    head = [
        "范围 scope",
        "版本 version",
        "生效 active",
        "修改人 by",
        "批准人 approved by",
        "时间 when (UTC)",
        "内容 rule",
    ]
    return html.Table(
        id="privacy-versions-table",
        className="gs-table",
        style=TABLE_STYLE,
        children=[html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)],
    )


def grants_table() -> html.Table:
    """Return the grants in force or awaiting approval, newest first."""
    body = [
        html.Tr(
            [
                html.Td(f"#{g.id}"),
                html.Td(g.grantee),
                html.Td(", ".join(str(c) for c in json.loads(g.camera_ids))),
                html.Td(g.reason),
                html.Td(g.granted_by),
                html.Td(g.approved_by or "—"),
                html.Td(g.expires_at.strftime("%Y-%m-%d %H:%M UTC")),
            ]
        )
        for g in run(get_ctx().db, grant_service.list_grants)
    ]
    head = ["授权 grant", "用户 user", "摄像机 cameras", "事由 reason", "授权人 by", "复核 approved",
            "到期 expires"]  # fmt: skip
    return html.Table(
        id="privacy-grants-table",
        className="gs-table",
        style=TABLE_STYLE,
        children=[html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)],
    )


# -- callbacks ------------------------------------------------------------------------------
@callback(
    Output("privacy-canvas", "figure"),
    Output("privacy-shapes", "data"),
    Output("privacy-live", "src"),
    Output("privacy-targets", "value"),
    Output("privacy-method", "value"),
    Output("privacy-strength", "value"),
    Output("privacy-versions", "children"),
    Input("privacy-camera", "value"),
)
@require_roles(ROLE)
def on_camera(camera_id):
    """Return the editor loaded with the rule in force for the chosen camera."""
    return load_camera(camera_id)


@require_roles(ROLE)
def load_camera(camera_id: int | None):
    """Return (figure, shapes, live src, targets, method, strength, versions) for a camera."""
    floor = get_ctx().settings.privacy.floor()
    if camera_id is None:
        return (
            canvas_figure(None, []),
            [],
            None,
            sorted(floor.targets),
            "pixelate",
            0.6,
            versions_table(None),
        )
    try:
        eff = rule_service.effective_rule(get_ctx().db, int(camera_id), floor)
    except (NotFoundError, ServiceError, ValueError) as exc:
        log.info("privacy console: camera %s: %s", camera_id, exc)
        return canvas_figure(None, []), [], None, sorted(floor.targets), "pixelate", 0.6, str(exc)
    rules = eff.rules.model_dump(mode="json")
    shapes = shapes_from_masks(rules["masks"])
    return (
        canvas_figure(int(camera_id), shapes),
        shapes,
        f"/video/{int(camera_id)}.mjpg",
        sorted(rules["targets"]),
        rules["method"],
        rules["strength"],
        versions_table(eff.scope),
    )


@callback(
    Output("privacy-shapes", "data", allow_duplicate=True),
    Input("privacy-canvas", "relayoutData"),
    State("privacy-shapes", "data"),
    prevent_initial_call=True,
)
@require_roles(ROLE)
def on_draw(relayout, shapes):
    """Return the shapes after the officer drew, moved or erased a mask."""
    return shapes_from_relayout(relayout, shapes or [])


@callback(
    Output("privacy-message", "children"),
    Output("privacy-versions", "children", allow_duplicate=True),
    Input("privacy-save", "n_clicks"),
    State("privacy-camera", "value"),
    State("privacy-scope-kind", "value"),
    State("privacy-scope-value", "value"),
    State("privacy-targets", "value"),
    State("privacy-method", "value"),
    State("privacy-strength", "value"),
    State("privacy-permanent", "value"),
    State("privacy-shapes", "data"),
    prevent_initial_call=True,
)
@require_roles(ROLE)
def on_save(_n, camera_id, kind, value, targets, method, strength, permanent, shapes):
    """Return (message, versions) after saving a new rule version for the scope."""
    return save_rule(camera_id, kind, value, targets, method, strength, permanent, shapes)


@require_roles(ROLE)
def save_rule(camera_id, kind, value, targets, method, strength, permanent, shapes):
    """Return (message, versions table) after validating and saving (or proposing) a rule.

    The change is held to the privacy floor; one that lowers protection waits for a second
    privacy officer when the two-person setting is on. The service audits it.
    """
    p = current_principal()
    ctx = get_ctx()
    try:
        scope = _scope(kind, value, camera_id)
        masks = masks_from_shapes(shapes or [], permanent=bool(permanent))
        config = build_rules(targets, method, strength, masks, _base_rule(scope, camera_id))
        result = change_service.change_rule(
            ctx.db, scope, config, actor=p.name, role=p.role, floor=ctx.settings.privacy.floor(),
            require_approval=ctx.settings.privacy.unmask_requires_second_approver,
        )  # fmt: skip
    except (ValueError, ServiceError) as exc:
        return f"错误 error: {exc}", dash.no_update
    where = f"{scope.kind}/{scope.value or '-'}"
    if result.status == "pending":
        return (
            f"待批准 awaiting a second privacy officer: change #{result.change['id']} for "
            f"{where} lowers protection ({'; '.join(result.lowers)}); the rule in force stays",
            versions_table(scope),
        )
    lowered = f"; 已降低保护 lowers protection: {'; '.join(result.lowers)}" if result.lowers else ""
    return (
        f"已保存 saved {where} v{result.rule['version']} ({len(masks)} masks); "
        f"运行中的视频流 1 秒内生效 running streams follow within a second{lowered}",
        versions_table(scope),
    )


def _base_rule(scope: RuleScope, camera_id: int | None) -> dict | None:
    """Return the rule an edit starts from: the scope's own, else the camera's in force."""
    db = get_ctx().db
    row = run(db, rule_service.active_row, scope)
    if row is not None:
        return rule_service.rule_dict(row)["config"]
    if camera_id is None:
        return None
    try:
        return rule_service.effective_rule(db, int(camera_id)).rules.model_dump(mode="json")
    except (NotFoundError, ServiceError, ValueError):
        return None


@callback(
    Output("privacy-change-message", "children"),
    Output("privacy-changes", "children"),
    Input("privacy-change-approve", "n_clicks"),
    Input("privacy-change-reject", "n_clicks"),
    Input("privacy-message", "children"),
    State("privacy-change-id", "value"),
    State("privacy-change-reason", "value"),
)
@require_roles(ROLE)
def on_change_decision(_a, _r, _saved, change_id, reason):
    """Return (message, pending changes) after an approval/rejection, a save, or on load."""
    return change_action(dash.ctx.triggered_id, change_id, reason)


@require_roles(ROLE)
def change_action(trigger, change_id, reason):
    """Return (message, pending changes table) after approving or rejecting a rule change."""
    p = current_principal()
    ctx = get_ctx()
    message = changes_ui.decide(
        ctx.db, trigger, change_id, reason, actor=p.name, role=p.role,
        floor=ctx.settings.privacy.floor(),
    )  # fmt: skip
    return message, changes_ui.changes_table(ctx.db)


@callback(
    Output("privacy-grant-message", "children"),
    Output("privacy-grants", "children"),
    Input("privacy-grant", "n_clicks"),
    Input("privacy-approve", "n_clicks"),
    Input("privacy-revoke", "n_clicks"),
    State("privacy-grantee", "value"),
    State("privacy-grant-cameras", "value"),
    State("privacy-grant-minutes", "value"),
    State("privacy-grant-reason", "value"),
    State("privacy-grant-id", "value"),
)
@require_roles(ROLE)
def on_grant(_g, _a, _r, grantee, cameras, minutes, reason, grant_id):
    """Return (message, grants table) after the clicked grant action (or on page load)."""
    return grant_action(dash.ctx.triggered_id, grantee, cameras, minutes, reason, grant_id)


@require_roles(ROLE)
def grant_action(trigger, grantee, cameras, minutes, reason, grant_id):
    """Return (message, grants table) after creating, approving or revoking a grant."""
    p = current_principal()
    message = ""
    db = get_ctx().db
    try:
        if trigger == "privacy-grant":
            ids = [c for c in re.split(r"[,\s，]+", cameras or "") if c]
            g = run(
                db,
                grant_service.create_grant,
                grantee=(grantee or "").strip(),
                camera_ids=ids,
                reason=reason or "",
                minutes=int(minutes) if minutes is not None else 0,
                granted_by=p.name,
                granted_by_role=p.role,
            )
            message = f"已授权 granted #{g.id} → {g.grantee}, 到期 until {g.expires_at:%H:%M} UTC"
        elif trigger in ("privacy-approve", "privacy-revoke"):
            if grant_id is None:
                raise grant_service.GrantError("grant #: enter the grant number first")
            if trigger == "privacy-approve":
                run(db, grant_service.approve_grant, int(grant_id), approver=p.name,
                    approver_role=p.role)  # fmt: skip
                message = f"已批准 approved #{int(grant_id)}"
            else:
                run(db, grant_service.revoke_grant, int(grant_id), actor=p.name,
                    actor_role=p.role)  # fmt: skip
                message = f"已撤销 revoked #{int(grant_id)}"
    except (grant_service.GrantError, audit_service.AuditError, ValueError) as exc:
        message = f"错误 error: {exc}"
    return message, grants_table()
