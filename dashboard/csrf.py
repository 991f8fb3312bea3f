"""CSRF: every state-changing request that the session cookie authenticates carries the token.

The session's token goes in a form field ``csrf_token`` or the ``X-CSRFToken`` header (Dash's
renderer copies it from the ``_csrf_token`` cookie, set after every response that needs it).
Bearer and Basic requests carry no cookie authority and are exempt (``dashboard.auth``).
"""

from __future__ import annotations

import hmac
import secrets

import flask

from dashboard import auth_forms
from dashboard.proxies import cookie_secure_now

CSRF_COOKIE = "_csrf_token"
CSRF_HEADER = "X-CSRFToken"
CSRF_FIELD = auth_forms.CSRF_FIELD


def csrf_token() -> str:
    """Return the session's CSRF token, creating one if needed."""
    token = flask.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        flask.session["csrf"] = token
    return token


def csrf_ok() -> bool:
    expected = flask.session.get("csrf")
    if not expected:
        return False
    sent = flask.request.headers.get(CSRF_HEADER) or flask.request.form.get(CSRF_FIELD) or ""
    return hmac.compare_digest(str(sent), str(expected))


def set_csrf_cookie(resp: flask.Response) -> flask.Response:
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
