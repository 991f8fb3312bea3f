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
import datetime as dt
import functools
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import flask
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy.exc import IntegrityError
from werkzeug.middleware.proxy_fix import ProxyFix

from dashboard import throttle
from dashboard.context import AppContext, get_ctx
from layers.models import ROLES, User
from layers.models.base import utcnow
from layers.services import audit
from layers.services import sessions as session_service
from layers.services import users as user_service

log = logging.getLogger(__name__)

PUBLIC = "public"
AUTHENTICATED = "authenticated"
MACHINE_PREFIXES = ("/api/", "/ogc", "/open311")
BASIC_PREFIXES = ("/ogc",)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_COOKIE = "_csrf_token"
CSRF_HEADER = "X-CSRFToken"
CSRF_FIELD = "csrf_token"

GET: tuple[str, ...] = ("GET",)
GET_POST: tuple[str, ...] = ("GET", "POST")
MAP_ROLES = frozenset({"operator", "dispatcher", "privacy_officer", "admin"})
VIDEO_ROLES = frozenset({"operator", "dispatcher", "privacy_officer"})

# The access matrix: (path prefix, methods or None for all, roles | "public" | "authenticated").
# "/" alone means the root page only. Other route modules add their own rows through
# declare_policy(); a path no row covers is denied. README.md "Access control" mirrors this.
ACCESS_MATRIX: list[tuple[str, tuple[str, ...] | None, frozenset[str] | str]] = [
    # public: liveness, the login form, static CSS/JS (code, no data)
    ("/healthz", GET, PUBLIC),
    ("/login", GET_POST, PUBLIC),
    ("/logout", GET_POST, PUBLIC),
    ("/assets/", GET, PUBLIC),
    ("/_favicon.ico", GET, PUBLIC),
    ("/favicon.ico", GET, PUBLIC),  # browsers ask for it before login; 404, not a redirect
    # any signed-in person: Dash plumbing (pages and callbacks check roles themselves)
    ("/account/password", GET_POST, AUTHENTICATED),
    ("/_dash-component-suites/", GET, AUTHENTICATED),
    ("/_dash-layout", GET, AUTHENTICATED),
    ("/_dash-dependencies", GET, AUTHENTICATED),
    ("/_dash-update-component", ("POST",), AUTHENTICATED),
    ("/_reload-hash", GET, AUTHENTICATED),
    ("/static/", GET, AUTHENTICATED),
    # pages
    ("/", GET, MAP_ROLES),
    ("/dispatch", GET, frozenset({"dispatcher", "admin"})),
    ("/privacy", GET, frozenset({"privacy_officer"})),
    ("/audit", GET, frozenset({"auditor"})),
    ("/admin", GET, frozenset({"admin"})),
    # data behind the map, video (+ camera scopes checked by the video route's hook)
    ("/layers/", GET, MAP_ROLES),
    ("/tiles/", GET, MAP_ROLES),
    ("/video/", GET, VIDEO_ROLES),
    # redaction rules and stream status (dashboard/routes/video.py; its hooks check again)
    ("/api/v1/rules", GET, frozenset({"privacy_officer", "auditor"})),
    ("/api/v1/rules", ("PUT", "DELETE"), frozenset({"privacy_officer"})),
    ("/api/v1/cameras/", GET, frozenset({"privacy_officer", "auditor"})),
    ("/api/v1/video/streams", GET, frozenset({"privacy_officer", "operator", "admin"})),
    # machine API (dashboard/routes/api.py and ogc.py declare the same rows)
    ("/api/v1/incidents", ("POST",), frozenset({"dispatcher", "admin", "intake"})),
    ("/api/v1/incidents", GET, frozenset({"operator", "dispatcher", "admin"})),
    ("/ogc", GET, frozenset({"operator", "dispatcher", "admin", "gis"})),
]

# Where a signed-in role lands after login (first match).
HOME_BY_ROLE = {"auditor": "/audit"}

LABELS = {
    "title": ("登录", "Sign in"),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "submit": ("登录", "Sign in"),
    "bad": ("用户名或密码错误", "Wrong username or password"),
    "throttled": (
        "登录尝试过多，请于 {m} 分钟后重试",
        "Too many sign-in attempts; try again in {m} min",
    ),
    "busy": ("登录繁忙，请稍后重试", "Sign-in is busy; try again in a few seconds"),
    "disabled": ("账户已停用", "Account disabled"),
    "expired": ("会话已过期，请重新登录", "Your session expired; please sign in again"),
    "logged_out": ("已退出登录", "You are signed out"),
    "csrf": ("表单已失效，请重试", "The form expired; please try again"),
    "changed": ("密码已修改", "Password changed"),
    "change_title": ("修改密码", "Change password"),
    "change_required": (
        "首次登录须修改密码",
        "You must change your password before continuing",
    ),
    "current": ("当前密码", "Current password"),
    "new": ("新密码（至少10位）", "New password (at least 10 characters)"),
    "confirm": ("确认新密码", "Confirm new password"),
    "mismatch": ("两次输入的新密码不一致", "The new passwords do not match"),
    "wrong_current": ("当前密码错误", "The current password is wrong"),
    "logout": ("退出登录", "Sign out"),
    "logout_q": ("确定退出登录？", "Sign out now?"),
    "forbidden": ("无权访问此页面", "You may not open this page"),
    "home": ("返回首页", "Back to start"),
    "app": ("GridSight 市域社会治理指挥中心", "GridSight command center"),
}


class PolicyError(ValueError):
    """Raised for an invalid policy declaration; the message names the bad part."""


# -- principals -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    """Return-type of ``current_principal``: who is making the request.

    ``kind`` is "user" (session or HTTP Basic) or "token" (API token); ``via`` is "session",
    "basic" or "bearer"; ``scopes`` is {"districts": [...], "cameras": [...]} (empty lists:
    unrestricted).
    """

    name: str
    role: str
    kind: str = "user"
    via: str = "session"
    scopes: dict = field(default_factory=lambda: {"districts": [], "cameras": []})
    user_id: int | None = None
    must_change_password: bool = False
    session_id: str | None = None  # digest of the server-side session (via == "session")

    @property
    def actor(self) -> str:
        """Return the audit actor name (``token:NAME`` for API tokens)."""
        return f"token:{self.name}" if self.kind == "token" else self.name


def camera_allowed(principal: Principal | None, gb_id: str, camera_pk: int | None = None) -> bool:
    """Return True if ``principal``'s scopes include the camera (by GB/T 28181 id or row id).

    A camera is in scope when the principal has no scopes at all, when its id is listed in
    ``scopes["cameras"]``, or when its district (the first 6 digits of the 20-digit id) is in
    ``scopes["districts"]``.
    """
    if principal is None:
        return False
    cams = principal.scopes.get("cameras") or []
    districts = principal.scopes.get("districts") or []
    if not cams and not districts:
        return True
    gb_id = str(gb_id or "")
    if gb_id in cams or (camera_pk is not None and str(camera_pk) in cams):
        return True
    return bool(gb_id) and gb_id[:6] in districts


def district_allowed(principal: Principal | None, code: str) -> bool:
    """Return True if ``principal`` may see the district ``code`` (6-digit GB/T 2260)."""
    if principal is None:
        return False
    districts = principal.scopes.get("districts") or []
    cams = principal.scopes.get("cameras") or []
    if not districts and not cams:
        return True
    return str(code)[:6] in districts


# Roles that see reporters' names and phone numbers in clear (dispatchers call reporters back,
# 一线回访); everybody else gets layers.codes.mask_name / mask_phone.
PERSONAL_DATA_ROLES = frozenset({"dispatcher"})


def may_see_personal_data(principal: Principal | None) -> bool:
    """Return True if ``principal`` may see reporter names/phones unmasked (UI and exports)."""
    return (
        principal is not None and principal.kind == "user" and principal.role in PERSONAL_DATA_ROLES
    )


def _pw_fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def _principal_from_user(user: User, via: str, session_id: str | None = None) -> Principal:
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
        with ctx.db.session() as s:
            row = user_service.find_token(s, plaintext)
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
        with ctx.db.session() as s:
            user = s.get(User, result.user.id)
            _basic_cache_store(ctx, username, password, user)
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
        with ctx.db.session() as s:
            live = session_service.live_session(s, digest, idle_limit)
            if live is None:
                _end_session(reason="revoked")
                return None
            principal = _principal_from_user(live[1], "session", digest)
        _remember_principal(ctx, key, principal, epoch)
    if now - float(sess.get("last", 0)) > SESSION_TOUCH_S:  # the idle clocks, not every request
        sess["last"] = now
        with ctx.db.session() as s:
            session_service.touch_session(s, digest)
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
        with ctx.db.session() as s:
            if principal.kind == "token":
                row = user_service.find_token_by_name(s, principal.name)
                return row is not None and row.revoked_at is None and row.role == principal.role
            if principal.session_id is not None:
                live = session_service.live_session(
                    s, principal.session_id, ctx.settings.session_minutes * 60
                )
                user = live[1] if live is not None else None
            else:
                user = s.get(User, principal.user_id) if principal.user_id is not None else None
            return (
                user is not None
                and user.active
                and user.role == principal.role
                and user_service.parse_scopes(user.scopes) == principal.scopes
            )
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
    with ctx.db.session() as s:
        user = s.get(User, user_id)
        if (
            user is None
            or not user.active
            or user.must_change_password
            or _pw_fingerprint(user.password_hash) != fingerprint
        ):
            return None
        return _principal_from_user(user, "basic")


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


# -- policies ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    """One row of the access matrix."""

    prefix: str
    methods: tuple[str, ...] | None
    roles: frozenset[str] | str

    def matches(self, path: str) -> bool:
        """Return True if ``path`` falls under this policy's prefix."""
        p = self.prefix
        if p == "/":
            return path == "/"
        if p.endswith("/"):
            return path.startswith(p) or path == p[:-1]
        return path == p or path.startswith(p + "/")


def _normalise_roles(roles: Iterable[str] | str) -> frozenset[str] | str:
    if isinstance(roles, str):
        if roles in (PUBLIC, AUTHENTICATED):
            return roles
        roles = {roles}
    roles = frozenset(roles)
    unknown = roles - set(user_service.TOKEN_ROLES)
    if unknown or not roles:
        raise PolicyError(
            f"policy roles {sorted(unknown) or '(empty)'} are not valid; use roles from "
            f"{', '.join(user_service.TOKEN_ROLES)} or 'public' / 'authenticated'"
        )
    return roles


def declare_policy(
    server: flask.Flask,
    prefix: str,
    roles: set[str] | frozenset[str] | str,
    methods: Iterable[str] | None = None,
) -> None:
    """Declare who may call paths under ``prefix`` (optionally only for ``methods``).

    ``roles`` is a set of role names, ``"public"`` (no login) or ``"authenticated"`` (any
    signed-in person; not API tokens). Route modules call this inside their ``register``.
    A later declaration of the same (prefix, methods) replaces the earlier one (logged).
    """
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise PolicyError(f"policy prefix {prefix!r} must be a path starting with '/'")
    norm_methods = tuple(sorted({m.upper() for m in methods})) if methods else None
    norm_roles = _normalise_roles(roles)
    table: dict = server.config.setdefault("GRIDSIGHT_POLICIES", {})
    key = (prefix, norm_methods)
    old = table.get(key)
    if old is not None and old.roles != norm_roles:
        log.info(
            "policy for %s %s changed from %s to %s", prefix, norm_methods, old.roles, norm_roles
        )
    table[key] = Policy(prefix, norm_methods, norm_roles)


def policies(server: flask.Flask) -> list[Policy]:
    """Return every declared policy of ``server`` (the matrix plus route modules' rows)."""
    return list(server.config.get("GRIDSIGHT_POLICIES", {}).values())


def resolve_policy(server: flask.Flask, path: str, method: str = "GET") -> Policy | None:
    """Return the policy governing ``method path``, or None (undeclared: denied).

    The longest matching prefix wins; at equal length a row naming the method beats a row
    for all methods; HEAD and OPTIONS count as GET.
    """
    method = "GET" if method in ("HEAD", "OPTIONS") else method.upper()
    if path in server.config.get("GRIDSIGHT_PUBLIC_PATHS", ()):
        return Policy(path, None, PUBLIC)
    best: Policy | None = None
    best_key = (-1, -1)
    for pol in policies(server):
        if not pol.matches(path):
            continue
        if pol.methods is not None and method not in pol.methods:
            continue
        key = (len(pol.prefix), 1 if pol.methods else 0)
        if key > best_key:
            best, best_key = pol, key
    return best


def is_allowed(policy: Policy | None, principal: Principal | None, path: str) -> bool:
    """Return True if ``principal`` may pass ``policy`` for ``path``."""
    if policy is None:
        return False
    if policy.roles == PUBLIC:
        return True
    if principal is None:
        return False
    if principal.kind == "token":
        return (
            path.startswith(MACHINE_PREFIXES)
            and isinstance(policy.roles, frozenset)
            and principal.role in policy.roles
        )
    if policy.roles == AUTHENTICATED:
        return True
    return principal.role in policy.roles


def allowed_paths(principal: Principal | None, paths: Iterable[str]) -> list[str]:
    """Return the subset of page ``paths`` that ``principal`` may open (for the nav bar)."""
    server = flask.current_app
    return [p for p in paths if is_allowed(resolve_policy(server, p), principal, p)]


def home_for(principal: Principal) -> str:
    """Return the page a principal lands on after login."""
    return HOME_BY_ROLE.get(principal.role, "/")


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


def _page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · GridSight</title>
<style>
body{{margin:0;font-family:"Noto Sans CJK SC","Microsoft YaHei",system-ui,sans-serif;
background:#0f1c2e;color:#e8eef6;display:flex;min-height:100vh;align-items:center;
justify-content:center}}
.gs-auth{{background:#17283f;border:1px solid #2b4468;border-radius:8px;padding:28px 32px;
width:340px;box-shadow:0 8px 30px rgba(0,0,0,.4)}}
.gs-auth h1{{font-size:18px;margin:0 0 4px}} .gs-auth .sub{{color:#9fb3cc;font-size:13px;
margin:0 0 18px}} label{{display:block;font-size:13px;margin:12px 0 4px;color:#c8d6e8}}
input[type=text],input[type=password]{{width:100%;box-sizing:border-box;padding:8px 10px;
border-radius:4px;border:1px solid #3a5a86;background:#0f1c2e;color:#fff;font-size:15px}}
button{{margin-top:20px;width:100%;padding:9px;border:0;border-radius:4px;background:#2f7de1;
color:#fff;font-size:15px;cursor:pointer}} .msg{{padding:8px 10px;border-radius:4px;
font-size:13px;margin-bottom:8px}} .err{{background:#5b1f27;color:#ffd5da}}
.info{{background:#1f4a33;color:#d5ffe6}} a{{color:#8cc2ff}}
</style></head><body>{body}</body></html>"""


def _bi(key: str, **fmt: str) -> str:
    zh, en = LABELS[key]
    return html.escape(f"{zh.format(**fmt)} / {en.format(**fmt)}")


def _forbidden_html() -> str:
    p = current_principal()
    who = html.escape(f"{p.name} ({p.role})") if p else ""
    body = (
        f'<div class="gs-auth"><h1>{_bi("forbidden")}</h1><p class="sub">{who}</p>'
        f'<p><a href="/">{_bi("home")}</a> · <a href="/logout">{_bi("logout")}</a></p></div>'
    )
    return _page("403", body)


def _login_html(
    message: str = "", kind: str = "err", next_url: str = "", username: str = ""
) -> str:
    msg = f'<div class="msg {kind}" id="login-message">{message}</div>' if message else ""
    body = f"""<form class="gs-auth" method="post" action="/login" id="login-form">
<h1>{_bi("app")}</h1><p class="sub">{_bi("title")}</p>{msg}
<input type="hidden" name="{CSRF_FIELD}" value="{html.escape(csrf_token())}">
<input type="hidden" name="next" value="{html.escape(next_url)}">
<label for="login-username">{_bi("username")}</label>
<input type="text" id="login-username" name="username" autocomplete="username"
 value="{html.escape(username)}" required autofocus>
<label for="login-password">{_bi("password")}</label>
<input type="password" id="login-password" name="password" autocomplete="current-password" required>
<button type="submit" id="login-submit">{_bi("submit")}</button>
</form>"""
    return _page("登录 Sign in", body)


def _password_html(message: str = "", kind: str = "err") -> str:
    p = current_principal()
    notice = _bi("change_required") if p and p.must_change_password else ""
    msg = f'<div class="msg {kind}" id="password-message">{message}</div>' if message else ""
    body = f"""<form class="gs-auth" method="post" action="/account/password" id="password-form">
<h1>{_bi("change_title")}</h1><p class="sub">{html.escape(p.name if p else "")} {notice}</p>{msg}
<input type="hidden" name="{CSRF_FIELD}" value="{html.escape(csrf_token())}">
<label for="password-current">{_bi("current")}</label>
<input type="password" id="password-current" name="current" autocomplete="current-password" required>
<label for="password-new">{_bi("new")}</label>
<input type="password" id="password-new" name="new" autocomplete="new-password" required>
<label for="password-confirm">{_bi("confirm")}</label>
<input type="password" id="password-confirm" name="confirm" autocomplete="new-password" required>
<button type="submit" id="password-submit">{_bi("change_title")}</button>
</form>"""
    return _page("修改密码 Change password", body)


def _logout_html() -> str:
    body = f"""<form class="gs-auth" method="post" action="/logout" id="logout-form">
<h1>{_bi("logout_q")}</h1>
<input type="hidden" name="{CSRF_FIELD}" value="{html.escape(csrf_token())}">
<button type="submit" id="logout-submit">{_bi("logout")}</button>
<p><a href="/">{_bi("home")}</a></p></form>"""
    return _page("退出 Sign out", body)


def _safe_next(url: str | None) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith("//"):
        return ""
    if "\\" in url or url.startswith(("/login", "/logout")):
        return ""
    return url


def _start_session(s, user: User) -> str:
    """Return the digest of a new server-side session for ``user``, set in the cookie."""
    sid = session_service.start_session(s, user, flask.request.remote_addr or "")
    idle = get_ctx().settings.session_minutes * 60 + SESSION_ROWS_KEPT_S
    session_service.purge_sessions(s, utcnow() - dt.timedelta(seconds=idle))
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
        with ctx.db.session() as s:
            result = user_service.authenticate(
                s, username, password, channel=channel, client=address
            )
            if result.ok and channel == "form":
                digest = _start_session(s, result.user)
                flask.g.new_principal = _principal_from_user(result.user, "session", digest)
            elif result.ok:
                flask.g.new_principal = _principal_from_user(result.user, "basic")
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
        with ctx.db.session() as s:
            if p.session_id is not None:
                session_service.revoke_session(s, p.session_id, "logout")
            audit.record(s, actor=p.name, role=p.role, action="logout")
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
    with ctx.db.session() as s:
        user = s.get(User, p.user_id)
        if user is None or not user_service.check_password(user.password_hash, current):
            return flask.Response(_password_html(_bi("wrong_current")), status=400)
        try:
            user_service.set_password(s, user.username, new, actor=p.name, actor_role=p.role)
        except user_service.UserError as exc:
            return flask.Response(_password_html(html.escape(str(exc))), status=400)
        s.flush()
        _start_session(s, user)  # every other session of the account has just ended
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
        with ctx.db.session() as s:
            password = user_service.ensure_first_admin(s)
    except IntegrityError:  # another process created it at the same moment
        return None
    if password:
        out(
            "\n" + "=" * 64 + "\nGridSight first start: created user 'admin' with the one-time "
            f"password\n\n    {password}\n\nSign in at /login and change it; it is shown only "
            "this once.\n" + "=" * 64 + "\n"
        )
        log.warning("first start: created the 'admin' account (one-time password on the console)")
    return password


# -- cookies and proxies ----------------------------------------------------------------------
def cookie_secure_now() -> bool:
    """Return True if cookies set on the current response get the ``Secure`` flag.

    ``cookie_secure``: "always", "never", or "auto" (the default): when the request came over
    HTTPS, directly or through a trusted proxy's ``X-Forwarded-Proto``.
    """
    mode = flask.current_app.config.get("GRIDSIGHT_COOKIE_SECURE", "auto")
    if mode != "auto":
        return mode == "always"
    return flask.has_request_context() and flask.request.is_secure


class _SessionCookies(SecureCookieSessionInterface):
    """Flask's signed-cookie session whose ``Secure`` flag follows ``cookie_secure_now``."""

    def get_cookie_secure(self, app: flask.Flask) -> bool:
        """Return the Secure flag for the session cookie of the current response."""
        return cookie_secure_now()


class TrustedProxyFix:
    """werkzeug's ProxyFix for requests from ``trusted_proxies`` only; others pass unchanged.

    ProxyFix alone believes ``X-Forwarded-*`` from any peer, so anyone could claim HTTPS or
    another client address (and so another sign-in budget). One proxy hop is trusted.
    """

    def __init__(self, app: Callable, networks: str) -> None:
        self.app = app
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_port=1)
        self.networks = [
            ipaddress.ip_network(n.strip(), strict=False) for n in networks.split(",") if n.strip()
        ]

    def trusted(self, peer: str) -> bool:
        """Return True if ``peer`` (the TCP peer address) is one of the trusted proxies."""
        try:
            addr = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)

    def __call__(self, environ: dict, start_response: Callable):
        if self.networks and self.trusted(environ.get("REMOTE_ADDR", "")):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Install the access guard, CSRF cookie, the matrix and /login, /logout, password routes."""
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="gridsight_session",
        PERMANENT_SESSION_LIFETIME=ctx.settings.session_minutes * 60,
        GRIDSIGHT_COOKIE_SECURE=ctx.settings.cookie_secure,
    )
    server.session_interface = _SessionCookies()
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
    install_video_hooks(ctx)
    bootstrap_first_admin(ctx)


# -- hooks used by dashboard/routes/video.py ---------------------------------------------------
def install_video_hooks(ctx: AppContext) -> None:
    """Put the access hooks the video routes look up into ``ctx.services``.

    ``authorize_video`` (role + camera scope), ``authorize_rules`` (read: privacy officer,
    auditor; write: privacy officer), ``unmask_grant`` (watermark text of an active grant, else
    None: redacted), ``unmask_grant_for(username, camera_id)`` (the same without a request
    context, for re-checking a running stream), ``viewer_still_allowed(principal, camera_id)``
    (False once the viewer's session, account or scope is gone: a running stream then ends)
    and ``audit`` (every view, snapshot and rule change into the audit log).
    """
    from layers.services import cameras as camera_service
    from layers.services import grants as grant_service

    two_person = ctx.settings.unmask_requires_second_approver

    def authorize_video(_request, camera_id: int) -> bool:
        p = current_principal()
        if p is None or p.kind != "user" or p.role not in VIDEO_ROLES:
            return False
        try:
            camera = camera_service.get_camera(ctx.db, camera_id)
        except LookupError:  # layers.services.NotFoundError: the route answers 404
            return True
        return camera_allowed(p, camera.gb_id, camera.id)

    def authorize_rules(_request, action: str) -> bool:
        p = current_principal()
        if p is None or p.kind != "user":
            return False
        if action == "read":
            return p.role in ("privacy_officer", "auditor")
        return p.role == "privacy_officer"

    def unmask_grant(_request, camera_id: int) -> str | None:
        p = current_principal()
        if p is None or p.kind != "user" or p.role not in VIDEO_ROLES:
            return None
        with ctx.db.session() as s:
            grant = grant_service.active_grant(s, p.name, camera_id, require_approval=two_person)
            return grant_service.watermark_text(grant) if grant is not None else None

    def unmask_grant_for(username: str, camera_id: int) -> str | None:
        # context-free variant for long-running streams: re-check every few seconds so an
        # unredacted view ends when its grant expires or is revoked
        with ctx.db.session() as s:
            user = user_service.get_user(s, username)
            if user is None or not user.active or user.role not in VIDEO_ROLES:
                return None
            grant = grant_service.active_grant(s, username, camera_id, require_approval=two_person)
            return grant_service.watermark_text(grant) if grant is not None else None

    def viewer_still_allowed(user: Principal | str | None, camera_id: int) -> bool:
        # for running streams: the viewer's session/account still live, camera still in scope
        if isinstance(user, str) or user is None:
            with ctx.db.session() as s:
                row = user_service.get_user(s, user) if user else None
                user = _principal_from_user(row, "basic") if row is not None else None
        if user is None or user.kind != "user" or user.role not in VIDEO_ROLES:
            return False
        if not principal_still_valid(user, ctx):
            return False
        try:
            camera = camera_service.get_camera(ctx.db, camera_id)
        except LookupError:
            return False
        return camera_allowed(user, camera.gb_id, camera.id)

    def audit_hook(event: str, **fields: Any) -> None:
        p = current_principal()
        actor = str(fields.pop("user", None) or (p.actor if p else "unknown"))
        role = p.role if p is not None else ""
        if not role:
            with ctx.db.session() as s:
                user = user_service.get_user(s, actor)
                role = user.role if user is not None else ""
        camera = fields.get("camera_id")
        target = f"camera:{camera}" if camera is not None else ""
        detail = json.loads(json.dumps(fields, default=str))
        with ctx.db.session() as s:
            audit.record(s, actor=actor, role=role, action=event[:48], target=target, detail=detail)

    ctx.services.update(
        authorize_video=authorize_video,
        authorize_rules=authorize_rules,
        unmask_grant=unmask_grant,
        unmask_grant_for=unmask_grant_for,
        viewer_still_allowed=viewer_still_allowed,
        audit=audit_hook,
    )


def principal_json(p: Principal | None) -> str:
    """Return a principal as JSON (for logs and tests); never includes secrets."""
    if p is None:
        return "null"
    return json.dumps({"name": p.name, "role": p.role, "kind": p.kind, "via": p.via})


ROLE_LABELS = {
    "operator": "值班员 operator",
    "dispatcher": "调度员 dispatcher",
    "privacy_officer": "隐私官 privacy officer",
    "auditor": "审计员 auditor",
    "admin": "管理员 admin",
}


def user_badge(principal: Principal | None):
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
