"""Authentication, the default-deny route policy, CSRF, and the login/logout/password forms.

``register(server, ctx)`` runs first among the route modules (``dashboard.app.ROUTE_MODULES``)
and installs a ``before_request`` guard in front of every route:

1. who is asking (``current_principal``): the signed session cookie (form login), an API
   token (``Authorization: Bearer gst_...``), or HTTP Basic with a user's credentials (only on
   ``/ogc``, for GIS clients that speak nothing else);
2. which policy covers the path (``ACCESS_MATRIX`` plus ``declare_policy`` calls of other
   route modules; longest prefix wins, a method-specific entry beats a method-less one);
   a path no policy covers is **denied**;
3. CSRF: every state-changing request authenticated by the session cookie (or anonymous, such
   as the login form) must carry the session's CSRF token, in a form field ``csrf_token`` or
   the ``X-CSRFToken`` header (Dash's renderer copies it from the ``_csrf_token`` cookie).
   Bearer and Basic requests carry no cookie authority and are exempt.

Denials: anonymous page navigations are redirected to ``/login?next=...``; anonymous API, Dash
and video requests get ``401`` JSON; signed-in principals without the role get ``403``.
API tokens only ever open the machine paths (``/api/``, ``/ogc``, ``/open311``) and only where a
policy names their role explicitly.

Sessions live on the server (``layers.services.sessions``): the signed cookie carries a random
session id, the ``user_sessions`` table its digest. A session ends at logout, after
``settings.session_minutes`` without a request, and when its account is disabled or its
password, role or scopes change; a request with an ended session is refused at once in this
process and within ``PRINCIPAL_RECHECK_S`` in any other. Long-lived responses (MJPEG, SSE)
call ``principal_still_valid`` every few seconds and end when it says no.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import html
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import flask

from dashboard import auth_forms, throttle
from dashboard.auth_forms import LABELS
from dashboard.components.console import (  # noqa: F401 - re-exported for the console pages
    CONSOLE_STYLE,
    ROW_STYLE,
    TABLE_STYLE,
    user_badge,
)
from dashboard.context import AppContext, get_ctx
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
from dashboard.proxies import SessionCookies, TrustedProxyFix, cookie_secure_now
from layers.services import logins
from layers.services import sessions as session_service
from layers.services import users as user_service
from layers.services.transaction import ConflictError, run
from layers.services.users import ROLES, User

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_COOKIE = "_csrf_token"
CSRF_HEADER = "X-CSRFToken"
CSRF_FIELD = auth_forms.CSRF_FIELD


def _pw_fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def principal_from_user(user: User, via: str, session_id: str | None = None) -> Principal:
    """Return the Principal of ``user`` signed in ``via`` "session" or "basic"."""
    return Principal(
        name=user.username,
        role=user.role,
        kind="user",
        via=via,
        scopes=user_service.parse_scopes(user.scopes),
        user_id=user.id,
        must_change_password=bool(user.must_change_password),
        session_id=session_id,
    )


def _resolve_principal() -> Principal | None:
    ctx = get_ctx()
    req = flask.request
    header = req.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        plaintext = credentials.strip()
        key = ("token", user_service.token_digest(plaintext))
        cached = _recent_principal(ctx, key)
        if cached is not None:
            return cached
        epoch = user_service.auth_epoch()  # before the read: a change after it invalidates
        row = run(ctx.db, user_service.find_token, plaintext)
        if row is None:
            flask.g.auth_error = "invalid or revoked API token"
            return None
        principal = Principal(name=row.name, role=row.role, kind="token", via="bearer")
        return _remember_principal(ctx, key, principal, epoch)
    if scheme == "basic" and not req.path.startswith(BASIC_PREFIXES):
        # Browsers resend Basic credentials cached for /ogc to other paths of the site: ignore
        # them there (they never authenticate) and fall through to the session cookie.
        flask.g.basic_ignored = True
    elif scheme == "basic":
        try:
            raw = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            flask.g.auth_error = "malformed HTTP Basic credentials"
            return None
        username, _, password = raw.partition(":")
        cached = _basic_cache_lookup(ctx, username, password)
        if cached is not None:
            return cached
        result, refusal = _verify(username[:64], password, "basic")
        if refusal is not None:
            flask.g.auth_error = f"too many sign-in attempts; retry in {refusal.retry_after_s} s"
            flask.g.auth_retry_after = refusal.retry_after_s
            return None
        if not result.ok:
            flask.g.auth_error = "wrong credentials"
            return None
        if result.user.must_change_password:
            flask.g.auth_error = "change the one-time password at /login first"
            return None
        _basic_cache_store(ctx, username, password, result.user)
        return flask.g.pop("new_principal")
    return _session_principal(ctx)


def _session_principal(ctx: AppContext) -> Principal | None:
    """Return the principal of the request's server-side session, or None (ended, absent)."""
    sess = flask.session
    sid = sess.get("sid")
    if not sid:
        if sess.get("uid") is not None:  # a cookie from before server-side sessions
            _end_session(reason="no server-side session")
        return None
    digest = session_service.session_digest(str(sid))
    now = time.time()
    idle_limit = ctx.settings.session_minutes * 60
    if now - float(sess.get("last", 0)) > idle_limit:
        _end_session(reason="expired")
        flask.g.session_expired = True
        return None
    key = ("session", digest)
    principal = _recent_principal(ctx, key)
    if principal is None:
        epoch = user_service.auth_epoch()
        live = run(ctx.db, session_service.live_session, digest, idle_limit)
        if live is None:
            _end_session(reason="revoked")
            return None
        principal = principal_from_user(live[1], "session", digest)
        _remember_principal(ctx, key, principal, epoch)
    if now - float(sess.get("last", 0)) > SESSION_TOUCH_S:  # the idle clocks, not every request
        sess["last"] = now
        run(ctx.db, session_service.touch_session, digest)
    return principal


#: Seconds between two refreshes of a session's idle clock (cookie and database row).
SESSION_TOUCH_S = 30
#: How long a session row outlives its idle limit before a later sign-in deletes it.
SESSION_ROWS_KEPT_S = 86_400


def principal_still_valid(principal: Principal | None, ctx: AppContext) -> bool:
    """Return True if ``principal`` may still act: asked of the database, never of a cache.

    For long-lived responses (MJPEG, SSE) that call it every few seconds outside a request
    context: a session must be live (not logged out, expired or revoked), its account active
    with the same role and scopes; a token unrevoked with the same role; an HTTP Basic user
    active with the same role and scopes.
    """
    if principal is None:
        return False
    try:
        if principal.kind == "token":
            return run(ctx.db, logins.token_in_force, principal.name, principal.role)
        return run(
            ctx.db, logins.account_in_force, role=principal.role, scopes=principal.scopes,
            session_digest=principal.session_id, user_id=principal.user_id,
            idle_s=ctx.settings.session_minutes * 60,
        )  # fmt: skip
    except Exception:  # noqa: BLE001 - cannot tell: the stream ends (fails closed)
        log.exception("re-checking %s failed; ending its stream", principal.actor)
        return False


#: How long a resolved session user or API token is trusted without asking the database
#: again. A change made through this process (disable, new password, role, revoke) is seen at
#: once (``users.auth_epoch``); one made in another process or machine within this long. At
#: 100 requests/s the lookup was ~15 % of the web tier's CPU (bench/RESULTS.md, Load).
PRINCIPAL_RECHECK_S = 5.0
PRINCIPAL_CACHE_MAX = 10_000


def _principal_cache(ctx: AppContext) -> dict:
    return ctx.services.setdefault("principal_cache", {})


def _recent_principal(ctx: AppContext, key: tuple) -> Principal | None:
    hit = _principal_cache(ctx).get(key)
    if hit is None:
        return None
    expires, epoch, principal = hit
    if expires < time.monotonic() or epoch != user_service.auth_epoch():
        return None
    return principal


def _remember_principal(ctx: AppContext, key: tuple, principal: Principal, epoch: int) -> Principal:
    """Cache ``principal`` under the epoch read before its lookup (a change since: a miss)."""
    cache = _principal_cache(ctx)
    if len(cache) >= PRINCIPAL_CACHE_MAX:
        cache.clear()  # bounded; the next requests simply ask the database again
    cache[key] = (time.monotonic() + PRINCIPAL_RECHECK_S, epoch, principal)
    return principal


BASIC_CACHE_SECONDS = 60
BASIC_CACHE_MAX = 1000


def _basic_cache(ctx: AppContext) -> dict:
    # Per app (ctx.services), not per module. GIS clients send Basic credentials with every
    # tile/feature request and an argon2 check costs ~0.1-0.5 s, so a verified pair is
    # remembered for a minute under an HMAC with a random per-process key (never in clear).
    cache = ctx.services.get("basic_auth_cache")
    if cache is None:
        cache = ctx.services.setdefault(
            "basic_auth_cache", {"key": secrets.token_bytes(32), "entries": {}}
        )
    return cache


def _basic_cache_key(cache: dict, username: str, password: str) -> str:
    msg = f"{username}\0{password}".encode()
    return hmac.new(cache["key"], msg, hashlib.sha256).hexdigest()


def _basic_cache_lookup(ctx: AppContext, username: str, password: str) -> Principal | None:
    cache = _basic_cache(ctx)
    hit = cache["entries"].get(_basic_cache_key(cache, username, password))
    if hit is None or hit[0] < time.time():
        return None
    _expires, user_id, fingerprint = hit
    user = run(ctx.db, logins.user_by_id, user_id)
    if (
        user is None
        or not user.active
        or user.must_change_password
        or _pw_fingerprint(user.password_hash) != fingerprint
    ):
        return None
    return principal_from_user(user, "basic")


def _basic_cache_store(ctx: AppContext, username: str, password: str, user: User) -> None:
    cache = _basic_cache(ctx)
    entries = cache["entries"]
    if len(entries) >= BASIC_CACHE_MAX:
        entries.clear()
    entries[_basic_cache_key(cache, username, password)] = (
        time.time() + BASIC_CACHE_SECONDS,
        user.id,
        _pw_fingerprint(user.password_hash),
    )


def current_principal() -> Principal | None:
    """Return who makes the current request (session, Bearer token or Basic), or None.

    Resolved once per request and cached on ``flask.g``. Outside a request: None.
    """
    if not flask.has_request_context():
        return None
    if "principal" not in flask.g:
        flask.g.principal = _resolve_principal()
    return flask.g.principal


def _end_session(reason: str) -> None:
    keep_csrf = flask.session.get("csrf")
    flask.session.clear()
    if keep_csrf:
        flask.session["csrf"] = keep_csrf
    log.debug("session ended (%s)", reason)


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


# -- CSRF -------------------------------------------------------------------------------------
def csrf_token() -> str:
    """Return the session's CSRF token, creating one if needed."""
    token = flask.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        flask.session["csrf"] = token
    return token


def _csrf_ok() -> bool:
    expected = flask.session.get("csrf")
    if not expected:
        return False
    sent = flask.request.headers.get(CSRF_HEADER) or flask.request.form.get(CSRF_FIELD) or ""
    return hmac.compare_digest(str(sent), str(expected))


# -- responses --------------------------------------------------------------------------------
def _wants_html() -> bool:
    req = flask.request
    if req.method not in ("GET", "HEAD"):
        return False
    if req.path.startswith(
        MACHINE_PREFIXES + ("/_dash-", "/layers/", "/video/", "/tiles/", "/assets/")
    ):
        return False
    best = req.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "text/html"


def _json_error(status: int, message: str, **headers: str) -> flask.Response:
    resp = flask.jsonify(error=message, status=status)
    resp.status_code = status
    for k, v in headers.items():
        resp.headers[k] = v
    return resp


def _deny(principal: Principal | None) -> flask.Response:
    req = flask.request
    if principal is None:
        if _wants_html():
            target = req.full_path.rstrip("?") if req.query_string else req.path
            url = "/login?next=" + quote(target, safe="/")
            if flask.g.get("session_expired"):
                url += "&msg=expired"
            return flask.redirect(url, code=302)
        message = flask.g.get("auth_error") or "login required"
        headers = {}
        retry = flask.g.get("auth_retry_after")
        if retry is not None:
            return _json_error(429, message, **{"Retry-After": str(retry)})
        if req.path.startswith(BASIC_PREFIXES):
            headers["WWW-Authenticate"] = 'Basic realm="GridSight OGC", charset="UTF-8"'
        elif req.path.startswith(MACHINE_PREFIXES):
            headers["WWW-Authenticate"] = 'Bearer realm="GridSight API"'
        return _json_error(401, message, **headers)
    if _wants_html():
        return flask.Response(_forbidden_html(), status=403, mimetype="text/html")
    return _json_error(403, f"role {principal.role!r} may not {req.method} {req.path}")


def _bi(key: str, **fmt: str) -> str:
    return auth_forms.bi(key, **fmt)


def _login_html(
    message: str = "", kind: str = "err", next_url: str = "", username: str = ""
) -> str:
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


def _keep_rows_s() -> float:
    """Return how long a session row is kept: its idle limit plus SESSION_ROWS_KEPT_S."""
    return get_ctx().settings.session_minutes * 60 + SESSION_ROWS_KEPT_S


def _set_session_cookie(sid: str) -> str:
    """Return the digest of the new server-side session ``sid`` after putting it in the cookie."""
    flask.session.clear()  # a fresh session id and CSRF token: no fixation across login
    flask.session.permanent = True
    flask.session["sid"] = sid
    flask.session["last"] = time.time()
    flask.session["csrf"] = secrets.token_urlsafe(32)
    flask.g.pop("principal", None)
    return session_service.session_digest(sid)


# -- views ------------------------------------------------------------------------------------
def _login_view():
    req = flask.request
    if req.method == "GET":
        p = current_principal()
        if p is not None and p.kind == "user":
            return flask.redirect(_safe_next(req.args.get("next")) or home_for(p))
        msg = req.args.get("msg", "")
        kind = "info" if msg in ("logged_out", "changed") else "err"
        text = _bi(msg) if msg in ("expired", "logged_out", "changed") else ""
        return _login_html(text, kind, _safe_next(req.args.get("next")))
    username = (req.form.get("username") or "").strip()[:64]
    password = req.form.get("password") or ""
    next_url = _safe_next(req.form.get("next"))
    result, refusal = _verify(username, password, "form")
    if refusal is not None:
        key = "busy" if refusal.reason == "busy" else "throttled"
        resp = flask.Response(
            _login_html(_bi(key, m=str(refusal.minutes)), "err", next_url, username),
            status=503 if key == "busy" else 429,
        )
        resp.headers["Retry-After"] = str(refusal.retry_after_s)
        return resp
    if not result.ok:
        # unknown name, wrong password, disabled account: one answer, so none is revealed
        return flask.Response(_login_html(_bi("bad"), "err", next_url, username), status=401)
    principal = flask.g.pop("new_principal")
    if principal.must_change_password:
        resp = flask.redirect("/account/password")
    else:
        resp = flask.redirect(next_url or home_for(principal))
    _throttle().remember_device(resp, username, cookie_secure_now())
    return resp


def _throttle() -> throttle.LoginThrottle:
    return get_ctx().services["login_throttle"]


def _verify(
    username: str, password: str, channel: str
) -> tuple[user_service.LoginResult | None, throttle.Refusal | None]:
    """Return (login result, None) after a throttled password check, or (None, refusal).

    A form sign-in that succeeds also starts its server-side session (``flask.g``).
    """
    ctx = get_ctx()
    gate = _throttle()
    address = flask.request.remote_addr or ""
    device = gate.device_for(username)
    refusal = gate.check(username, address, device)
    if refusal is not None:
        log.info("sign-in for %r from %s refused (%s limit)", username, address, refusal.reason)
        return None, refusal
    with gate.slots.hold() as got_slot:
        if not got_slot:
            return None, throttle.Refusal(BUSY_RETRY_S, "busy")
        outcome = run(ctx.db, logins.sign_in, username, password, channel=channel,
                      client=address, keep_rows_s=_keep_rows_s())  # fmt: skip
        result = outcome.result
        if outcome.session_id is not None:
            digest = _set_session_cookie(outcome.session_id)
            flask.g.new_principal = principal_from_user(result.user, "session", digest)
        elif result.ok:
            flask.g.new_principal = principal_from_user(result.user, "basic")
    if result.ok:
        gate.succeeded(username, address, device)
    else:
        gate.failed(username, address, device)
    return result, None


#: Seconds a sign-in told "busy" (every verification slot taken) is asked to wait.
BUSY_RETRY_S = 2


def _logout_view():
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


def _password_view():
    ctx = get_ctx()
    p = current_principal()
    if p is None or p.kind != "user" or p.via != "session":
        return _deny(p)
    if flask.request.method == "GET":
        return _password_html()
    form = flask.request.form
    current, new, confirm = form.get("current", ""), form.get("new", ""), form.get("confirm", "")
    if new != confirm:
        return flask.Response(_password_html(_bi("mismatch")), status=400)
    try:
        sid = run(
            ctx.db, logins.change_password, p.user_id, current, new, actor=p.name,
            actor_role=p.role, client=flask.request.remote_addr or "", keep_rows_s=_keep_rows_s(),
        )  # fmt: skip
    except logins.WrongPasswordError:
        return flask.Response(_password_html(_bi("wrong_current")), status=400)
    except user_service.UserError as exc:
        return flask.Response(_password_html(html.escape(str(exc))), status=400)
    _set_session_cookie(sid)  # every other session of the account has just ended
    return flask.redirect(home_for(p))


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
        return _deny(None)
    if (
        principal is not None
        and principal.kind == "user"
        and principal.must_change_password
        and not path.startswith(MUST_CHANGE_OK)
    ):
        if _wants_html():
            return flask.redirect("/account/password")
        return _json_error(403, "change your one-time password at /account/password first")
    policy = resolve_policy(server, path, req.method)
    if not is_allowed(policy, principal, path):
        if policy is None:
            log.info("denied undeclared path %s %s", req.method, path)
        return _deny(principal)
    if path == "/_dash-update-component" and req.method == "POST":
        for page in callback_pages(req.get_json(silent=True)):
            if not is_allowed(resolve_policy(server, page), principal, page):
                log.info("refused a %s callback to %s", page, principal.name if principal else "-")
                return _json_error(403, f"role may not use the {page} page's callbacks")
    if req.method in UNSAFE_METHODS and (principal is None or principal.via == "session"):
        if not _csrf_ok():
            if path == "/login":
                return flask.Response(_login_html(_bi("csrf")), status=400)
            return _json_error(400, "missing or wrong CSRF token; reload the page and retry")
    return None


def _set_csrf_cookie(resp: flask.Response) -> flask.Response:
    token = flask.session.get("csrf")
    if token and flask.request.cookies.get(CSRF_COOKIE) != token:
        resp.set_cookie(
            CSRF_COOKIE,
            token,
            samesite="Lax",
            httponly=False,  # Dash's renderer reads it to send the X-CSRFToken header
            secure=cookie_secure_now(),
        )
    if flask.request.path.startswith(("/login", "/account/", "/logout")):
        resp.headers["Cache-Control"] = "no-store"
    resp.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


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
        PERMANENT_SESSION_LIFETIME=ctx.settings.session_minutes * 60,
        GRIDSIGHT_COOKIE_SECURE=ctx.settings.cookie_secure,
    )
    server.session_interface = SessionCookies()
    if ctx.settings.trusted_proxies.strip():
        server.wsgi_app = TrustedProxyFix(server.wsgi_app, ctx.settings.trusted_proxies)
    ctx.services["login_throttle"] = throttle.LoginThrottle(server, ctx.settings)
    for prefix, methods, roles in ACCESS_MATRIX:
        declare_policy(server, prefix, roles, methods)
    server.before_request(_guard)
    server.after_request(_set_csrf_cookie)
    server.add_url_rule("/login", "auth_login", _login_view, methods=["GET", "POST"])
    server.add_url_rule("/logout", "auth_logout", _logout_view, methods=["GET", "POST"])
    server.add_url_rule(
        "/account/password", "auth_password", _password_view, methods=["GET", "POST"]
    )
    from dashboard.access_hooks import install_video_hooks  # it builds on this module

    install_video_hooks(ctx)
    bootstrap_first_admin(ctx)

