"""Admin page: user accounts and API tokens (create, disable/enable, re-role, revoke). Admin only.

Generated passwords and tokens are shown once, in the callback's response, and never stored
in the page state or the log. Every change is audited by the users service.

Separation of duties: creating, enabling or giving the role of an admin, auditor or privacy
officer files a request (``layers.services.role_requests``) that a second admin approves or
rejects in the requests table here; the one-time password of an approved new account is
shown to the approver. Tokens of those roles are made only with the shell CLI.
"""

from __future__ import annotations

import json
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
from layers.services import account_admin, role_requests
from layers.services import users as user_service
from layers.services.audit import AuditError
from layers.services.transaction import run
from layers.services.users import ROLES, SOD_ROLES

log = logging.getLogger(__name__)

dash.register_page(__name__, path="/admin", name="admin", title="GridSight · 管理 Admin")

L = {
    "users": "用户 Users",
    "tokens": "API 令牌 Tokens",
    "name": "用户名 Username",
    "role": "角色 Role",
    "districts": "区县范围 Districts (GB/T 2260, 逗号分隔)",
    "cameras": "摄像机范围 Cameras (GB/T 28181, 逗号分隔)",
    "create": "创建 Create",
    "disable": "停用 Disable",
    "enable": "启用 Enable",
    "revoke": "吊销 Revoke",
    "token_name": "令牌名 Token name",
    "change_role": "改角色 Change role",
    "requests": "待批准 Requests awaiting a second admin",
    "request_id": "申请号 Request #",
    "approve": "批准 Approve",
    "reject": "驳回 Reject",
}


def _table(header: list[str], rows: list[list], table_id: str) -> html.Table:
    return html.Table(
        id=table_id,
        className="gs-table",
        style=TABLE_STYLE,
        children=[
            html.Thead(html.Tr([html.Th(h) for h in header])),
            html.Tbody([html.Tr([html.Td(str(c)) for c in r]) for r in rows]),
        ],
    )


def users_table() -> html.Table:
    """Return the users table (no password hashes)."""
    rows = [
        [
            u.username,
            u.role,
            "yes" if u.active else "no",
            u.locked_until.strftime("%Y-%m-%d %H:%M") if u.locked_until else "",
            "yes" if u.must_change_password else "",
            json.dumps(user_service.parse_scopes(u.scopes), ensure_ascii=False),
        ]
        for u in run(get_ctx().db, user_service.list_users)
    ]
    header = [
        "用户 user",
        "角色 role",
        "启用 active",
        "锁定 locked",
        "需改密 must change",
        "范围 scopes",
    ]
    return _table(header, rows, "admin-users-table")


def requests_table() -> html.Table:
    """Return the pending two-person requests (who asked for what, when)."""
    rows = [
        [
            f"#{r.id}",
            r.action,
            r.username,
            r.role,
            r.requested_by,
            r.requested_at.strftime("%Y-%m-%d %H:%M"),
        ]
        for r in run(get_ctx().db, role_requests.list_requests)
    ]
    header = ["申请 #", "操作 change", "用户 user", "角色 role", "申请人 by", "时间 at"]
    return _table(header, rows, "admin-requests-table")


def tokens_table() -> html.Table:
    """Return the API tokens table (names and state, never the token)."""
    rows = [
        [
            t.name,
            t.role,
            t.created_by,
            t.created_at.strftime("%Y-%m-%d %H:%M"),
            f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active",
        ]
        for t in run(get_ctx().db, user_service.list_tokens)
    ]
    return _table(
        ["令牌 token", "角色 role", "创建人 by", "创建 created", "状态 state"],
        rows,
        "admin-tokens-table",
    )


@require_roles("admin")
def layout(**_query) -> html.Div:
    """Return the admin page (users and tokens)."""
    return html.Div(
        className="gs-console gs-admin",
        style=CONSOLE_STYLE,
        children=[
            html.H2(L["users"]),
            html.Div(id="admin-users", children=users_table()),
            html.Div(
                style=ROW_STYLE,
                children=[
                    dcc.Input(id="admin-new-name", placeholder=L["name"], type="text"),
                    dcc.Dropdown(
                        id="admin-new-role", options=list(ROLES), value="operator", clearable=False
                    ),
                    dcc.Input(id="admin-new-districts", placeholder=L["districts"], type="text"),
                    dcc.Input(id="admin-new-cameras", placeholder=L["cameras"], type="text"),
                    html.Button(L["create"], id="admin-create-user", n_clicks=0),
                ],
            ),
            html.Div(
                style=ROW_STYLE,
                children=[
                    dcc.Input(id="admin-target-user", placeholder=L["name"], type="text"),
                    html.Button(L["disable"], id="admin-disable-user", n_clicks=0),
                    html.Button(L["enable"], id="admin-enable-user", n_clicks=0),
                    dcc.Dropdown(
                        id="admin-target-role", options=list(ROLES), value=None, clearable=True
                    ),
                    html.Button(L["change_role"], id="admin-change-role", n_clicks=0),
                ],
            ),
            html.Div(id="admin-user-message", className="gs-message"),
            html.H3(L["requests"]),
            html.Div(id="admin-requests", children=requests_table()),
            html.Div(
                style=ROW_STYLE,
                children=[
                    dcc.Input(id="admin-request-id", placeholder=L["request_id"], type="text"),
                    html.Button(L["approve"], id="admin-approve-request", n_clicks=0),
                    html.Button(L["reject"], id="admin-reject-request", n_clicks=0),
                ],
            ),
            html.Div(id="admin-request-message", className="gs-message"),
            html.H2(L["tokens"]),
            html.Div(id="admin-tokens", children=tokens_table()),
            html.Div(
                style=ROW_STYLE,
                children=[
                    dcc.Input(id="admin-token-name", placeholder=L["token_name"], type="text"),
                    dcc.Dropdown(
                        id="admin-token-role",
                        options=list(user_service.TOKEN_ROLES),
                        value="intake",
                        clearable=False,
                    ),
                    html.Button(L["create"], id="admin-create-token", n_clicks=0),
                    html.Button(L["revoke"], id="admin-revoke-token", n_clicks=0),
                ],
            ),
            html.Div(id="admin-token-message", className="gs-message"),
        ],
    )


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").replace("，", ",").split(",") if t.strip()]


def _filed(row) -> str:
    return (
        f"已提交申请 request #{row.id} filed: {row.action} {row.username} ({row.role}); "
        "须另一名管理员批准 a second admin must approve it"
    )


def create_user_action(name: str, role: str, districts: str, cameras: str) -> str:
    """Return the message after creating a user (with its one-time password, shown once).

    A privileged role (admin, auditor, privacy officer) files a request instead.
    """
    p = current_principal()
    scopes = {"districts": _split(districts), "cameras": _split(cameras)}
    done = run(get_ctx().db, account_admin.create_account, name, role, scopes,
               actor=p.name, actor_role=p.role)  # fmt: skip
    if done.filed is not None:
        return _filed(done.filed)
    return (
        f"已创建 created {done.user.username} ({done.user.role}). 一次性密码 one-time password "
        f"(仅显示一次 shown once): {done.password}"
    )


def _change_account(trigger: str, target: str, target_role: str | None) -> str:
    """Return the message after disabling, enabling or re-roling ``target`` (or filing it)."""
    p = current_principal()
    who = {"actor": p.name, "actor_role": p.role}
    db = get_ctx().db
    if trigger == "admin-change-role":
        done = run(db, account_admin.change_role, target, target_role, **who)
        return _filed(done.filed) if done.filed else f"{target}: 角色 role -> {target_role}"
    active = trigger == "admin-enable-user"
    done = run(db, account_admin.set_account_active, target, active, **who)
    if done.filed:
        return _filed(done.filed)
    return f"{target}: {'enabled 已启用' if active else 'disabled 已停用'}"


@callback(
    Output("admin-user-message", "children"),
    Output("admin-users", "children"),
    Output("admin-requests", "children"),
    Input("admin-create-user", "n_clicks"),
    Input("admin-disable-user", "n_clicks"),
    Input("admin-enable-user", "n_clicks"),
    Input("admin-change-role", "n_clicks"),
    State("admin-new-name", "value"),
    State("admin-new-role", "value"),
    State("admin-new-districts", "value"),
    State("admin-new-cameras", "value"),
    State("admin-target-user", "value"),
    State("admin-target-role", "value"),
    prevent_initial_call=True,
)
@require_roles("admin")
def on_user_action(_c, _d, _e, _r, name, role, districts, cameras, target, target_role):
    """Return (message, users table, requests table) after the clicked user action."""
    message, users = user_action(
        dash.ctx.triggered_id, name, role, districts, cameras, target, target_role
    )
    return message, users, requests_table()


@require_roles("admin")
def user_action(
    trigger: str, name, role, districts, cameras, target, target_role=None
) -> tuple[str, html.Table]:
    """Return (message, users table) after ``trigger`` (create / disable / enable / role)."""
    try:
        if trigger == "admin-create-user":
            message = create_user_action(name, role, districts, cameras)
        else:
            message = _change_account(trigger, (target or "").strip(), target_role)
    except (user_service.UserError, AuditError) as exc:
        message = f"错误 error: {exc}"
    return message, users_table()


@callback(
    Output("admin-request-message", "children"),
    Output("admin-requests", "children", allow_duplicate=True),
    Output("admin-users", "children", allow_duplicate=True),
    Input("admin-approve-request", "n_clicks"),
    Input("admin-reject-request", "n_clicks"),
    State("admin-request-id", "value"),
    prevent_initial_call=True,
)
@require_roles("admin")
def on_request_action(_a, _r, request_id):
    """Return (message, requests table, users table) after approving or rejecting."""
    return request_action(dash.ctx.triggered_id, request_id)


@require_roles("admin")
def request_action(trigger: str, request_id) -> tuple[str, html.Table, html.Table]:
    """Return (message, requests table, users table) after ``trigger`` (approve / reject)."""
    p = current_principal()
    rid = str(request_id or "").strip().lstrip("#")
    db = get_ctx().db
    try:
        if trigger == "admin-approve-request":
            row, password = run(db, role_requests.approve, rid, approver=p.name,
                                approver_role=p.role)  # fmt: skip
            message = f"已批准 approved #{row.id}: {row.action} {row.username} ({row.role})"
            if password:
                message += f". 一次性密码 one-time password (仅显示一次 shown once): {password}"
        else:
            row = run(db, role_requests.reject, rid, actor=p.name, actor_role=p.role)
            message = f"#{row.id}: {row.state}"
    except (user_service.UserError, AuditError) as exc:
        message = f"错误 error: {exc}"
    return message, requests_table(), users_table()


@callback(
    Output("admin-token-message", "children"),
    Output("admin-tokens", "children"),
    Input("admin-create-token", "n_clicks"),
    Input("admin-revoke-token", "n_clicks"),
    State("admin-token-name", "value"),
    State("admin-token-role", "value"),
    prevent_initial_call=True,
)
@require_roles("admin")
def on_token_action(_c, _r, name, role):
    """Return (message, refreshed tokens table) after creating or revoking a token."""
    return token_action(dash.ctx.triggered_id, name, role)


@require_roles("admin")
def token_action(trigger: str, name: str | None, role: str | None) -> tuple[str, html.Table]:
    """Return (message, tokens table) after ``trigger`` (create / revoke button)."""
    p = current_principal()
    name = (name or "").strip()
    try:
        if trigger == "admin-create-token" and role in SOD_ROLES:
            raise user_service.UserError(
                f"a token of role {role!r} is made only with `python -m layers tokens create` "
                "on the server (tokens for people's roles bypass the second admin)"
            )
        db = get_ctx().db
        if trigger == "admin-create-token":
            row, plaintext = run(db, user_service.create_token, name, role, actor=p.name,
                                 actor_role=p.role)  # fmt: skip
            message = (
                f"已创建 created token {row.name} ({row.role}); 仅显示一次 shown once: {plaintext}"
            )
        else:
            run(db, user_service.revoke_token, name, actor=p.name, actor_role=p.role)
            message = f"已吊销 revoked {name}"
    except (user_service.UserError, AuditError) as exc:
        message = f"错误 error: {exc}"
    return message, tokens_table()
