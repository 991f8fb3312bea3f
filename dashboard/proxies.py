"""Cookie flags and reverse proxies: the Secure flag, and X-Forwarded-* from trusted peers only."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import flask
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix


def cookie_secure_now() -> bool:
    """Return True if cookies set on the current response get the ``Secure`` flag.

    ``cookie_secure``: "always", "never", or "auto" (the default): when the request came over
    HTTPS, directly or through a trusted proxy's ``X-Forwarded-Proto``.
    """
    mode = flask.current_app.config.get("GRIDSIGHT_COOKIE_SECURE", "auto")
    if mode != "auto":
        return mode == "always"
    return flask.has_request_context() and flask.request.is_secure


class SessionCookies(SecureCookieSessionInterface):
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
