"""The sign-in pages and the answers to refused requests.

``/login`` (throttled form sign-in; a fresh session id and CSRF token on success), ``/logout``
(ends the server-side session) and ``/account/password`` (ends every other session of the
account). ``deny`` answers a refused request: anonymous page navigations are redirected to
``/login?next=...``, anonymous API, Dash and video requests get ``401`` JSON, signed-in
principals without the role ``403``. The HTML comes from ``dashboard.auth_forms``.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import quote, urlsplit

import flask

from dashboard import auth_forms
from dashboard.context import get_ctx
from dashboard.csrf import csrf_token
from dashboard.policy import BASIC_PREFIXES, MACHINE_PREFIXES, Principal, home_for
from dashboard.principal import (
    current_principal,
    keep_rows_s,
    login_throttle,
    start_cookie_session,
    verify_password,
)
from dashboard.proxies import cookie_secure_now
from layers.services import logins
from layers.services import users as user_service
from layers.services.transaction import run

log = logging.getLogger(__name__)


def wants_html() -> bool:
    """Return True if the request is a page navigation that should get HTML (not JSON)."""
    req = flask.request
    if req.method not in ("GET", "HEAD"):
        return False
    if req.path.startswith(
        MACHINE_PREFIXES + ("/_dash-", "/layers/", "/video/", "/tiles/", "/assets/")
    ):
        return False
    best = req.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "text/html"


def json_error(status: int, message: str, **headers: str) -> flask.Response:
    """Return the JSON error answer {error, status} with ``headers``."""
    resp = flask.jsonify(error=message, status=status)
    resp.status_code = status
    for k, v in headers.items():
        resp.headers[k] = v
    return resp


def deny(principal: Principal | None) -> flask.Response:
    """Return the answer to a refused request: redirect to /login, 401, 429 or 403."""
    req = flask.request
    if principal is None:
        if wants_html():
            target = req.full_path.rstrip("?") if req.query_string else req.path
            url = "/login?next=" + quote(target, safe="/")
            if flask.g.get("session_expired"):
                url += "&msg=expired"
            return flask.redirect(url, code=302)
        message = flask.g.get("auth_error") or "login required"
        headers = {}
        retry = flask.g.get("auth_retry_after")
        if retry is not None:
            return json_error(429, message, **{"Retry-After": str(retry)})
        if req.path.startswith(BASIC_PREFIXES):
            headers["WWW-Authenticate"] = 'Basic realm="GridSight OGC", charset="UTF-8"'
        elif req.path.startswith(MACHINE_PREFIXES):
            headers["WWW-Authenticate"] = 'Bearer realm="GridSight API"'
        return json_error(401, message, **headers)
    if wants_html():
        return flask.Response(_forbidden_html(), status=403, mimetype="text/html")
    return json_error(403, f"role {principal.role!r} may not {req.method} {req.path}")


def bi(key: str, **fmt: str) -> str:
    """Return the bilingual (zh / en) label ``key`` of the sign-in pages."""
    return auth_forms.bi(key, **fmt)


def login_html(message: str = "", kind: str = "err", next_url: str = "", username: str = "") -> str:
    """Return the login page with ``message`` (CSRF token of this session in the form)."""
    return auth_forms.login_html(csrf_token(), message, kind, next_url, username)


def _password_html(message: str = "", kind: str = "err") -> str:
    p = current_principal()
    name, must_change = (p.name, p.must_change_password) if p else ("", False)
    return auth_forms.password_html(csrf_token(), name, must_change, message, kind)


def _logout_html() -> str:
    return auth_forms.logout_html(csrf_token())


def _forbidden_html() -> str:
    p = current_principal()
    return auth_forms.forbidden_html(f"{p.name} ({p.role})" if p else "")


def _safe_next(url: str | None) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith("//"):
        return ""
    if "\\" in url or url.startswith(("/login", "/logout")):
        return ""
    return url


def login_view():
    """Return the login form (GET) or the answer to a sign-in (POST)."""
    req = flask.request
    if req.method == "GET":
        p = current_principal()
        if p is not None and p.kind == "user":
            return flask.redirect(_safe_next(req.args.get("next")) or home_for(p))
        msg = req.args.get("msg", "")
        kind = "info" if msg in ("logged_out", "changed") else "err"
        text = bi(msg) if msg in ("expired", "logged_out", "changed") else ""
        return login_html(text, kind, _safe_next(req.args.get("next")))
    username = (req.form.get("username") or "").strip()[:64]
    password = req.form.get("password") or ""
    next_url = _safe_next(req.form.get("next"))
    result, refusal = verify_password(username, password, "form")
    if refusal is not None:
        key = "busy" if refusal.reason == "busy" else "throttled"
        resp = flask.Response(
            login_html(bi(key, m=str(refusal.minutes)), "err", next_url, username),
            status=503 if key == "busy" else 429,
        )
        resp.headers["Retry-After"] = str(refusal.retry_after_s)
        return resp
    if not result.ok:
        # unknown name, wrong password, disabled account: one answer, so none is revealed
        return flask.Response(login_html(bi("bad"), "err", next_url, username), status=401)
    principal = flask.g.pop("new_principal")
    if principal.must_change_password:
        resp = flask.redirect("/account/password")
    else:
        resp = flask.redirect(next_url or home_for(principal))
    login_throttle().remember_device(resp, username, cookie_secure_now())
    return resp


def logout_view():
    """Return the logout confirmation (GET) or end the session and go to /login (POST)."""
    ctx = get_ctx()
    p = current_principal()
    if flask.request.method == "GET":
        if p is None or p.kind != "user":
            return flask.redirect("/login")
        return _logout_html()
    if p is not None and p.kind == "user":
        run(ctx.db, logins.sign_out, p.session_id, actor=p.name, role=p.role)
    flask.session.clear()
    flask.g.pop("principal", None)
    return flask.redirect("/login?msg=logged_out")


def password_view():
    """Return the password form (GET) or the answer to a password change (POST)."""
    ctx = get_ctx()
    p = current_principal()
    if p is None or p.kind != "user" or p.via != "session":
        return deny(p)
    if flask.request.method == "GET":
        return _password_html()
    form = flask.request.form
    current, new, confirm = form.get("current", ""), form.get("new", ""), form.get("confirm", "")
    if new != confirm:
        return flask.Response(_password_html(bi("mismatch")), status=400)
    try:
        sid = run(
            ctx.db, logins.change_password, p.user_id, current, new, actor=p.name,
            actor_role=p.role, client=flask.request.remote_addr or "", keep_rows_s=keep_rows_s(),
        )  # fmt: skip
    except logins.WrongPasswordError:
        return flask.Response(_password_html(bi("wrong_current")), status=400)
    except user_service.UserError as exc:
        return flask.Response(_password_html(html.escape(str(exc))), status=400)
    start_cookie_session(sid)  # every other session of the account has just ended
    return flask.redirect(home_for(p))
