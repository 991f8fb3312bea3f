"""``python -m dashboard``: start GridSight on the embedded default (or GRIDSIGHT_* settings)."""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from dashboard.settings import load_settings

    try:
        settings = load_settings()
    except ValidationError as exc:
        for err in exc.errors():
            field = "GRIDSIGHT_" + "_".join(str(p) for p in err["loc"]).upper()
            print(f"configuration error: {field}: {err['msg']}", file=sys.stderr)
        return 2
    from waitress import serve

    from dashboard.app import create_app

    app = create_app(settings)
    logging.getLogger("dashboard").info(
        "GridSight on http://%s:%s/ (database %s)",
        settings.host,
        settings.port,
        settings.db_url.split("@")[-1],
    )
    try:
        serve(
            app.server,
            host=settings.host,
            port=settings.port,
            threads=settings.threads,
            channel_timeout=120,
            ident="GridSight",
        )
    finally:
        shutdown_services(app.server.config["GRIDSIGHT"])
    return 0


def shutdown_services(ctx) -> None:
    """Stop the app's background services (camera readers, simulator, loops) cleanly."""
    for name, service in list(ctx.services.items()):
        for method in ("close", "stop"):
            fn = getattr(service, method, None)
            if callable(fn):
                try:
                    fn()
                except Exception:  # noqa: BLE001 - shutting down: log and go on with the rest
                    logging.getLogger("dashboard").exception("stopping %s failed", name)
                break


if __name__ == "__main__":
    sys.exit(main())
