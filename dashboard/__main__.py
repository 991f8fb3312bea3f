"""``python -m dashboard``: start GridSight on the embedded default (or GRIDSIGHT_* settings).

One worker (``GRIDSIGHT_WORKERS=1``, the default) runs waitress in this process; more run
gunicorn with that many worker processes (``dashboard/server.py``).
"""

from __future__ import annotations

import logging
import sys

from dashboard.server import shutdown_services
from layers.settings import SettingsError, load_settings

__all__ = ["main", "shutdown_services"]


def main() -> int:
    """Return the exit code after serving (0), or 2 for a configuration error (named)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings()
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"configuration error: {line}", file=sys.stderr)
        return 2
    from dashboard.server import serve

    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
