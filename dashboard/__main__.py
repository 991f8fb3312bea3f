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
    serve(
        app.server,
        host=settings.host,
        port=settings.port,
        threads=settings.threads,
        channel_timeout=120,
        ident="GridSight",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
