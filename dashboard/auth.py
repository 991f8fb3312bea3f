"""The access guard: the default-deny route policy in front of every route, and the Dash guard.

``register(server, ctx)`` runs first among the route modules (``dashboard.app.ROUTE_MODULES``)
and installs a ``before_request`` guard in front of every route:

1. who is asking (``dashboard.principal.current_principal``): the signed session cookie
   (form login), an API token (``Authorization: Bearer gst_...``), or HTTP Basic with a
   user's credentials (only on ``/ogc``, for GIS clients that speak nothing else);
2. which policy covers the path (``dashboard.policy``: ``ACCESS_MATRIX`` plus ``declare_policy``
   calls of other route modules; longest prefix wins, a method-specific entry beats a
   method-less one); a path no policy covers is **denied**; a Dash callback writing to a
   page's components is refused to whoever may not open that page;
3. CSRF (``dashboard.csrf``): every state-changing request authenticated by the session
   cookie (or anonymous, such as the login form) must carry the session's CSRF token.

Denials and the sign-in pages are ``dashboard.auth_views``. API tokens only ever open the
machine paths (``/api/``, ``/ogc``, ``/open311``) and only where a policy names their role.

Sessions live on the server (``layers.services.sessions``): the signed cookie carries a random
session id, the ``user_sessions`` table its digest. A session ends at logout, after
``settings.web.session_minutes`` without a request, and when its account is disabled or its
password, role or scopes change; a request with an ended session is refused at once in this
process and within ``PRINCIPAL_RECHECK_S`` in any other. Long-lived responses (MJPEG, SSE)
call ``principal_still_valid`` every few seconds and end when it says no.

This module is also the access API the pages and routes import (``require_roles``,
``current_principal``, ``declare_policy``, ...).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import flask

from dashboard import auth_views, throttle
from dashboard.auth_forms import LABELS
from dashboard.components.console import (  # noqa: F401 - re-exported for the console pages
    CONSOLE_STYLE,
    ROW_STYLE,
    TABLE_STYLE,
    user_badge,
)
from dashboard.context import AppContext
from dashboard.csrf import csrf_ok, csrf_token, set_csrf_cookie  # noqa: F401 - csrf_token: API
from dashboard.policy import (  # noqa: F401 - the access API, imported from here too
    ACCESS_MATRIX,
    AUTHENTICATED,
    BASIC_PREFIXES,
    GET,
    GET_POST,
    HOME_BY_ROLE,
    MACHINE_PREFIXES,
    MAP_ROLES,
    PERSONAL_DATA_ROLES,
    PUBLIC,
    VIDEO_ROLES,
    Policy,
    PolicyError,
    Principal,
    allowed_paths,
    camera_allowed,
    declare_policy,
    home_for,
    is_allowed,
    may_see_personal_data,
    policies,
    resolve_policy,
)
from dashboard.principal import (  # noqa: F401 - the access API, imported from here too
    PRINCIPAL_RECHECK_S,
    current_principal,
    principal_from_user,
    principal_still_valid,
)
from dashboard.proxies import SessionCookies, TrustedProxyFix
from layers.services import users as user_service
from layers.services.transaction import ConflictError, run
from layers.services.users import ROLES

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# -- Dash page / callback guard ---------------------------------------------------------------
def has_role(*roles: str) -> bool:
    """Return True if the current request's principal has one of ``roles``."""
    p = current_principal()
    return p is not None and p.kind == "user" and p.role in roles


def forbidden_panel(lang: str = "zh"):
    """Return the Dash panel shown instead of a page the role may not open."""
    from dash import html as dhtml

    zh, en = LABELS["forbidden"]
    return dhtml.Div(
        className="gs-page gs-forbidden",
        id="forbidden-panel",
        children=[
            dhtml.H2(f"{zh} / {en}"),
            dhtml.A(" / ".join(LABELS["home"]), href="/"),
        ],
    )


def require_roles(*roles: str, deny: str | None = None) -> Callable:
    """Return a decorator that runs the function only for principals with one of ``roles``.

    For a page ``layout`` (or ``deny="panel"``) a refused principal gets ``forbidden_panel``;
    for a callback (``deny="prevent"``, the default for functions not named ``layout``) the
    call raises ``PreventUpdate``, so no data leaves the server.
    """
    bad = set(roles) - set(ROLES)
    if bad or not roles:
        raise PolicyError(f"require_roles got invalid roles {sorted(bad)}; use {ROLES}")

    def decorate(func: Callable) -> Callable:
        mode = deny or ("panel" if func.__name__ == "layout" else "prevent")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any):
            if has_role(*roles):
                return func(*args, **kwargs)
            p = current_principal()
            log.info("refused %s to %s (%s)", func.__qualname__, p.name if p else "anonymous", mode)
            if mode == "panel":
                return forbidden_panel()
            from dash.exceptions import PreventUpdate

            raise PreventUpdate

        return wrapper

    return decorate


# Dash component ids start with their page's name (STYLE.md); a callback whose outputs belong
# to a page is refused to anybody who may not open that page, whatever the page module does.
PAGE_ID_PREFIXES = {
    "operator": "/",
    "dispatch": "/dispatch",
    "privacy": "/privacy",
    "audit": "/audit",
    "admin": "/admin",
}


def callback_pages(body: object) -> set[str]:
    """Return the page paths whose components a Dash callback request writes to."""
    if not isinstance(body, dict):
        return set()
    outputs = body.get("outputs")
    if isinstance(outputs, dict):
        outputs = [outputs]
    pages = set()
    for out in outputs if isinstance(outputs, list) else []:
        cid = out.get("id") if isinstance(out, dict) else None
        if isinstance(cid, dict):  # pattern-matching id: {"type": "operator-card", ...}
            cid = cid.get("type")
        if isinstance(cid, str):
            page = PAGE_ID_PREFIXES.get(cid.split("-", 1)[0])
            if page is not None:
                pages.add(page)
    return pages


MUST_CHANGE_OK = ("/account/password", "/logout", "/login", "/assets/", "/healthz", "/_favicon")


def _guard():
    req = flask.request
    server = flask.current_app
    path = req.path
    principal = current_principal()
    if principal is not None:
        flask.g.user = principal  # dashboard/routes/video.py reads the viewer's name here
    if flask.g.get("auth_error") and req.headers.get("Authorization"):
        # explicit but wrong credentials: never fall back to anything else
        return auth_views.deny(None)
    if (
        principal is not None
        and principal.kind == "user"
        and principal.must_change_password
        and not path.startswith(MUST_CHANGE_OK)
    ):
        if auth_views.wants_html():
            return flask.redirect("/account/password")
        return auth_views.json_error(
            403, "change your one-time password at /account/password first"
        )
    policy = resolve_policy(server, path, req.method)
    if not is_allowed(policy, principal, path):
        if policy is None:
            log.info("denied undeclared path %s %s", req.method, path)
        return auth_views.deny(principal)
    if path == "/_dash-update-component" and req.method == "POST":
        for page in callback_pages(req.get_json(silent=True)):
            if not is_allowed(resolve_policy(server, page), principal, page):
                log.info("refused a %s callback to %s", page, principal.name if principal else "-")
                return auth_views.json_error(403, f"role may not use the {page} page's callbacks")
    if req.method in UNSAFE_METHODS and (principal is None or principal.via == "session"):
        if not csrf_ok():
            if path == "/login":
                return flask.Response(auth_views.login_html(auth_views.bi("csrf")), status=400)
            return auth_views.json_error(
                400, "missing or wrong CSRF token; reload the page and retry"
            )
    return None


# -- first start ------------------------------------------------------------------------------
def bootstrap_first_admin(ctx: AppContext, out: Callable[[str], None] = print) -> str | None:
    """Return the one-time password of a newly created ``admin`` (None if accounts exist).

    On a database without accounts this creates ``admin`` with a random password, stored
    only as an argon2 hash, to be changed at first login, and prints the password once with
    ``out`` (the console). It is never written to the log.
    """
    try:
        password = run(ctx.db, user_service.ensure_first_admin)
    except ConflictError:  # another process created it at the same moment
        return None
    if password:
        out(
            "\n" + "=" * 64 + "\nGridSight first start: created user 'admin' with the one-time "
            f"password\n\n    {password}\n\nSign in at /login and change it; it is shown only "
            "this once.\n" + "=" * 64 + "\n"
        )
        log.warning("first start: created the 'admin' account (one-time password on the console)")
    return password


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Install the access guard, CSRF cookie, the matrix and /login, /logout, password routes."""
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="gridsight_session",
        PERMANENT_SESSION_LIFETIME=ctx.settings.web.session_minutes * 60,
        GRIDSIGHT_COOKIE_SECURE=ctx.settings.web.cookie_secure,
    )
    server.session_interface = SessionCookies()
    if ctx.settings.web.trusted_proxies.strip():
        server.wsgi_app = TrustedProxyFix(server.wsgi_app, ctx.settings.web.trusted_proxies)
    ctx.login_throttle = throttle.LoginThrottle(server, ctx.settings)
    for prefix, methods, roles in ACCESS_MATRIX:
        declare_policy(server, prefix, roles, methods)
    server.before_request(_guard)
    server.after_request(set_csrf_cookie)
    server.add_url_rule("/login", "auth_login", auth_views.login_view, methods=["GET", "POST"])
    server.add_url_rule("/logout", "auth_logout", auth_views.logout_view, methods=["GET", "POST"])
    server.add_url_rule(
        "/account/password", "auth_password", auth_views.password_view, methods=["GET", "POST"]
    )
    from dashboard.access_hooks import install_video_hooks  # it builds on this module

    install_video_hooks(ctx)
    bootstrap_first_admin(ctx)
