"""The redaction worker: a Ray actor hosting the in-process ``StreamHub`` for its cameras."""

from __future__ import annotations

import functools
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from streams import configure_threads
from streams.cluster.cpu_binding import CpuClaim, claim_cpus, hold_to_cpus
from streams.hub import HubBindings, HubSettings, StreamHub
from streams.sources import redact_url, scrub_text

log = logging.getLogger(__name__)

#: A (camera, watermark) not polled by any web process for this long is no longer watched.
LEASE_S = 3.0
#: Concurrent calls one worker serves (long-polls of all web processes, all its cameras).
MAX_CONCURRENCY = 256
#: OpenCV/OpenMP threads per worker process: processes, not threads, are the unit of capacity.
WORKER_THREADS = 1


def _rss_bytes() -> int:
    """Return this process's resident memory in bytes (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# -- the worker (a Ray actor) ----------------------------------------------------------------


@dataclass
class _Lease:
    stack: ExitStack
    wait: Callable[[int, float], tuple[int, bytes] | None]
    token: str
    last_poll: float
    inflight: int = 0


class RedactionWorker:
    """A redaction worker process (a Ray actor) serving redacted JPEGs of its assigned cameras.

    Parameters
    ----------
    bindings_factory : callable
        Builds the ``HubBindings`` inside the worker (e.g.
        ``functools.partial(layers.services.video.hub_bindings_for_url, db_url, video)``), so
        sources, rules and status write-back are the same code as in-process.
    deployment_key, index, workers : str, int, int
        Identity checked by every web process that reaches this worker by name.
    hub_settings : dict, optional
        ``HubSettings`` fields (``idle_stop_s`` is the grace after the last lease).
    lease_s : float
        A (camera, watermark) not polled for this long is no longer watched.
    bind_cpus : int
        Cores to hold this process to (``claim_cpus``; the CPUs Ray reserved for it); 0 lets
        its threads float over every core of the machine.
    """

    def __init__(
        self,
        bindings_factory: Callable[[], HubBindings],
        *,
        deployment_key: str,
        index: int,
        workers: int,
        hub_settings: dict | None = None,
        lease_s: float = LEASE_S,
        bind_cpus: int = 0,
    ) -> None:
        configure_threads(WORKER_THREADS)
        self.incarnation = uuid.uuid4().hex[:12]
        self._cpus = CpuClaim(frozenset())
        if bind_cpus > 0:
            try:
                self._cpus = claim_cpus(bind_cpus)
            except OSError as exc:  # lock directory not writable: run, but say so
                log.warning("redaction worker %d: cannot claim cores (%s); unbound", index, exc)
            if self._cpus.cpus:
                hold_to_cpus(self._cpus.cpus)
            elif bind_cpus > 0:
                log.warning(
                    "redaction worker %d: every core of this machine is held by another "
                    "worker (more GRIDSIGHT_RAY_WORKERS than cores here); running unbound",
                    index,
                )
        self._identity = {
            "deployment_key": deployment_key,
            "index": index,
            "workers": workers,
            "incarnation": self.incarnation,
            "pid": os.getpid(),
            "cpus": sorted(self._cpus.cpus),
        }
        settings = HubSettings(**hub_settings) if hub_settings else HubSettings()
        self.hub = StreamHub.from_bindings(bindings_factory(), settings)
        self._lease_s = lease_s
        self._leases: dict[tuple[int, str | None], _Lease] = {}
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self._closed = threading.Event()
        self._janitor = threading.Thread(target=self._expire_leases, name="leases", daemon=True)
        self._janitor.start()
        log.info("redaction worker %d/%d up (pid %d)", index, workers, os.getpid())

    def identity(self) -> dict:
        """Return what this worker serves: deployment key, index, pool size, incarnation, pid."""
        return dict(self._identity)

    def wait_frame(
        self,
        camera_id: int,
        after_seq: int,
        timeout: float,
        watermark: str | None = None,
        token: str | None = None,
    ) -> tuple[str, int, bytes | None, str]:
        """Return ``(token, seq, jpeg, marker)``: the newest frame after ``after_seq``, or jpeg
        None; ``marker`` is its ``X-Redacted`` value (``streams.frames``).

        ``token`` names the stream run the caller's ``after_seq`` belongs to; when it is not
        the current one (worker restarted, stream restarted) the newest frame is returned at
        once. The call counts as a viewer of (camera, watermark) for ``lease_s``.
        """
        lease = self._acquire(int(camera_id), watermark)
        try:
            if token != lease.token:
                after_seq = 0
            got = lease.wait(int(after_seq), max(0.0, min(float(timeout), 5.0)))
        finally:
            with self._lock:
                lease.inflight -= 1
                lease.last_poll = time.monotonic()
        if got is None:
            return lease.token, int(after_seq), None, ""
        return lease.token, got.seq, got.jpeg, got.marker

    def snapshot(self, camera_id: int, timeout: float) -> tuple[bytes, str] | None:
        """Return ``(jpeg, marker)`` of the camera's newest snapshot (``StreamHub.snapshot``)."""
        got = self.hub.snapshot(int(camera_id), max(0.0, min(float(timeout), 15.0)))
        return (got.jpeg, got.marker) if got is not None else None

    def release(self, camera_id: int, watermark: str | None = None) -> bool:
        """Return True if the lease of (camera, watermark) was held and is now dropped.

        A web process calls this when its last viewer of an unmask watermark left, so lifted
        frames stop at once rather than after ``lease_s``; another web process still watching
        re-acquires the lease with its next poll.
        """
        with self._lock:
            lease = self._leases.pop((int(camera_id), watermark), None)
        if lease is None:
            return False
        lease.stack.close()
        return True

    def notify_rules_changed(self, camera_id: int | None = None) -> None:
        """Make this worker's running streams (one or all) reload their rules now."""
        self.hub.notify_rules_changed(camera_id)

    def streams_info(self) -> dict[int, dict]:
        """Return status, viewers, counters and watched watermarks of the running streams."""
        out = {}
        for camera_id, s in self.hub.streams().items():
            out[camera_id] = {
                "status": s.status,
                "last_frame_utc": s.last_frame_utc,
                "viewers": s.viewers,
                "display_url": redact_url(s.display_url),
                "last_error": scrub_text(s.last_error),
                "counters": s.stats(),
                "watermarks": s.watermarks(),
                "started": self.hub.started[camera_id],
            }
        return out

    def process_stats(self) -> dict:
        """Return pid, RSS bytes, CPU seconds and frame counters of this worker process."""
        served = processed = 0
        for s in self.hub.streams().values():
            served += s.counters["served"]
            processed += s.counters["processed"]
        return {
            **self._identity,
            "rss_bytes": _rss_bytes(),
            "cpu_s": time.process_time(),
            "served": served,
            "processed": processed,
            "streams": len(self.hub.streams()),
        }

    def close(self) -> None:
        """Stop every stream of this worker (the actor itself stays)."""
        self._closed.set()
        with self._lock:
            leases = list(self._leases.values())
            self._leases.clear()
        for lease in leases:
            lease.stack.close()
        self.hub.close()

    def _acquire(self, camera_id: int, watermark: str | None) -> _Lease:
        key = (camera_id, watermark)
        now = time.monotonic()
        with self._lock:
            lease = self._leases.get(key)
            if lease is not None and not lease.wait.stream.running:  # type: ignore[attr-defined]
                self._leases.pop(key)
                lease.stack.close()
                lease = None
            if lease is None:
                if self._cpus.cpus:  # the stream's threads inherit this thread's affinity
                    hold_to_cpus(self._cpus.cpus)
                stack = ExitStack()
                wait = stack.enter_context(self.hub.subscribe(camera_id, watermark))
                token = f"{self.incarnation}:{next(self._serial)}"
                lease = _Lease(stack, wait, token, now)
                self._leases[key] = lease
            lease.inflight += 1
            lease.last_poll = now
            return lease

    def _expire_leases(self) -> None:
        while not self._closed.wait(min(0.5, self._lease_s / 2)):
            now = time.monotonic()
            with self._lock:
                expired = [
                    key
                    for key, lease in self._leases.items()
                    if lease.inflight <= 0 and now - lease.last_poll > self._lease_s
                ]
                gone = [self._leases.pop(key) for key in expired]
            for lease in gone:
                lease.stack.close()  # the viewer leaves; the hub's idle grace starts


@functools.cache
def actor_class():
    """Return ``RedactionWorker`` as a Ray actor class (made once per process)."""
    import ray

    return ray.remote(RedactionWorker)
