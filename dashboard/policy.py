"""Who is asking (``Principal``) and what they may open: the access matrix and its lookups.

``ACCESS_MATRIX`` plus the rows route modules add with ``declare_policy``; the longest prefix
wins, a method-specific row beats a method-less one, and a path no row covers is denied
(``resolve_policy`` / ``is_allowed``). Camera scopes (``camera_allowed``; district scopes
reach the query layer as ``layers.services.scope.Scope``) and who sees personal data. No
sessions or requests here: ``dashboard.principal`` resolves the principal, ``dashboard.auth``
enforces the answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import flask

from layers.services import users as user_service

log = logging.getLogger(__name__)

PUBLIC = "public"
AUTHENTICATED = "authenticated"
MACHINE_PREFIXES = ("/api/", "/ogc", "/open311")
BASIC_PREFIXES = ("/ogc",)

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


class PolicyError(ValueError):
    """Raised for an invalid policy declaration; the message names the bad part."""


# -- principals -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    """Who is making the request (``current_principal``).

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


# Roles that see reporters' names and phone numbers in clear (dispatchers call reporters back,
# 一线回访); the handler of a case sees its reporter too; everybody else gets
# layers.codes.mask_name / mask_phone.
PERSONAL_DATA_ROLES = frozenset({"dispatcher"})


def may_see_personal_data(principal: Principal | None, handler: str | None = None) -> bool:
    """Return True if ``principal`` may see a case's reporter name/phone unmasked (UI and API).

    Dispatchers always; any other signed-in user only as the case's ``handler`` (the user
    name ``layers.services.cases`` names: who accepted the case, while it is with them).
    API tokens never.
    """
    if principal is None or principal.kind != "user":
        return False
    return principal.role in PERSONAL_DATA_ROLES or (
        handler is not None and principal.name == handler
    )


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
