"""The privacy console's rule-change panel: the floor, pending changes, approve and reject.

Layout pieces and plain functions for ``dashboard/pages/privacy.py`` (which owns the
callbacks). A change that lowers protection waits here, with the reasons it lowers it, until
a privacy officer other than the one who asked approves it; any officer may reject it.
"""

from __future__ import annotations

from dash import dcc, html

from dashboard.auth import ROW_STYLE, TABLE_STYLE
from layers.db import Database
from layers.services import audit
from layers.services import rule_changes as change_service
from layers.services import rules as rule_service
from streams.floor import PrivacyFloor


def floor_note(floor: PrivacyFloor, two_person: bool) -> html.Div:
    """Return the line stating the deployment's floor and whether lowering needs approval."""
    rule = (
        "降低保护需第二名隐私官批准 lowering protection needs a second privacy officer"
        if two_person
        else "降低保护立即生效并记为降级 lowering applies at once, audited as lowering"
    )
    return html.Div(
        id="privacy-floor",
        className="gs-message",
        children=f"隐私底线 privacy floor: {floor.describe()} · {rule}",
    )


def changes_panel() -> html.Div:
    """Return the pending-changes section: change number, approve/reject, message, table."""
    return html.Div(
        children=[
            html.H3("待批准的规则变更 Rule changes awaiting approval"),
            html.Div(
                style=ROW_STYLE,
                children=[
                    dcc.Input(id="privacy-change-id", placeholder="变更号 change #", type="number"),
                    dcc.Input(id="privacy-change-reason", placeholder="理由 reason", type="text"),
                    html.Button("批准 Approve", id="privacy-change-approve", n_clicks=0),
                    html.Button("驳回 Reject", id="privacy-change-reject", n_clicks=0),
                ],
            ),
            html.Div(id="privacy-change-message", className="gs-message"),
            html.Div(id="privacy-changes"),
        ]
    )


def changes_table(db: Database) -> html.Table:
    """Return the pending rule changes, newest first: scope, what lowers, who asked, when."""
    rows = change_service.list_changes(db, "pending")
    body = [
        html.Tr(
            [
                html.Td(f"#{c['id']}"),
                html.Td(f"{c['scope']['kind']}/{c['scope']['value'] or '-'}"),
                html.Td("删除 remove" if c["op"] == "deactivate" else "保存 save"),
                html.Td("; ".join(c["lowers"])),
                html.Td(c["requested_by"]),
                html.Td((c["requested_at"] or "")[:19]),
                html.Td(c["reason"]),
            ]
        )
        for c in rows
    ]
    head = ["变更 change", "范围 scope", "操作 op", "降低之处 lowers", "申请人 by",
            "时间 when (UTC)", "理由 reason"]  # fmt: skip
    return html.Table(
        id="privacy-changes-table",
        className="gs-table",
        style=TABLE_STYLE,
        children=[html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)],
    )


def decide(
    db: Database,
    trigger: str | None,
    change_id: int | None,
    reason: str | None,
    *,
    actor: str,
    role: str,
    floor: PrivacyFloor,
) -> str:
    """Return the message after approving or rejecting a change ("" when nothing was clicked)."""
    if trigger not in ("privacy-change-approve", "privacy-change-reject"):
        return ""
    if change_id is None:
        return "错误 error: change #: enter the change number first"
    try:
        if trigger == "privacy-change-approve":
            result = change_service.approve_change(
                db, int(change_id), approver=actor, role=role, floor=floor
            )
            version = f" → v{result.rule['version']}" if result.rule else ""
            return f"已批准并生效 approved #{int(change_id)}{version}, in force now"
        change_service.reject_change(
            db, int(change_id), actor=actor, role=role, reason=reason or ""
        )
        return f"已驳回 rejected #{int(change_id)}"
    except (rule_service.RuleConfigError, audit.AuditError, ValueError) as exc:
        return f"错误 error: {exc}"
