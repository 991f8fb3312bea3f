"""The per-app context handed to routes, pages and callbacks (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import flask

from dashboard.settings import Settings
from layers.db import Database


@dataclass
class AppContext:
    """The running app's context (``get_ctx``): settings, the database, long-lived services."""

    settings: Settings
    db: Database
    services: dict[str, Any] = field(default_factory=dict)


def get_ctx() -> AppContext:
    """Return the AppContext of the Flask app handling the current request."""
    return flask.current_app.config["GRIDSIGHT"]
