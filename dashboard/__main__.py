"""``python -m dashboard``: start GridSight on the embedded default (or GRIDSIGHT_* settings).

One worker (``GRIDSIGHT_WORKERS=1``, the default) runs waitress in this process; more run
gunicorn with that many worker processes (``dashboard/server.py``).
"""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from dashboard.server import shutdown_services

__all__ = ["main", "shutdown_services"]


def main() -> int:
    """Return the exit code after serving (0), or 2 for a configuration error (named)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from dashboard.settings import load_settings

    try:
        settings = load_settings()
    except ValidationError as exc:
        for err in exc.errors():
            field = "GRIDSIGHT_" + "_".join(str(p) for p in err["loc"]).upper()
            msg = str(err["msg"]).removeprefix("Value error, ")
            print(f"configuration error: {field}: {msg}", file=sys.stderr)
        return 2
    from dashboard.server import serve

    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
