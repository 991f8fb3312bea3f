"""One reader per camera shared by every viewer: ``StreamHub`` over ``streams.camera``.

``StreamHub`` starts a ``CameraStream`` (``streams.camera``: capture, redaction, watchdog,
fail-closed output, truthful markers) for the first viewer of a camera and stops it when it
has been idle for ``idle_stop_s``. ``HubBindings`` is how it reads cameras and rules and
reports status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from streams.camera import STATUSES, CameraStream, HubSettings, StatusCallback
from streams.frames import ServedFrame
from streams.rules import RedactionRules
from streams.sources import create_source

__all__ = ["STATUSES", "CameraStream", "HubBindings", "HubSettings", "StatusCallback", "StreamHub"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubBindings:
    """The callables a ``StreamHub`` reads cameras and rules through and reports status to.

    ``layers.services.video.hub_bindings`` builds them on the layer services; the in-process
    hub and every redaction worker of ``streams.cluster`` use the same function, so both read
    sources and rules and write status the same way.
    """

    source_for: Callable[[int], object]
    rules_for: Callable[[int], RedactionRules]
    on_status: StatusCallback | None = None
    rules_revision: Callable[[], Hashable] | None = None


class StreamHub:
    """The set of shared ``CameraStream``s: one per camera, started on demand, stopped when idle."""

    def __init__(
        self,
        source_for: Callable[[int], object],
        rules_for: Callable[[int], RedactionRules],
        *,
        on_status: StatusCallback | None = None,
        rules_revision: Callable[[], Hashable] | None = None,
        settings: HubSettings | None = None,
    ) -> None:
        """``source_for(camera_id)`` returns a source config, dict or stream URL."""
        self.settings = settings or HubSettings()
        self._source_for = source_for
        self._rules_for = rules_for
        self._on_status = on_status
        self._rules_revision = rules_revision
        self._streams: dict[int, CameraStream] = {}
        #: how many ``CameraStream``s were started per camera (one per run, not per viewer)
        self.started: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._last_revision: Hashable = None
        # started with the first stream, so an app that never serves video runs no thread
        self._monitor: threading.Thread | None = None

    @classmethod
    def from_bindings(cls, bindings: HubBindings, settings: HubSettings | None = None) -> StreamHub:
        """Return a hub reading cameras and rules through ``bindings``."""
        return cls(
            bindings.source_for,
            bindings.rules_for,
            on_status=bindings.on_status,
            rules_revision=bindings.rules_revision,
            settings=settings,
        )

    def stream(self, camera_id: int) -> CameraStream:
        """Return the running stream of ``camera_id``, starting it if needed."""
        with self._lock:
            return self._stream_locked(camera_id)

    def _stream_locked(self, camera_id: int) -> CameraStream:
        """Return the stream of ``camera_id``, starting it; the caller holds ``_lock``."""
        if self._closed.is_set():
            raise RuntimeError("the stream hub is closed")
        if self._monitor is None:
            self._monitor = threading.Thread(
                target=self._monitor_loop, name="streamhub", daemon=True
            )
            self._monitor.start()
        s = self._streams.get(camera_id)
        if s is None or not s.running:
            s = CameraStream(
                camera_id,
                lambda: create_source(self._source_for(camera_id)),
                self._rules_for,
                on_status=self._on_status,
                settings=self.settings,
                poll_rules=self._rules_revision is None,
            )
            self._streams[camera_id] = s
            self.started[camera_id] += 1
            s.start()
        return s

    @contextmanager
    def subscribe(self, camera_id: int, watermark: str | None = None):
        """Yield ``wait(after_seq, timeout)`` for one viewer of ``camera_id``."""
        with ExitStack() as stack:
            # attach the viewer under the hub lock, so the idle reaper cannot stop the stream
            # between "get the stream" and "count this viewer"
            with self._lock:
                stream = self._stream_locked(camera_id)
                wait = stack.enter_context(stream.viewer(watermark))
            wait.stream = stream  # type: ignore[attr-defined]
            yield wait

    def snapshot(self, camera_id: int, timeout: float = 5.0) -> ServedFrame | None:
        """Return the newest snapshot of ``camera_id`` (``CameraStream.wait_snapshot``)."""
        with self.subscribe(camera_id) as wait:
            return wait.stream.wait_snapshot(timeout)

    def notify_rules_changed(self, camera_id: int | None = None) -> None:
        """Make running streams (one or all) reload their rules now."""
        with self._lock:
            targets = list(self._streams.values())
        for s in targets:
            if camera_id is None or s.camera_id == camera_id:
                s.notify_rules_changed()

    def streams(self) -> dict[int, CameraStream]:
        """Return a copy of the running streams by camera id."""
        with self._lock:
            return dict(self._streams)

    def close(self) -> None:
        """Stop every stream and the monitor."""
        self._closed.set()
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for s in streams:
            s.stop()

    def _monitor_loop(self) -> None:
        while not self._closed.wait(min(self.settings.rules_poll_s, 1.0)):
            if self._rules_revision is not None:
                try:
                    rev = self._rules_revision()
                except Exception:  # noqa: BLE001 - a DB hiccup must not stop the monitor
                    log.exception("cannot read the rules revision")
                    rev = self._last_revision
                if rev != self._last_revision:
                    self._last_revision = rev
                    self.notify_rules_changed()
            now = time.monotonic()
            with self._lock:
                idle = [
                    cid
                    for cid, s in self._streams.items()
                    if s.viewers == 0 and now - s.last_viewer_left > self.settings.idle_stop_s
                ]
                stopped = [self._streams.pop(cid) for cid in idle]
            for s in stopped:
                log.info(
                    "camera %s: no viewers for %.0f s, stopping",
                    s.camera_id,
                    self.settings.idle_stop_s,
                )
                s.stop(timeout=0.1)
