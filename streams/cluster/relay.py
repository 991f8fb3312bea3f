"""The web side's relay: the ``StreamHub`` interface over the cluster's workers.

One feed thread per camera (and watermark) per web process long-polls the camera's worker
and fans its JPEGs out to the local viewers; while the worker cannot be reached viewers get a
placeholder drawn here from nothing ("stream restarting"), never a frame.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np

from streams.cluster.connection import CALL_GRACE_S, ClusterError, RedactionCluster
from streams.frames import PLACEHOLDER, ServedFrame
from streams.sources import scrub_text

log = logging.getLogger(__name__)

#: Longest one ``wait_frame`` call blocks in the worker; the relay re-polls after it.
POLL_S = 1.0
#: A relay feed with no local viewer keeps polling this long (snapshot after snapshot).
FEED_LINGER_S = 2.0
PLACEHOLDER_TEXT = "stream restarting"
#: How often a failing feed re-sends its placeholder.
PLACEHOLDER_EVERY_S = 1.0


# -- the web side: relay with the StreamHub interface ----------------------------------------


@functools.lru_cache(maxsize=16)
def placeholder_jpeg(width: int = 1280, height: int = 720, text: str = PLACEHOLDER_TEXT) -> bytes:
    """Return a fully obscured JPEG (mid-grey with ``text``), drawn from nothing.

    What a viewer gets while the worker of a camera is restarting or cannot be reached: it
    holds no pixel of any camera frame.
    """
    width, height = max(64, int(width)), max(48, int(height))
    img = np.full((height, width, 3), 128, np.uint8)
    scale = max(0.6, width / 900)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    org = (max(0, (width - tw) // 2), (height + th) // 2)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 2, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 70])
    if not ok:  # pragma: no cover - encoding a plain grey image does not fail
        raise ClusterError("cannot encode the placeholder frame")
    return buf.tobytes()


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Return (width, height) from a JPEG's start-of-frame header, or None if not found."""
    i = 2
    n = len(data)
    while i + 9 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in _SOF_MARKERS:
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


@dataclass
class RemoteStream:
    """What the video routes show of a stream running in a worker (``hub.streams()`` value)."""

    camera_id: int
    status: str = "unknown"
    last_frame_utc: dt.datetime | None = None
    viewers: int = 0
    display_url: str = ""
    last_error: str = ""
    counters: dict = field(default_factory=dict)
    worker: int | None = None
    watermarks: list[str] = field(default_factory=list)

    def stats(self) -> dict:
        """Return the stream's counters (worker side plus this process's relay counters)."""
        return dict(self.counters)


def _ray_errors() -> tuple[type[BaseException], ...]:
    from ray.exceptions import RayError  # a RedactionCluster exists: Ray is installed

    return (RayError,)


class _RelayFeed:
    """One camera (and watermark) of one web process: polls the worker, fans out locally."""

    def __init__(self, relay: RayStreamRelay, camera_id: int, watermark: str | None) -> None:
        self.relay = relay
        self.camera_id = camera_id
        self.watermark = watermark
        self._cond = threading.Condition()
        self.seq = 0
        self.frame: ServedFrame | None = None
        self.real: bytes | None = None  # newest worker frame since the last failure
        self.size: tuple[int, int] | None = None
        self.viewers = 0
        self.last_detach = time.monotonic()
        self.ended = False
        self.last_error = ""
        self.counters: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name=f"relay-cam{camera_id}", daemon=True)

    # -- viewers ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def attach(self) -> None:
        with self._cond:
            self.viewers += 1

    def detach(self) -> None:
        with self._cond:
            self.viewers -= 1
            self.last_detach = time.monotonic()

    def wait(self, after: int, timeout: float) -> ServedFrame | None:
        """Return the newest frame after ``after`` (maybe a placeholder)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.frame is None or self.frame.seq <= after:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.relay.closed:
                    return None
                self._cond.wait(min(remaining, 0.5))
            return self.frame

    def wait_real(self, timeout: float) -> bytes | None:
        """Return the newest frame from the worker (never a placeholder), waiting for one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.real is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.relay.closed:
                    return None
                self._cond.wait(min(remaining, 0.5))
            return self.real

    def latest_jpeg(self) -> tuple[int, bytes, float] | None:
        """Return (seq, jpeg, monotonic time) of the newest worker frame, or None."""
        with self._cond:
            return (self.seq, self.real, time.monotonic()) if self.real is not None else None

    # -- the poll thread ----------------------------------------------------------------
    def _publish(self, jpeg: bytes, *, placeholder: bool, marker: str = PLACEHOLDER) -> None:
        with self._cond:
            self.seq += 1
            self.frame = ServedFrame(self.seq, jpeg, PLACEHOLDER if placeholder else marker, None,
                                     placeholder or marker == PLACEHOLDER)  # fmt: skip
            if placeholder:
                self.real = None
                self.counters["relay_placeholders"] += 1
            else:
                self.real = jpeg
                self.counters["relay_frames"] += 1
            self._cond.notify_all()

    def _should_end(self) -> bool:
        # an unmask watermark's feed ends with its last viewer: lifted frames are made only
        # while someone may see them (the grant ended or the viewer left)
        linger = 0.0 if self.watermark is not None else self.relay.linger_s
        with self._cond:
            idle = self.viewers <= 0 and time.monotonic() - self.last_detach >= linger
        return self.relay.closed or (idle and self.relay._end_feed(self))

    def _run(self) -> None:
        import ray  # a RedactionCluster exists: Ray is installed
        from ray.exceptions import ActorDiedError

        ray_errors = _ray_errors()
        died_error = (ActorDiedError,)
        cluster = self.relay.cluster
        token: str | None = None
        after = 0
        failures = 0
        next_placeholder = 0.0
        while not self._should_end():
            try:
                handle = cluster.worker(self.camera_id)
                ref = handle.wait_frame.remote(
                    self.camera_id, after, self.relay.poll_s, self.watermark, token
                )
                token, seq, jpeg, marker = ray.get(ref, timeout=self.relay.poll_s + CALL_GRACE_S)
            except (ClusterError, *ray_errors) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, died_error):
                    cluster.forget(self.camera_id)
            except Exception as exc:  # noqa: BLE001 - a relay bug must fail closed, not stall
                if not failures:
                    log.exception("camera %s: relay error", self.camera_id)
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if failures:
                    log.info("camera %s: worker reachable again", self.camera_id)
                    self.last_error = ""
                failures = 0
                after = seq
                if jpeg is not None:
                    if self.size is None:
                        self.size = jpeg_size(jpeg)
                    self._publish(jpeg, placeholder=False, marker=marker)
                continue
            if self.relay.closed:
                break  # the worker was stopped along with this process's relay
            failures += 1
            self.counters["relay_errors"] += 1
            self.last_error = scrub_text(reason.splitlines()[0][:300])
            if failures == 1:
                log.warning(
                    "camera %s: redaction worker unavailable: %s", self.camera_id, self.last_error
                )
                token, after = None, 0
            now = time.monotonic()
            if now >= next_placeholder:
                w, h = self.size or (1280, 720)
                self._publish(placeholder_jpeg(w, h), placeholder=True)
                next_placeholder = now + PLACEHOLDER_EVERY_S
            self.relay.wait_closed(min(0.1 * failures, 1.0))
        if self.watermark is not None and token is not None:
            try:
                cluster.worker(self.camera_id).release.remote(self.camera_id, self.watermark)
            except (ClusterError, *ray_errors) as exc:
                log.debug("camera %s: lease not released (%s); it expires", self.camera_id, exc)


class RayStreamRelay:
    """A ``StreamHub`` whose cameras run in the redaction cluster: their redacted frames, relayed.

    Used by ``dashboard/routes/video.py`` instead of a ``StreamHub`` when a Ray address is
    set. Frames are the worker's JPEG bytes, or a placeholder while it cannot be reached.
    """

    def __init__(
        self,
        cluster: RedactionCluster,
        *,
        poll_s: float = POLL_S,
        linger_s: float = FEED_LINGER_S,
    ) -> None:
        self.cluster = cluster
        self.poll_s = poll_s
        self.linger_s = linger_s
        self._feeds: dict[tuple[int, str | None], _RelayFeed] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        """Return True once ``close`` was called."""
        return self._closed.is_set()

    def wait_closed(self, timeout: float) -> bool:
        """Return True if the relay closed within ``timeout`` seconds."""
        return self._closed.wait(timeout)

    def _end_feed(self, feed: _RelayFeed) -> bool:
        """Return True if ``feed`` (idle) was removed; False if a viewer came back meanwhile."""
        with self._lock:
            if feed.viewers > 0:
                return False
            feed.ended = True
            if self._feeds.get((feed.camera_id, feed.watermark)) is feed:
                del self._feeds[(feed.camera_id, feed.watermark)]
            return True

    @contextmanager
    def subscribe(self, camera_id: int, watermark: str | None = None) -> Iterator[Callable]:
        """Yield ``wait(after_seq, timeout)`` for one viewer of ``camera_id`` (as ``StreamHub``)."""
        if self.closed:
            raise RuntimeError("the stream relay is closed")
        key = (int(camera_id), watermark)
        with self._lock:
            feed = self._feeds.get(key)
            if feed is None or feed.ended:
                feed = _RelayFeed(self, int(camera_id), watermark)
                self._feeds[key] = feed
                feed.start()
            feed.attach()

        def wait(after: int, timeout: float) -> tuple[int, bytes] | None:
            return feed.wait(after, timeout)

        wait.stopped = self._closed.is_set  # type: ignore[attr-defined]
        wait.stream = feed  # type: ignore[attr-defined]
        try:
            yield wait
        finally:
            feed.detach()

    def snapshot(self, camera_id: int, timeout: float = 5.0) -> ServedFrame | None:
        """Return the newest snapshot of ``camera_id`` from its worker (``StreamHub.snapshot``).

        None when the worker cannot be reached in time: the route answers 503, it never
        falls back to a frame that was not a snapshot.
        """
        import ray

        # the subscription keeps this camera's feed (and its last error) alive meanwhile
        with self.subscribe(camera_id):
            try:
                handle = self.cluster.worker(camera_id)
                got = ray.get(
                    handle.snapshot.remote(int(camera_id), timeout),
                    timeout=timeout + CALL_GRACE_S,
                )
            except (ClusterError, *_ray_errors()) as exc:
                log.warning("camera %s: no snapshot from the redaction worker: %s", camera_id, exc)
                return None
        return ServedFrame(1, got[0], got[1], None, got[1] == PLACEHOLDER) if got else None

    def notify_rules_changed(self, camera_id: int | None = None) -> None:
        """Make running streams (one or all) reload their rules now."""
        try:
            self.cluster.notify_rules_changed(camera_id)
        except (ClusterError, *_ray_errors()) as exc:
            log.warning("cannot notify the redaction workers of a rule change: %s", exc)

    def streams(self) -> dict[int, RemoteStream]:
        """Return the streams running in the pool, with this process's viewers and counters."""
        out: dict[int, RemoteStream] = {}
        try:
            infos = self.cluster.streams_info()
        except (ClusterError, *_ray_errors()) as exc:
            log.warning("cannot list the redaction workers' streams: %s", exc)
            infos = {}
        for camera_id, (index, info) in infos.items():
            out[camera_id] = RemoteStream(
                camera_id,
                status=info["status"],
                last_frame_utc=info["last_frame_utc"],
                display_url=info["display_url"],
                last_error=info["last_error"],
                counters=dict(info["counters"]),
                worker=index,
                watermarks=list(info["watermarks"]),
            )
        with self._lock:
            feeds = list(self._feeds.values())
        for feed in feeds:
            rs = out.get(feed.camera_id)
            if rs is None:
                rs = out[feed.camera_id] = RemoteStream(feed.camera_id)
            rs.viewers += feed.viewers
            if feed.last_error and not rs.last_error:
                rs.last_error = feed.last_error
            for k, v in feed.counters.items():
                rs.counters[k] = rs.counters.get(k, 0) + v
        return out

    def close(self) -> None:
        """Stop this process's feeds (the workers go on serving other web processes)."""
        self._closed.set()
        with self._lock:
            feeds = list(self._feeds.values())
            self._feeds.clear()
        for feed in feeds:
            feed.join(0.2)
