"""Run GridSight under a production WSGI server: waitress (one process) or gunicorn (several).

``GRIDSIGHT_WORKERS=1`` (the default) serves the app with waitress in this process, as the
README's quick start does, with two thread pools: ``GRIDSIGHT_THREADS`` threads for pages,
API, login and ``/healthz``, and ``GRIDSIGHT_STREAM_THREADS`` for the requests that may hold
a thread for long (MJPEG views, snapshots waiting for a camera, live event streams). A
request goes to its pool by path before any application code runs, so however many viewers
hang on dead cameras, pages and health checks find a free thread. Stream connections also
get small output buffers, so a slow viewer's delay is bounded by what those buffers hold
rather than growing (it gets the newest frame when it can take one; the frames in between
are dropped). More workers run gunicorn programmatically: a master process that
migrates and seeds once, then forks ``workers`` processes of the ``gthread`` worker class
with ``GRIDSIGHT_THREADS`` threads each, bound to ``GRIDSIGHT_HOST:GRIDSIGHT_PORT``. Every
worker builds its own app with ``create_app`` (its own database pool, event-bus consumer
and leader-election thread); nothing the workers must share lives in their memory. Live
MJPEG and event streams hold one thread each for as long as they are open.

gunicorn is imported only when more than one worker is asked for.
"""

from __future__ import annotations

import copy
import logging
import signal
import socket
from typing import Any

from layers.settings import Settings

log = logging.getLogger(__name__)

GUNICORN_TIMEOUT_S = 120  # a worker silent this long is restarted (its main loop beats)
GRACEFUL_TIMEOUT_S = 10  # open streams get this long to end on shutdown
#: Request paths served from the stream pool (long-lived or waiting on a camera).
STREAM_PATH_PREFIXES = ("/video/", "/api/v1/events")
#: Bytes waitress buffers for one stream connection before the generator waits for the
#: client, and the kernel send buffer of that socket: together about one large frame, so a
#: slow viewer's next frame is the newest one, not one queued seconds ago.
STREAM_OUTBUF_BYTES = 16 * 1024
STREAM_SNDBUF_BYTES = 32 * 1024


def is_stream_path(path: str) -> bool:
    """Return True if requests for ``path`` are served from the stream pool."""
    return path.startswith(STREAM_PATH_PREFIXES)


class RoutedTaskDispatcher:
    """A waitress task dispatcher with two thread pools: streams, and everything else.

    waitress hands ``add_task`` the connection whose next request is parsed; its path picks
    the pool. Stream connections switch to small output buffers (``STREAM_OUTBUF_BYTES``) so
    the frames a slow client cannot take are never queued for it.
    """

    def __init__(self, page_threads: int, stream_threads: int) -> None:
        from waitress.task import ThreadedTaskDispatcher

        self.pages = ThreadedTaskDispatcher()
        self.pages.set_thread_count(page_threads)
        self.streams = ThreadedTaskDispatcher()
        self.streams.set_thread_count(stream_threads)

    def set_thread_count(self, count: int) -> None:
        """Set the number of page threads (waitress's own setting)."""
        self.pages.set_thread_count(count)

    def add_task(self, channel) -> None:
        """Queue ``channel``'s next request on the pool its path belongs to."""
        requests = getattr(channel, "requests", None) or []
        path = getattr(requests[0], "path", "") if requests else ""
        if is_stream_path(path or ""):
            self._tune_for_streaming(channel)
            self.streams.add_task(channel)
        else:
            self.pages.add_task(channel)

    @staticmethod
    def _tune_for_streaming(channel) -> None:
        if getattr(channel, "_gridsight_stream", False):
            return
        channel._gridsight_stream = True
        adj = copy.copy(channel.adj)
        adj.outbuf_high_watermark = STREAM_OUTBUF_BYTES
        channel.adj = adj
        try:
            channel.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF_BYTES)
        except (OSError, AttributeError):  # not a TCP socket (tests, unix sockets): buffers stay
            log.debug("cannot shrink the send buffer of a stream connection")

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        """Stop both pools; return True if both stopped in time."""
        streams_done = self.streams.shutdown(cancel_pending, timeout)
        pages_done = self.pages.shutdown(cancel_pending, timeout)
        return bool(streams_done and pages_done)


def create_waitress_server(app, settings: Settings, **adjustments):
    """Return a waitress server for ``app`` with the page and stream pools (not yet running).

    ``adjustments`` override waitress settings (tests pass ``port=0``).
    """
    from waitress import create_server

    options = {
        "host": settings.web.host,
        "port": settings.web.port,
        "threads": settings.web.threads,
        "channel_timeout": 120,
        "ident": "GridSight",
        # waitress drops X-Forwarded-* unless told otherwise; with trusted proxies they pass
        # and dashboard.proxies.TrustedProxyFix believes them from those peers only
        "clear_untrusted_proxy_headers": not settings.web.trusted_proxies.strip(),
        # every open stream is a connection: leave room for pages above all of them
        "connection_limit": 100 + 2 * (settings.web.threads + settings.web.stream_threads),
        **adjustments,
    }
    dispatcher = RoutedTaskDispatcher(options["threads"], settings.web.stream_threads)
    return create_server(app, _dispatcher=dispatcher, **options)


def shutdown_services(ctx) -> None:
    """Stop the app's background services (camera readers, simulator, loops) cleanly."""
    for name, service in list(ctx.running_services()):
        for method in ("close", "stop"):
            fn = getattr(service, method, None)
            if callable(fn):
                try:
                    fn()
                except Exception:  # noqa: BLE001 - shutting down: log and go on with the rest
                    log.exception("stopping %s failed", name)
                break


def proxy_networks(trusted_proxies: str) -> str:
    """Return the trusted proxies as gunicorn wants them: comma-separated canonical networks."""
    import ipaddress

    parts = (p.strip() for p in trusted_proxies.split(","))
    return ",".join(str(ipaddress.ip_network(p, strict=False)) for p in parts if p)


def bind_address(host: str, port: int) -> str:
    """Return gunicorn's ``bind`` string for ``host`` and ``port`` (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """Return the gunicorn settings GridSight runs with (see the module docstring)."""
    return {
        "bind": bind_address(settings.web.host, settings.web.port),
        "workers": settings.web.workers,
        "worker_class": "gthread",
        "threads": settings.web.threads,
        "timeout": GUNICORN_TIMEOUT_S,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "keepalive": 5,
        "preload_app": False,  # each worker imports and builds its own app after the fork
        "control_socket_disable": True,  # no shared ~/.gunicorn socket between deployments
        "proc_name": "gridsight",
        # X-Forwarded-* only from GRIDSIGHT_TRUSTED_PROXIES (gunicorn trusts 127.0.0.1 itself
        # by default); dashboard.proxies.TrustedProxyFix applies the same list to the app
        "forwarded_allow_ips": proxy_networks(settings.web.trusted_proxies),
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "post_worker_init": _post_worker_init,
        "worker_exit": _worker_exit,
    }


def _worker_ctx(worker):
    server = getattr(worker, "wsgi", None)  # None in the master (a worker that never booted)
    return getattr(server, "config", {}).get("GRIDSIGHT") if server is not None else None


def _post_worker_init(worker) -> None:
    """End a worker's open event streams as soon as it is told to stop (graceful SIGTERM).

    gunicorn then waits up to ``graceful_timeout`` for requests in flight; an SSE stream
    never finishes by itself, so its generator is woken to return at once.
    """
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame) -> None:
        ctx = _worker_ctx(worker)
        bus = ctx.events if ctx is not None else None
        if bus is not None:
            bus.end_streams()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


def _worker_exit(_arbiter, worker) -> None:
    ctx = _worker_ctx(worker)
    if ctx is not None:
        shutdown_services(ctx)


def prepare_once(settings: Settings) -> None:
    """Migrate, seed on first start and create the first admin, in this (master) process.

    Workers repeat these steps under the startup lock and find nothing left to do; doing the
    slow first seed here keeps it out of gunicorn's worker boot timeout.
    """
    from dashboard.app import attach_audit_key, prepare_database
    from dashboard.auth import bootstrap_first_admin
    from dashboard.context import AppContext
    from layers.db import Database

    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = Database(settings.db.url)
    attach_audit_key(db, settings)
    try:
        ctx = AppContext(settings=settings, db=db)
        prepare_database(ctx)
        bootstrap_first_admin(ctx)
    finally:
        db.dispose()  # no connection may cross the fork into the workers


def serve_waitress(settings: Settings) -> None:
    """Serve the app with waitress in this process until interrupted."""
    from dashboard.app import create_app

    app = create_app(settings)
    log.info("GridSight on http://%s:%s/ (database %s)", settings.web.host, settings.web.port,
             settings.db.url.split("@")[-1])  # fmt: skip
    # SIGTERM (systemd, docker stop) ends like Ctrl-C: the services stop, the leader lease
    # is given up and queued events are flushed, instead of the process just vanishing
    signal.signal(signal.SIGTERM, _exit_on_term)
    server = create_waitress_server(app.server, settings)
    server.print_listen("Serving on http://{}:{}")
    try:
        server.run()
    finally:
        shutdown_services(app.server.config["GRIDSIGHT"])


def _exit_on_term(_signum, _frame) -> None:
    raise SystemExit(0)


def serve_gunicorn(settings: Settings) -> None:
    """Serve the app with gunicorn: ``settings.web.workers`` gthread workers, until stopped."""
    from gunicorn.app.base import BaseApplication

    class GridSightApplication(BaseApplication):
        """gunicorn application whose workers each build the app with ``create_app``."""

        def __init__(self, options: dict[str, Any]) -> None:
            self.options = options
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.options.items():
                self.cfg.set(key, value)

        def load(self):
            from dashboard.app import create_app

            return create_app(settings).server

    prepare_once(settings)
    log.info("GridSight on http://%s:%s/ with %s gunicorn workers x %s threads "
             "(database %s, events via Redis stream %s)", settings.web.host, settings.web.port,
             settings.web.workers, settings.web.threads, settings.db.url.split("@")[-1],
             settings.events.redis_stream)  # fmt: skip
    GridSightApplication(gunicorn_options(settings)).run()


def serve(settings: Settings) -> None:
    """Serve GridSight with the server ``settings.web.workers`` asks for."""
    if settings.web.workers > 1:
        serve_gunicorn(settings)
    else:
        serve_waitress(settings)
