"""The app factory: ``create_app(settings)`` builds the Dash app, its shell and its routes.

Thin by design: pages live in ``dashboard/pages`` (one module each, registered with
``dash.register_page``), HTTP routes in ``dashboard/routes`` (each module exposes
``register(server, ctx)``), data access in ``layers``.
"""

from __future__ import annotations

import importlib
import logging
import os
import secrets
from pathlib import Path

import dash
from dash import Dash, Input, Output, State, dcc, html

from dashboard import dash_guard
from dashboard.context import AppContext
from dashboard.i18n import t
from layers.db import Database
from layers.settings import Settings

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

# HTTP route modules, each with register(server, ctx). Order matters only for auth hooks,
# which must come first so every later route is behind them.
ROUTE_MODULES = [
    "dashboard.auth",
    "dashboard.routes.health",
    "dashboard.routes.layers_geojson",
    "dashboard.routes.video",
    "dashboard.routes.rules",
    "dashboard.routes.api",
    "dashboard.routes.openapi",
    "dashboard.routes.events",
    "dashboard.routes.open311",
    "dashboard.routes.ogc",
    "dashboard.routes.tiles",
    "dashboard.routes.situation_export",
]

NAV_PAGES = [("nav.operator", "/"), ("nav.dispatch", "/dispatch"), ("nav.privacy", "/privacy"),
             ("nav.audit", "/audit"), ("nav.admin", "/admin")]  # fmt: skip


def _secret_key(settings: Settings) -> str:
    """Return the session-signing key: the setting, else data_dir/secret_key (made once).

    Several workers start at the same moment: the key is written to a private temporary
    file and linked into place, which fails if another worker got there first, so every
    worker reads the same complete key (never a half-written file).
    """
    if settings.web.secret_key:
        return settings.web.secret_key
    path = Path(settings.data_dir) / "secret_key"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic: exactly one worker's key becomes the key
        except FileExistsError:
            log.debug("another worker created the secret key first")
        finally:
            tmp.unlink()
    key = path.read_text().strip()
    if len(key) < 32:
        raise RuntimeError(
            f"{path} holds no usable secret key ({len(key)} characters); delete it to have a "
            "new one generated (this signs everybody out) or set GRIDSIGHT_SECRET_KEY"
        )
    return key


def shell_layout() -> html.Div:
    """Return the app shell: header with navigation and language switch, page container."""
    return html.Div(
        className="gs-shell",
        children=[
            dcc.Store(id="app-lang", storage_type="local", data=None),
            dcc.Location(id="app-url"),
            html.Header(
                className="gs-header",
                children=[
                    html.Div(
                        [
                            html.Span(id="app-title", className="gs-title"),
                            html.Span(id="app-subtitle", className="gs-subtitle"),
                        ],
                        className="gs-brand",
                    ),
                    html.Nav(id="app-nav", className="gs-nav"),
                    html.Div(id="app-user", className="gs-user"),
                    html.Button(id="app-lang-toggle", className="gs-lang", n_clicks=0),
                ],
            ),
            html.Main(dash.page_container, className="gs-main"),
        ],
    )


def create_app(
    settings: Settings,
    *,
    db: Database | None = None,
    start_background: bool = True,
) -> Dash:
    """Return a configured Dash app for ``settings``.

    Migrates the database and seeds the demo city on first start (``seed_on_start``), both
    under the deployment's startup lock; creates the live event bus (``streams.events``,
    Redis when ``redis_url`` is set) and publishes every commit's events to it; registers
    every HTTP route module and, with ``start_background``, joins the leader election: the
    one leader process of the deployment runs the incident simulator, the overdue
    escalation and the retention purge.
    """
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # key, db, snapshots
    db = db or Database(settings.db.url)
    attach_audit_key(db, settings)
    ctx = AppContext(settings=settings, db=db)
    prepare_database(ctx)
    _start_event_bus(ctx)

    app = Dash(
        __name__,
        use_pages=True,
        pages_folder=str(HERE / "pages"),
        assets_folder=str(HERE / "assets"),
        serve_locally=True,
        suppress_callback_exceptions=True,
        title="GridSight",
        update_title=None,
    )
    server = app.server
    server.config["GRIDSIGHT"] = ctx
    server.secret_key = _secret_key(settings)
    server.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.layout = shell_layout
    _register_shell_callbacks(app)

    for module_name in ROUTE_MODULES:
        importlib.import_module(module_name).register(server, ctx)
    dash_guard.install(app)  # 4xx for malformed Dash requests, before Dash reads them

    if start_background:
        _start_leader_election(ctx)
    return app


def attach_audit_key(db: Database, settings: Settings) -> None:
    """Give ``db`` the deployment's audit key (``settings.audit_key_path()``) unless it has one."""
    from layers.services.audit_key import AuditKey

    if db.audit_key is None:
        db.audit_key = AuditKey(settings.audit_key_path())


def prepare_database(ctx: AppContext) -> None:
    """Migrate the database and seed the demo city on first start, once per deployment.

    Workers starting together take turns under ``layers.leader.startup_lock``: the first
    migrates and seeds, the others then find the schema current and the city present.
    """
    from layers.leader import startup_lock
    from layers.services.audit import ensure_keyed

    with startup_lock(ctx.db):
        ctx.db.migrate()
        ensure_keyed(ctx.db)  # creates the audit key on first start and seals the chain
        if ctx.settings.demo.seed_on_start:
            _seed_if_empty(ctx)


def _start_event_bus(ctx: AppContext) -> None:
    """Create the live event bus (Redis when configured) and publish the db's commits to it."""
    from layers.events import attach
    from streams.events import make_event_bus

    bus = make_event_bus(ctx.settings.events.redis_url, ctx.settings.events.redis_stream)
    ctx.events = bus
    ctx.events_publisher = _Detach(attach(ctx.db, bus.publish))


class _Detach:
    """A service whose ``stop`` detaches the bus publisher from the database's sessions."""

    def __init__(self, detach) -> None:
        self._detach = detach

    def stop(self) -> None:
        self._detach()


def _start_leader_election(ctx: AppContext) -> None:
    """Run the background services in exactly one process of the deployment (the leader)."""
    from layers.leader import LeaderElector, LeaderLease

    def start_services() -> dict:
        services: dict = {}
        if ctx.settings.demo.simulator:
            services["simulator"] = _start_simulator(ctx)
        services["escalation"] = _start_escalation(ctx)
        retention = _start_retention(ctx)
        if retention is not None:
            services["retention"] = retention
        return services

    elector = LeaderElector(
        LeaderLease(ctx.db), start_services, retry_s=ctx.settings.web.leader_retry_s
    )
    ctx.leader = elector.start()


def _seed_if_empty(ctx: AppContext) -> None:
    from layers.seed import seed_city
    from layers.services.inventory import city_is_empty
    from layers.services.transaction import run

    if not run(ctx.db, city_is_empty):
        # an imported (possibly partial) city is the operator's data: never seed over it
        return

    log.info(
        "empty database: seeding the %s city (seed %s)",
        ctx.settings.demo.seed_scale,
        ctx.settings.demo.seed,
    )
    counts = seed_city(
        ctx.db, scale=ctx.settings.demo.seed_scale, seed=ctx.settings.demo.seed, progress=False
    )
    log.info("seeded: %s", counts)


def _start_escalation(ctx: AppContext):
    """Return the started loop that escalates overdue incidents one level per SLA step."""
    from layers.services.escalation import EscalationLoop

    loop = EscalationLoop(ctx.db, interval_s=60.0)
    loop.start()
    return loop


def _start_retention(ctx: AppContext):
    """Return the started retention purge loop (None when retention is off)."""
    if ctx.settings.privacy.personal_data_retention_days <= 0:
        return None
    from layers.services.retention import RetentionLoop

    loop = RetentionLoop(
        ctx.db,
        days=ctx.settings.privacy.personal_data_retention_days,
        snapshots_dir=Path(ctx.settings.data_dir) / "snapshots",
    )
    loop.start()
    return loop


def _start_simulator(ctx: AppContext):
    """Return the started incident simulator."""
    from layers.simulator import IncidentSimulator

    sim = IncidentSimulator(ctx.db, interval_s=ctx.settings.demo.simulator_interval_s)
    sim.start()
    return sim


def toggle_language(_n: int, lang: str | None) -> str:
    """Return the other language (zh <-> en)."""
    return "en" if (lang or "zh") == "zh" else "zh"


def render_shell(lang: str | None):
    """Return the shell's labels in the chosen language, the nav the role may open, the user."""
    from dashboard.auth import allowed_paths, current_principal, user_badge

    lang = lang or "zh"
    principal = current_principal()
    allowed = set(allowed_paths(principal, [href for _key, href in NAV_PAGES]))
    nav = [
        dcc.Link(t(key, lang), href=href, className="gs-nav-link")
        for key, href in NAV_PAGES
        if href in allowed
    ]
    return (
        t("app.title", lang),
        t("app.subtitle", lang),
        nav,
        t("lang.switch", lang),
        user_badge(principal),
    )


def _register_shell_callbacks(app: Dash) -> None:
    """Register the shell's callbacks on ``app`` itself.

    ``dash.callback`` registrations made at import time are handed to the first app of the
    process that serves a request and are gone for every later app (tests build many apps in
    one process); page modules are re-executed per app, this module is not.
    """
    app.callback(
        Output("app-lang", "data"),
        Input("app-lang-toggle", "n_clicks"),
        State("app-lang", "data"),
        prevent_initial_call=True,
    )(toggle_language)
    app.callback(
        Output("app-title", "children"),
        Output("app-subtitle", "children"),
        Output("app-nav", "children"),
        Output("app-lang-toggle", "children"),
        Output("app-user", "children"),
        Input("app-lang", "data"),
    )(render_shell)
