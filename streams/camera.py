"""One camera's stream: one reader, redaction, many viewers, a watchdog, fail-closed output.

A ``CameraStream`` runs three threads: a capture thread (open with backoff, read frames, keep
only the newest), a process thread (redaction pipeline, JPEG encode, rules reload) and a
watchdog that never touches a frame: it writes the status (online / stale / stalled /
offline) and, when no fresh redacted frame was published for a while, publishes a placeholder
("画面中断 HH:MM:SS") at least every second, so a stall never looks live even when the
process thread hangs inside a detector, and a viewer of a dead camera still gets bytes (a
closed client is noticed). Raw frames exist only inside that object; what viewers get is
always the output of ``RedactionPipeline`` (or a placeholder drawn from nothing), each with
its truthful ``X-Redacted`` marker (``streams.frames``). Snapshots are taken only from frames
whose detection ran on that very frame (or that failed closed). ``streams.hub.StreamHub``
shares one stream per camera between viewers.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cv2
import numpy as np
from pydantic import Field, field_validator

from streams.frames import (
    PLACEHOLDER,
    ServedFrame,
    cjk_font_path,
    placeholder_jpeg,
    placeholder_text,
    redaction_marker,
)
from streams.pipeline import FrameResult, RedactionPipeline
from streams.redact import redact_frame
from streams.registry import StrictModel
from streams.rules import RedactionRules
from streams.sources import FrameDecodeError, FrameSource, SourceError

log = logging.getLogger(__name__)

#: ``on_status(camera_id, status, last_frame_time_utc)``; status is one of ``STATUSES``.
StatusCallback = Callable[[int, str, dt.datetime | None], None]
#: online: fresh redacted frames; stale: the source is slow; stalled: the source delivers but
#: no redacted frame came out for ``stall_after_s`` (hung detector); offline: no source.
STATUSES = ("online", "stale", "stalled", "offline", "unknown")
#: How often the watchdog looks at a stream.
WATCHDOG_TICK_S = 0.2


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
    stall_after_s: float = Field(
        5.0,
        gt=0,
        description="no fresh redacted frame this long: stalled (if the source still delivers) "
        "and viewers get the placeholder instead of the last frame",
    )
    placeholder_every_s: float = Field(
        1.0, gt=0, le=1.0, description="while nothing is fresh, a placeholder at least this often"
    )
    timezone: str = Field(
        "Asia/Shanghai", description="time zone of the time shown on the stall placeholder"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {v!r}; use an IANA name such as Asia/Shanghai"
            ) from exc
        return v


@dataclass
class _Slot:
    """The newest frame of one kind (redacted, snapshot, lifted for one watermark)."""

    frame: ServedFrame | None = None
    viewers: int = 0

    @property
    def seq(self) -> int:
        return self.frame.seq if self.frame is not None else 0

    def publish(self, jpeg: bytes, marker: str, utc: dt.datetime | None, placeholder: bool) -> None:
        self.frame = ServedFrame(self.seq + 1, jpeg, marker, utc, placeholder)


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
    """One camera's redacted stream, shared by any number of viewers as JPEG frames."""

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
        #: Frames the source delivered or lost to decode errors, numbering ``_raw``: a gap
        #: between two processed frames is what the pipeline never saw.
        self._raw_source_seq = 0
        self._raw_conn = 0  # the connection ``_raw`` came from (``counters["connects"]``)
        self._processed_conn = 0
        self._raw_at = 0.0
        self._raw_utc: dt.datetime | None = None
        self._first_raw_at = 0.0
        self._taken_seq = 0  # newest raw frame the process thread has taken
        self._connected = False
        self._expected_interval = 0.1
        self._redacted = _Slot()
        self._snapshot = _Slot()  # only frames whose detection covered them (or failed closed)
        self._lifted: dict[str, _Slot] = {}
        self._started_at = time.monotonic()
        self._out_at = 0.0  # monotonic time the newest redacted frame was published
        self._out_utc: dt.datetime | None = None  # capture time of that frame
        self._placeholder_at = 0.0
        self._size: tuple[int, int] | None = None  # (width, height) of the newest frame
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
        """Start the capture, process and watchdog threads (idempotent)."""
        if self._threads:
            return
        self._started_at = time.monotonic()
        loops = (
            ("capture", self._capture_loop),
            ("process", self._process_loop),
            ("watchdog", self._watchdog_loop),
        )
        for name, target in loops:
            t = threading.Thread(target=target, name=f"cam{self.camera_id}-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads; a blocked read ends at its own read timeout (a hung detector
        call is left to finish in its daemon thread: nothing it returns is published)."""
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
        """Return online / stale / stalled / offline / unknown (``STATUSES``)."""
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
    ) -> Iterator[Callable[[int, float], ServedFrame | None]]:
        """Yield ``wait(after_seq, timeout) -> ServedFrame | None`` for one viewer.

        ``watermark`` is the unmask-grant path: frames with detections and liftable masks
        lifted, permanent masks kept, and the text burned in. None = redacted (default).
        """
        with self._cond:
            slot = (
                self._redacted if watermark is None else self._lifted.setdefault(watermark, _Slot())
            )
            slot.viewers += 1

        def wait(after: int, timeout: float) -> ServedFrame | None:
            deadline = time.monotonic() + timeout
            with self._cond:
                while slot.frame is None or slot.frame.seq <= after:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._stop.is_set():
                        return None
                    self._cond.wait(remaining)
                return slot.frame

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

    def wait_snapshot(self, timeout: float) -> ServedFrame | None:
        """Return the newest snapshot frame, waiting up to ``timeout`` for the first one.

        A snapshot is a frame whose detection ran on that frame itself (or that failed closed,
        fully obscured), or the placeholder: never a frame redacted from tracked boxes alone.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._snapshot.frame is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(remaining)
            return self._snapshot.frame

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
            lost = 0
            try:
                while not self._stop.is_set():
                    try:
                        frame = source.read()
                    except FrameDecodeError as exc:
                        bad += 1
                        lost += 1
                        self.counters["decode_errors"] += 1
                        if bad <= 3:
                            log.warning("camera %s: %s", self.camera_id, exc)
                        if bad >= st.max_decode_errors:
                            raise SourceError(f"{bad} undecodable frames in a row") from exc
                        continue
                    bad = 0
                    self._note_size(frame)
                    with self._cond:
                        self._raw = frame
                        self._raw_seq += 1
                        self._raw_source_seq += 1 + lost
                        self._raw_conn = self.counters["connects"]
                        lost = 0
                        self._raw_at = time.monotonic()
                        self._raw_utc = dt.datetime.now(dt.UTC)
                        if not self._first_raw_at:
                            self._first_raw_at = self._raw_at
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

    def _note_size(self, frame: np.ndarray) -> None:
        """Count a change of picture size (the pipeline re-detects; the aspect is the new one)."""
        shape = frame.shape[:2]
        if self._raw is not None and self._raw.shape[:2] != shape:
            self.counters["resolution_changes"] += 1
            log.info("camera %s: resolution %sx%s -> %sx%s", self.camera_id,
                     self._raw.shape[1], self._raw.shape[0], shape[1], shape[0])  # fmt: skip

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
                frame, seq, utc = self._raw, self._raw_seq, self._raw_utc
                source_seq, conn = self._raw_source_seq, self._raw_conn
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
                self._last_frame_utc = utc
                self._handle_frame(frame, utc, source_seq, conn)

    def _handle_frame(
        self,
        frame: np.ndarray,
        captured_utc: dt.datetime | None,
        source_seq: int | None = None,
        conn: int = 0,
    ) -> None:
        if conn != self._processed_conn:
            # a new connection is a new run of the stream: its first frame is detected whole
            if self._processed_conn:
                self.pipeline.restart()
            self._processed_conn = conn
        result = self.pipeline.process(frame, seq=source_seq)
        self.counters["processed"] += 1
        if result.frame is None:
            self.counters["withheld"] += 1
            return
        params = [cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality]
        ok, buf = cv2.imencode(".jpg", result.frame, params)
        if not ok:
            self.counters["encode_errors"] += 1
            return
        rules = self.pipeline.rules
        failed = result.failed is not None
        marker = redaction_marker(result.applied, failed=failed, masks=bool(rules.masks))
        lifted = self._lifted_frames(frame, result, params)
        jpeg = buf.tobytes()
        with self._cond:
            if self._stop.is_set():
                return  # stopped while this frame was processed: publish nothing more
            self._redacted.publish(jpeg, marker, captured_utc, False)
            # a snapshot is a frame that detection itself saw (or with nothing to detect), never
            # one redacted from boxes tracked since an earlier frame
            if failed or result.detected or not result.applied:
                self._snapshot.publish(jpeg, marker, captured_utc, False)
            for mark, (data, lifted_marker) in lifted.items():
                if mark in self._lifted:
                    self._lifted[mark].publish(data, lifted_marker, captured_utc, False)
            self._out_at = time.monotonic()
            self._out_utc = captured_utc
            self._size = (frame.shape[1], frame.shape[0])
            self._cond.notify_all()
        self.counters["served"] += 1

    def _lifted_frames(
        self, frame: np.ndarray, result: FrameResult, params: list[int]
    ) -> dict[str, tuple[bytes, str]]:
        """Return {watermark: (jpeg, marker)} of the unmasked variants viewers hold grants for."""
        with self._cond:
            marks = [k for k, s in self._lifted.items() if s.viewers > 0]
        if not marks or result.failed is not None:
            return {}
        rules = self.pipeline.rules
        permanent = any(m.permanent for m in rules.masks)
        base = redact_frame(frame, result.boxes, rules, lift=True)
        out = {}
        for mark in marks:
            img = base.copy()
            _watermark(img, mark)
            ok, buf = cv2.imencode(".jpg", img, params)
            if ok:
                out[mark] = (
                    buf.tobytes(),
                    redaction_marker(frozenset(), masks=permanent, grant=mark),
                )
        return out

    # -- watchdog ---------------------------------------------------------------------------
    def _watchdog_loop(self) -> None:
        while not self._stop.wait(WATCHDOG_TICK_S):
            try:
                self._placeholder_if_idle()
                self._update_status()
            except Exception:  # noqa: BLE001 - the watchdog must outlive any single error
                self.counters["watchdog_errors"] += 1
                log.exception("camera %s: watchdog error", self.camera_id)

    def _stale_after(self) -> float:
        return max(self.settings.stale_after_s, 3 * self._expected_interval)

    def _placeholder_if_idle(self) -> None:
        """Publish the placeholder to every viewer slot when nothing fresh came for a while."""
        st = self.settings
        now = time.monotonic()
        if self._out_at:
            idle = now - self._out_at >= max(st.stall_after_s, self._stale_after())
        else:
            idle = now - self._started_at >= st.placeholder_every_s
        if not idle or now - self._placeholder_at < st.placeholder_every_s:
            return
        width, height = self._size or (1280, 720)
        text = placeholder_text(self._out_utc, st.timezone, cjk=cjk_font_path() is not None)
        jpeg = placeholder_jpeg(width, height, text)
        with self._cond:
            for slot in (self._redacted, self._snapshot, *self._lifted.values()):
                slot.publish(jpeg, PLACEHOLDER, self._out_utc, True)
            self._cond.notify_all()
        self._placeholder_at = now
        self.counters["placeholders"] += 1

    def _current_status(self, now: float) -> str:
        stale_after = self._stale_after()
        offline_after = max(self.settings.offline_after_s, stale_after + 1.0)
        raw_age = now - self._raw_at if self._raw_seq else float("inf")
        if raw_age < stale_after:  # the source delivers: is redacted video coming out?
            since = self._out_at or self._first_raw_at
            if now - since < max(self.settings.stall_after_s, stale_after):
                return "online" if self._out_at else self._status
            return "stalled"
        if raw_age < offline_after and self._connected:
            return "stale"
        if self._raw_seq == 0 and (self._connected or not self.counters["disconnects"]):
            return self._status  # first connection still opening, or first frame not here
        return "offline"

    def _update_status(self) -> None:
        now = time.monotonic()
        status = self._current_status(now)
        changed = status != self._status
        if changed or (now - self._status_reported_at >= self.settings.status_heartbeat_s):
            if changed:
                log.info("camera %s: %s -> %s", self.camera_id, self._status, status)
                self.counters[f"became_{status}"] += 1
            self._status = status
            self._status_reported_at = now
            if self._on_status is not None:
                try:
                    self._on_status(self.camera_id, status, self._last_frame_utc)
                except Exception:  # noqa: BLE001 - status write-back must not stop video
                    self.counters["status_callback_errors"] += 1
                    log.exception("camera %s: status callback failed", self.camera_id)
