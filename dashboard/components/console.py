"""The access-control consoles' shared look (admin, audit, privacy) and the shell's user box."""

from __future__ import annotations

from typing import Any

from dashboard.auth_forms import LABELS

ROLE_LABELS = {
    "operator": "值班员 operator",
    "dispatcher": "调度员 dispatcher",
    "privacy_officer": "隐私官 privacy officer",
    "auditor": "审计员 auditor",
    "admin": "管理员 admin",
}


def user_badge(principal: Any):
    """Return the shell's user box: name, role and a sign-out link (or a sign-in link)."""
    from dash import html as dhtml

    if principal is None:
        return dhtml.A(" / ".join(LABELS["title"]), href="/login", className="gs-user-login")
    return [
        dhtml.Span(principal.name, id="app-user-name", className="gs-user-name"),
        dhtml.Span(
            ROLE_LABELS.get(principal.role, principal.role),
            className="gs-user-role",
            style={"margin": "0 10px 0 6px", "opacity": 0.75},
        ),
        # a plain link: /logout shows a confirmation form that POSTs with the CSRF token
        dhtml.A(
            " / ".join(LABELS["logout"]), href="/logout", id="app-logout", className="gs-logout"
        ),
    ]


# Inline styles of the access-control consoles (admin, audit, privacy): a scrolling block page
# on the dark shell, with Dash 4's component colours set through its CSS variables.
CONSOLE_STYLE = {
    "display": "block",
    "height": "100%",
    "overflowY": "auto",
    "boxSizing": "border-box",
    "padding": "12px 24px 40px",
    "color": "#e5edf5",
    "--Dash-Text-Strong": "#e5edf5",
    "--Dash-Text-Primary": "#e5edf5",
    "--Dash-Text-Weak": "#8aa4bf",
    "--Dash-Fill-Inverse-Strong": "#13233a",
    "--Dash-Fill-Interactive-Strong": "#1f6feb",
    "--Dash-Fill-Interactive-Weak": "#1d3250",
    "--Dash-Stroke-Strong": "#2f5680",
    "--Dash-Stroke-Weak": "#24405f",
}
ROW_STYLE = {
    "display": "flex",
    "gap": "12px",
    "alignItems": "center",
    "flexWrap": "wrap",
    "margin": "8px 0",
}
TABLE_STYLE = {
    "borderCollapse": "separate",
    "borderSpacing": "14px 4px",
    "fontSize": "13px",
    "margin": "6px 0 16px",
}
