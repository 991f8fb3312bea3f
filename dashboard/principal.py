"""Who is asking: the request's principal from the session cookie, an API token or HTTP Basic.

``current_principal`` resolves it once per request: the signed session cookie (form login)
names a server-side session (``layers.services.sessions``), ``Authorization: Bearer gst_...``
an API token, HTTP Basic (only on ``/ogc``, for GIS clients that speak nothing else) a
user's credentials, checked through the sign-in throttle (``verify_password``).

A resolved session user or token is trusted for ``PRINCIPAL_RECHECK_S`` without asking the
database again; a change made through this process is seen at once (``users.auth_epoch``).
Long-lived responses (MJPEG, SSE) ask ``principal_still_valid`` (the database, never a cache)
every few seconds and end when it says no.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time

import flask

from dashboard import throttle
from dashboard.context import AppContext, BasicAuthCache, get_ctx
from dashboard.policy import BASIC_PREFIXES, Principal
from layers.services import logins
from layers.services import sessions as session_service
from layers.services import users as user_service
from layers.services.transaction import run
from layers.services.users import User

log = logging.getLogger(__name__)


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
        result, refusal = verify_password(username[:64], password, "basic")
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
            end_cookie_session(reason="no server-side session")
        return None
    digest = session_service.session_digest(str(sid))
    now = time.time()
    idle_limit = ctx.settings.web.session_minutes * 60
    if now - float(sess.get("last", 0)) > idle_limit:
        end_cookie_session(reason="expired")
        flask.g.session_expired = True
        return None
    key = ("session", digest)
    principal = _recent_principal(ctx, key)
    if principal is None:
        epoch = user_service.auth_epoch()
        live = run(ctx.db, session_service.live_session, digest, idle_limit)
        if live is None:
            end_cookie_session(reason="revoked")
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
            idle_s=ctx.settings.web.session_minutes * 60,
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
    return ctx.principal_cache


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


def _basic_cache(ctx: AppContext) -> BasicAuthCache:
    # Per app (the context), not per module. GIS clients send Basic credentials with every
    # tile/feature request and an argon2 check costs ~0.1-0.5 s, so a verified pair is
    # remembered for a minute under an HMAC with a random per-app key (never in clear).
    return ctx.basic_auth_cache


def _basic_cache_key(cache: BasicAuthCache, username: str, password: str) -> str:
    msg = f"{username}\0{password}".encode()
    return hmac.new(cache.key, msg, hashlib.sha256).hexdigest()


def _basic_cache_lookup(ctx: AppContext, username: str, password: str) -> Principal | None:
    cache = _basic_cache(ctx)
    hit = cache.entries.get(_basic_cache_key(cache, username, password))
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
    entries = cache.entries
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


def end_cookie_session(reason: str) -> None:
    keep_csrf = flask.session.get("csrf")
    flask.session.clear()
    if keep_csrf:
        flask.session["csrf"] = keep_csrf
    log.debug("session ended (%s)", reason)


def keep_rows_s() -> float:
    """Return how long a session row is kept: its idle limit plus SESSION_ROWS_KEPT_S."""
    return get_ctx().settings.web.session_minutes * 60 + SESSION_ROWS_KEPT_S


def start_cookie_session(sid: str) -> str:
    """Return the digest of the new server-side session ``sid`` after putting it in the cookie."""
    flask.session.clear()  # a fresh session id and CSRF token: no fixation across login
    flask.session.permanent = True
    flask.session["sid"] = sid
    flask.session["last"] = time.time()
    flask.session["csrf"] = secrets.token_urlsafe(32)
    flask.g.pop("principal", None)
    return session_service.session_digest(sid)


def login_throttle() -> throttle.LoginThrottle:
    return get_ctx().login_throttle


def verify_password(
    username: str, password: str, channel: str
) -> tuple[user_service.LoginResult | None, throttle.Refusal | None]:
    """Return (login result, None) after a throttled password check, or (None, refusal).

    A form sign-in that succeeds also starts its server-side session (``flask.g``).
    """
    ctx = get_ctx()
    gate = login_throttle()
    address = flask.request.remote_addr or ""
    device = gate.device_for(username)
    known: list[bool] = []

    def is_known() -> bool:  # one database read per attempt, only if the throttle asks
        if not known:
            known.append(run(ctx.db, logins.account_active, username))
        return known[0]

    refusal = gate.check(username, address, device, is_known)
    if refusal is not None:
        log.info("sign-in for %r from %s refused (%s limit)", username, address, refusal.reason)
        return None, refusal
    with gate.slots.hold() as got_slot:
        if not got_slot:
            return None, throttle.Refusal(BUSY_RETRY_S, "busy")
        outcome = run(ctx.db, logins.sign_in, username, password, channel=channel,
                      client=address, keep_rows_s=keep_rows_s())  # fmt: skip
        result = outcome.result
        if outcome.session_id is not None:
            digest = start_cookie_session(outcome.session_id)
            flask.g.new_principal = principal_from_user(result.user, "session", digest)
        elif result.ok:
            flask.g.new_principal = principal_from_user(result.user, "basic")
    if result.ok:
        gate.succeeded(username, address, device)
    else:
        gate.failed(username, address, device, is_known())
    return result, None


#: Seconds a sign-in told "busy" (every verification slot taken) is asked to wait.
BUSY_RETRY_S = 2
