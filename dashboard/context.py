"""The per-app context handed to routes, pages and callbacks (no module-level state).

Everything long-lived that one app holds is a typed field here (its settings, database, event
bus, video hub, caches and access hooks), never a string key in a dict: a reader sees what
exists, and a misspelt name is an AttributeError, not a silent ``None``.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import flask

from layers.db import Database
from layers.settings import Settings

if TYPE_CHECKING:
    from dashboard.stream_caps import StreamLimiter
    from dashboard.throttle import LoginThrottle
    from layers.leader import LeaderElector
    from layers.services.incidents import IntakeWriter
    from streams.cluster import RayStreamRelay
    from streams.events import EventBus
    from streams.hub import HubSettings, StreamHub


@dataclass
class AccessHooks:
    """The access decisions the video and rules routes ask for; an absent hook refuses.

    ``dashboard.access_hooks.install_video_hooks`` fills them in; a route finding one None
    fails closed (403, redacted video, the view ends), never open.
    """

    #: (request, camera_id) -> may this request see the camera's (redacted) video?
    authorize_video: Callable[[Any, int], bool] | None = None
    #: (request, "read" | "write") -> may this request read or change redaction rules?
    authorize_rules: Callable[[Any, str], bool] | None = None
    #: (request, camera_id) -> watermark text of an active unmask grant, else None (redacted)
    unmask_grant: Callable[[Any, int], str | None] | None = None
    #: (user name, camera_id) -> the same without a request, to re-check a running view
    unmask_grant_for: Callable[[str, int], str | None] | None = None
    #: (principal, camera_id) -> is the viewer of a running stream still allowed?
    viewer_still_allowed: Callable[[Any, int], bool] | None = None
    #: (event, **fields) -> record a video view, snapshot or export in the audit log
    audit: Callable[..., None] | None = None


@dataclass
class BasicAuthCache:
    """Verified HTTP Basic credentials of one app: HMAC digest -> expiry, under a per-app key."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    entries: dict[str, Any] = field(default_factory=dict)


@dataclass
class AppContext:
    """One app's settings, database and long-lived services, as typed fields."""

    settings: Settings
    db: Database
    hooks: AccessHooks = field(default_factory=AccessHooks)
    #: the live event bus (in-process or Redis) and the publisher feeding it from commits
    events: EventBus | None = None
    events_publisher: Any = None
    #: the leader election that runs the simulator, escalation and retention in one process
    leader: LeaderElector | None = None
    #: the video hub (in-process, or the Ray relay in cluster mode) and the open-view caps
    stream_hub: StreamHub | RayStreamRelay | None = None
    video_streams: StreamLimiter | None = None
    #: the caps on open live event streams (SSE)
    event_streams: StreamLimiter | None = None
    #: live-stream tuning when not derived from ``settings.video`` (tests shorten timeouts)
    hub_settings: HubSettings | None = None
    login_throttle: LoginThrottle | None = None
    #: the group-commit incident writer of the intake API (started on first use)
    intake_writer: IntakeWriter | None = None
    principal_cache: dict = field(default_factory=dict)
    basic_auth_cache: BasicAuthCache = field(default_factory=BasicAuthCache)
    ogc_cache: OrderedDict = field(default_factory=OrderedDict)
    ogc_cache_lock: threading.Lock = field(default_factory=threading.Lock)

    def running_services(self) -> Iterator[tuple[str, Any]]:
        """Yield (name, service) of what must be stopped at shutdown, in stopping order.

        Background work first (leader's services, intake), then video, then the event bus.
        """
        for name in ("leader", "intake_writer", "stream_hub", "events_publisher", "events"):
            service = getattr(self, name)
            if service is not None:
                yield name, service


def get_ctx() -> AppContext:
    """Return the AppContext of the Flask app handling the current request."""
    return flask.current_app.config["GRIDSIGHT"]
