"""The video engine's view of the layers: camera sources, rules in force, status write-back.

``hub_bindings(db)`` is the one place that wires a ``streams.hub.StreamHub`` to the layer
services. The in-process hub of a web process (``dashboard/routes/video.py``) and every
redaction worker of the Ray cluster (``streams.cluster``, which opens its own ``Database``
through ``hub_bindings_for_url``) use it, so both read the same cameras and rules and write
status the same way, and hold every rule to the same privacy floor.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from sqlalchemy.engine import make_url

from layers.db import Database
from layers.services import cameras as camera_service
from layers.services import rules as rule_service
from layers.streams_seam import (
    FileSourceConfig,
    HubBindings,
    PrivacyFloor,
    RedactionRules,
    SourceError,
)

log = logging.getLogger(__name__)


def hub_bindings(
    db: Database,
    sample_video: str | Path | None = None,
    floor: PrivacyFloor | dict | None = None,
) -> HubBindings:
    """Return the hub's callables on ``db``: sources, rules, status, rules revision.

    Parameters
    ----------
    db : Database
        Where cameras and redaction rules live and camera status is written.
    sample_video : str or Path, optional
        Video file looped for cameras without a ``stream_url`` (demo walls); None = such
        cameras have no source (their stream reports the error, nothing is served).
    floor : PrivacyFloor or its dict, optional
        The deployment's privacy floor (``Settings.privacy.floor()``); every rule a stream
        gets is raised to it. None = the built-in floor (faces, persons, plates).
    """
    floor = floor if isinstance(floor, PrivacyFloor) else PrivacyFloor.model_validate(floor or {})

    def source_for(camera_id: int) -> object:
        camera = camera_service.get_camera(db, camera_id)
        if camera.stream_url:
            return camera.stream_url
        if sample_video:
            return FileSourceConfig(path=str(sample_video))
        raise SourceError(f"camera {camera_id} has no stream_url")

    def rules_for(camera_id: int) -> RedactionRules:
        return rule_service.rules_for_camera(db, camera_id, floor)

    def on_status(camera_id: int, status: str, last_frame: dt.datetime | None) -> None:
        camera_service.set_status(db, camera_id, status, last_frame)

    return HubBindings(
        source_for=source_for,
        rules_for=rules_for,
        on_status=on_status,
        rules_revision=lambda: rule_service.revision(db),
    )


def hub_bindings_for_url(
    db_url: str, sample_video: str | None = None, floor: dict | None = None
) -> HubBindings:
    """Return ``hub_bindings`` on a new ``Database`` for ``db_url`` (a redaction worker's own).

    Picklable by reference (``functools.partial(hub_bindings_for_url, url, video, floor)``,
    the floor as plain data), so a web process can hand it to a Ray actor without sending a
    connection; the worker enforces the same privacy floor as the web process.
    """
    return hub_bindings(Database(db_url), sample_video, floor)


def portable_db_url(db_url: str) -> str:
    """Return ``db_url`` with a relative SQLite path made absolute (other processes' cwd differ).

    A redaction worker runs in a process started by Ray, whose working directory is not the
    web process's: ``sqlite:///data/gridsight.sqlite`` would open another (empty) file there.
    """
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return db_url
    path = Path(url.database).expanduser()
    if path.is_absolute():
        return db_url
    return url.set(database=str(path.resolve())).render_as_string(hide_password=False)
