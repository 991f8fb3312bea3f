"""One reader per camera shared by every viewer, with reconnects, status and fail-closed output.

A ``CameraStream`` runs two threads: a capture thread (open with backoff, read frames, keep
only the newest) and a process thread (redaction pipeline, JPEG encode, rules reload, status
watchdog). Raw frames exist only inside that object; what viewers get is always the output of
``RedactionPipeline``. ``StreamHub`` starts a stream for the first viewer and stops it when it
has been idle for ``idle_stop_s``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np
from pydantic import Field

from streams.pipeline import RedactionPipeline
from streams.redact import redact_frame
from streams.registry import StrictModel
from streams.rules import RedactionRules
from streams.sources import FrameDecodeError, FrameSource, SourceError, create_source

log = logging.getLogger(__name__)

#: ``on_status(camera_id, status, last_frame_time_utc)``; status is online/stale/offline.
StatusCallback = Callable[[int, str, dt.datetime | None], None]


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


class HubSettings(StrictModel):
    """Tuning of live streams (all times in seconds)."""

    jpeg_quality: int = Field(80, ge=30, le=100, description="JPEG quality of served frames")
    stale_after_s: float = Field(3.0, gt=0, description="no new frame for this long: stale")
    offline_after_s: float = Field(8.0, gt=0, description="no frame or no connection: offline")
    backoff_initial_s: float = Field(0.5, gt=0, description="first reconnect delay")
    backoff_max_s: float = Field(10.0, gt=0, description="longest reconnect delay")
    idle_stop_s: float = Field(
        30.0, ge=0, description="stop a stream this long after its last viewer"
    )
    rules_poll_s: float = Field(0.5, gt=0, description="how often rule changes are looked for")
    status_heartbeat_s: float = Field(30.0, gt=0, description="re-report an unchanged status")
    max_decode_errors: int = Field(50, ge=1, description="consecutive bad frames before reconnect")


@dataclass
class _Slot:
    seq: int = 0
    jpeg: bytes | None = None
    at: float = 0.0
    viewers: int = 0


@dataclass
class StreamStats:
    """Counters of one stream (a snapshot copy is returned by ``CameraStream.stats``)."""

    counters: Counter = field(default_factory=Counter)
    status: str = "unknown"
    last_frame_utc: dt.datetime | None = None


def _watermark(frame: np.ndarray, text: str) -> None:
    h, w = frame.shape[:2]
    scale = max(0.5, w / 1280)
    for dy in (0.08, 0.5, 0.92):
        org = (int(w * 0.03), int(h * dy))
        cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(
            frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 255), 1, cv2.LINE_AA
        )


class CameraStream:
    """Return redacted JPEG frames of one camera to any number of viewers."""

    def __init__(
        self,
        camera_id: int,
        source_factory: Callable[[], FrameSource],
        rules_for: Callable[[int], RedactionRules],
        *,
        on_status: StatusCallback | None = None,
        settings: HubSettings | None = None,
        poll_rules: bool = True,
    ) -> None:
        """``poll_rules=False``: reload rules only on ``notify_rules_changed`` (hub revision)."""
        self.camera_id = camera_id
        self._poll_rules = poll_rules
        self.settings = settings or HubSettings()
        self._source_factory = source_factory
        self._rules_for = rules_for
        self._on_status = on_status
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._rules_dirty = threading.Event()
        self._raw: np.ndarray | None = None  # newest captured frame: never leaves this object
        self._raw_seq = 0
        self._raw_at = 0.0
        self._taken_seq = 0  # newest raw frame the process thread has taken
        self._connected = False
        self._expected_interval = 0.1
        self._redacted = _Slot()
        self._lifted: dict[str, _Slot] = {}
        self.counters: Counter[str] = Counter()
        self._status = "unknown"
        self._status_reported_at = 0.0
        self._last_frame_utc: dt.datetime | None = None
        self.display_url = ""
        self.last_error = ""
        self.pipeline = RedactionPipeline(self._load_rules(), name=f"camera {camera_id}")
        self._threads: list[threading.Thread] = []
        self.last_viewer_left = time.monotonic()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the capture and process threads (idempotent)."""
        if self._threads:
            return
        for name, target in (("capture", self._capture_loop), ("process", self._process_loop)):
            t = threading.Thread(target=target, name=f"cam{self.camera_id}-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads; a blocked read ends at its own read timeout."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    @property
    def running(self) -> bool:
        """Return True while the threads run."""
        return bool(self._threads) and not self._stop.is_set()

    @property
    def status(self) -> str:
        """Return online / stale / offline / unknown."""
        return self._status

    @property
    def last_frame_utc(self) -> dt.datetime | None:
        """Return when the last frame arrived from the source (UTC)."""
        return self._last_frame_utc

    def stats(self) -> dict:
        """Return counters merged with the pipeline's (frames, failed_closed, dropped, ...)."""
        for _ in range(5):  # the process thread may add a key while we copy: retry
            try:
                merged = Counter(dict(self.counters))
                merged.update({f"pipeline_{k}": v for k, v in dict(self.pipeline.stats).items()})
                return dict(merged)
            except RuntimeError:
                time.sleep(0.001)
        return {}

    def notify_rules_changed(self) -> None:
        """Reload this camera's rules before the next frame."""
        self._rules_dirty.set()

    # -- viewers ----------------------------------------------------------------------------
    @contextmanager
    def viewer(
        self, watermark: str | None = None
    ) -> Iterator[Callable[[int, float], tuple[int, bytes] | None]]:
        """Yield ``wait(after_seq, timeout) -> (seq, jpeg) | None`` for one viewer.

        ``watermark`` is the unmask-grant path (issue 8): frames with detections and liftable
        masks lifted, permanent masks kept, and the text burned in. None = redacted (default).
        """
        with self._cond:
            slot = (
                self._redacted if watermark is None else self._lifted.setdefault(watermark, _Slot())
            )
            slot.viewers += 1

        def wait(after: int, timeout: float) -> tuple[int, bytes] | None:
            deadline = time.monotonic() + timeout
            with self._cond:
                while slot.seq <= after or slot.jpeg is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._stop.is_set():
                        return None
                    self._cond.wait(remaining)
                return slot.seq, slot.jpeg

        wait.stopped = self._stop.is_set  # type: ignore[attr-defined] - lets viewers end cleanly
        try:
            yield wait
        finally:
            with self._cond:
                slot.viewers -= 1
                if watermark is not None and slot.viewers <= 0:
                    self._lifted.pop(watermark, None)
                if self._redacted.viewers <= 0 and not self._lifted:
                    self.last_viewer_left = time.monotonic()

    def watermarks(self) -> list[str]:
        """Return the unmask watermarks that currently have viewers (lifted frames are made)."""
        with self._cond:
            return sorted(k for k, s in self._lifted.items() if s.viewers > 0)

    @property
    def viewers(self) -> int:
        """Return how many viewers are attached."""
        with self._cond:
            return self._redacted.viewers + sum(s.viewers for s in self._lifted.values())

    def latest_jpeg(self) -> tuple[int, bytes, float] | None:
        """Return (seq, redacted jpeg, monotonic time) of the newest frame, or None."""
        with self._cond:
            s = self._redacted
            return (s.seq, s.jpeg, s.at) if s.jpeg is not None else None

    # -- threads ----------------------------------------------------------------------------
    def _capture_loop(self) -> None:
        st = self.settings
        backoff = st.backoff_initial_s
        while not self._stop.is_set():
            try:
                source = self._source_factory()
                self.display_url = source.display_url
                source.open()
            except SourceError as exc:
                self._disconnected(str(exc))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, st.backoff_max_s)
                continue
            except Exception as exc:  # noqa: BLE001 - a bad config must not kill the thread
                self._disconnected(f"cannot build source: {type(exc).__name__}")
                self._stop.wait(st.backoff_max_s)
                continue
            self.counters["connects"] += 1
            self._connected = True
            self._expected_interval = max(0.0, float(getattr(source, "expected_interval", 0.1)))
            paced_by_consumer = bool(getattr(source, "paced_by_consumer", False))
            log.info("camera %s: connected to %s", self.camera_id, source.display_url)
            bad = 0
            try:
                while not self._stop.is_set():
                    try:
                        frame = source.read()
                    except FrameDecodeError as exc:
                        bad += 1
                        self.counters["decode_errors"] += 1
                        if bad <= 3:
                            log.warning("camera %s: %s", self.camera_id, exc)
                        if bad >= st.max_decode_errors:
                            raise SourceError(f"{bad} undecodable frames in a row") from exc
                        continue
                    bad = 0
                    with self._cond:
                        self._raw = frame
                        self._raw_seq += 1
                        self._raw_at = time.monotonic()
                        self._cond.notify_all()
                        if paced_by_consumer:
                            # a file read as fast as we redact: wait until this frame is taken
                            # instead of decoding frames that would only be skipped
                            while self._taken_seq < self._raw_seq and not self._stop.is_set():
                                self._cond.wait(0.25)
                    backoff = st.backoff_initial_s
            except SourceError as exc:
                self._disconnected(str(exc))
            except Exception as exc:  # noqa: BLE001 - reconnect on anything the decoder throws
                self._disconnected(f"{type(exc).__name__}: {exc}")
            finally:
                try:
                    source.close()
                except Exception:  # noqa: BLE001 - closing a broken source may fail too
                    log.debug("camera %s: close failed", self.camera_id)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, st.backoff_max_s)

    def _disconnected(self, reason: str) -> None:
        self._connected = False
        self.counters["disconnects"] += 1
        self.last_error = reason
        if self.counters["disconnects"] <= 3 or self.counters["disconnects"] % 50 == 0:
            log.warning("camera %s: source down: %s", self.camera_id, reason)

    def _load_rules(self) -> RedactionRules:
        try:
            return self._rules_for(self.camera_id)
        except Exception:  # noqa: BLE001 - keep the current (or default) rules, never none
            self.counters["rules_errors"] += 1
            log.exception("camera %s: cannot load rules; keeping the current ones", self.camera_id)
            current = getattr(self, "pipeline", None)
            return current.rules if current is not None else RedactionRules()

    def _process_loop(self) -> None:
        st = self.settings
        done_seq = 0
        next_rules_poll = time.monotonic() + st.rules_poll_s
        while not self._stop.is_set():
            with self._cond:
                if self._raw_seq <= done_seq:
                    self._cond.wait(min(0.25, st.rules_poll_s))
                frame, seq, at = self._raw, self._raw_seq, self._raw_at
                if seq > self._taken_seq:
                    self._taken_seq = seq
                    self._cond.notify_all()  # a consumer-paced source may read the next one
            now = time.monotonic()
            if self._rules_dirty.is_set() or (self._poll_rules and now >= next_rules_poll):
                self._rules_dirty.clear()
                next_rules_poll = now + st.rules_poll_s
                new_rules = self._load_rules()
                if new_rules != self.pipeline.rules:
                    log.info("camera %s: rules changed", self.camera_id)
                    self.pipeline.update_rules(new_rules)
                    self.counters["rules_reloads"] += 1
            if seq > done_seq and frame is not None:
                if done_seq and seq > done_seq + 1:
                    # overload: older frames are skipped (never served raw), counted, logged
                    self.counters["dropped"] += seq - done_seq - 1
                    if self.counters["dropped"] % 500 < seq - done_seq - 1:
                        log.warning(
                            "camera %s: overloaded, %d frames skipped so far",
                            self.camera_id,
                            self.counters["dropped"],
                        )
                done_seq = seq
                self._last_frame_utc = dt.datetime.now(dt.UTC)
                self._handle_frame(frame, at)
            self._update_status()

    def _handle_frame(self, frame: np.ndarray, captured_at: float) -> None:
        result = self.pipeline.process(frame)
        self.counters["processed"] += 1
        if result.frame is None:
            self.counters["withheld"] += 1
            return
        params = [cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality]
        ok, buf = cv2.imencode(".jpg", result.frame, params)
        if not ok:
            self.counters["encode_errors"] += 1
            return
        lifted: dict[str, bytes] = {}
        with self._cond:
            marks = [k for k, s in self._lifted.items() if s.viewers > 0]
        if marks and result.failed is None:
            base = redact_frame(frame, result.boxes, self.pipeline.rules, lift=True)
            for mark in marks:
                img = base.copy()
                _watermark(img, mark)
                ok2, b2 = cv2.imencode(".jpg", img, params)
                if ok2:
                    lifted[mark] = b2.tobytes()
        with self._cond:
            self._publish(self._redacted, buf.tobytes(), captured_at)
            for mark, data in lifted.items():
                if mark in self._lifted:
                    self._publish(self._lifted[mark], data, captured_at)
            self._cond.notify_all()
        self.counters["served"] += 1

    @staticmethod
    def _publish(slot: _Slot, data: bytes, at: float) -> None:
        slot.seq += 1
        slot.jpeg = data
        slot.at = at

    def _update_status(self) -> None:
        st = self.settings
        now = time.monotonic()
        stale_after = max(st.stale_after_s, 3 * self._expected_interval)
        offline_after = max(st.offline_after_s, stale_after + 1.0)
        age = now - self._raw_at if self._raw_seq else float("inf")
        if age < stale_after:
            status = "online"
        elif age < offline_after and self._connected:
            status = "stale"
        elif self._raw_seq == 0 and (self._connected or not self.counters["disconnects"]):
            status = self._status  # first connection still opening, or first frame not here
        else:
            status = "offline"
        changed = status != self._status
        if changed or (now - self._status_reported_at >= st.status_heartbeat_s):
            if changed:
                log.info("camera %s: %s -> %s", self.camera_id, self._status, status)
            self._status = status
            self._status_reported_at = now
            if self._on_status is not None:
                try:
                    self._on_status(self.camera_id, status, self._last_frame_utc)
                except Exception:  # noqa: BLE001 - status write-back must not stop video
                    self.counters["status_callback_errors"] += 1
                    log.exception("camera %s: status callback failed", self.camera_id)


class StreamHub:
    """Return shared ``CameraStream``s: one per camera, started on demand, stopped when idle."""

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

    def snapshot(self, camera_id: int, timeout: float = 5.0) -> bytes | None:
        """Return the newest redacted JPEG of ``camera_id``, waiting up to ``timeout`` for one."""
        with self.subscribe(camera_id) as wait:
            latest = wait.stream.latest_jpeg()
            if latest is not None:
                return latest[1]
            got = wait(0, timeout)
            return got[1] if got else None

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
