"""``/healthz``: liveness + database status + layer counts, as JSON (no login needed)."""

from __future__ import annotations

import os

import flask

from dashboard.context import AppContext
from layers.services.inventory import layer_counts
from layers.services.transaction import run


def health_report(ctx: AppContext) -> tuple[dict, int]:
    """Return the health document and the HTTP status (200 ok, 503 database down).

    Besides the database it says whether this process is the deployment's leader (runs the
    background services: ``simulator`` is ``running`` here, ``standby`` elsewhere) and the
    state of the live event bus.
    """
    doc: dict = {"status": "ok", "db": {"backend": ctx.db.dialect}}
    try:
        counts = run(ctx.db, layer_counts)
        doc["db"].update(status="ok", schema=ctx.db.current_revision())
        doc["counts"] = counts
        status = 200
    except Exception as exc:  # noqa: BLE001 - any database failure means "down"
        doc["status"] = "degraded"
        doc["db"].update(status="down", error=type(exc).__name__)
        status = 503
    leader = ctx.leader
    services = getattr(leader, "services", None) or {}
    sim = services.get("simulator")
    if sim is not None and getattr(sim, "running", True):
        doc["simulator"] = "running"
    elif leader is not None and ctx.settings.demo.simulator:
        doc["simulator"] = "standby"  # another process of the deployment runs it
    else:
        doc["simulator"] = "off"
    doc["leader"] = bool(leader is not None and leader.is_leader)
    doc["pid"] = os.getpid()  # which worker answered (several share one port)
    bus = ctx.events
    if bus is not None:
        stats = bus.stats()
        doc["events"] = {k: stats[k] for k in ("backend", "complete", "connected") if k in stats}
    return doc, status


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Add ``/healthz`` to ``server``."""

    @server.get("/healthz")
    def healthz():
        doc, status = health_report(ctx)
        return flask.jsonify(doc), status

    server.config.setdefault("GRIDSIGHT_PUBLIC_PATHS", set()).add("/healthz")
