"""Cluster mode: each camera's reader + redaction pipeline runs once, in a Ray worker process.

Three parts (Ray is imported lazily, here only, so the embedded in-process mode never needs it):

- ``RedactionWorker``: a Ray actor hosting a ``StreamHub``, i.e. the very ``CameraStream``
  code of the in-process mode (capture -> detect -> track -> redact -> encode, fail-closed).
  A fixed pool of ``workers`` such actors, named ``gridsight-redactor-<k>`` in the namespace,
  is the unit of capacity: one worker process each (``num_cpus=1``, one OpenCV/OpenMP thread),
  held to as many of its machine's cores as Ray reserved for it (``claim_cpus``), so W
  workers use W cores and adding one adds one core's worth of frames.
  Camera ``c`` runs in worker ``c % workers``: every web process of every machine computes the
  same index and reaches the same actor by name, with no coordinator. Raw frames exist only
  inside that process; ``wait_frame`` returns redacted JPEG bytes (or, for a watermark of an
  audited unmask grant, the lifted + watermarked JPEG ``CameraStream`` makes for it).
- ``RedactionCluster``: the web side's handles on that pool (connect, create with
  ``get_if_exists``, check that a worker found by name belongs to this deployment).
- ``RayStreamRelay``: the ``StreamHub`` interface the video routes use (``subscribe``,
  ``snapshot``, ``streams``, ``notify_rules_changed``, ``close``). One feed thread per camera
  (and watermark) per web process long-polls the worker and fans its JPEGs out to the local
  viewers. While the worker cannot be reached (killed, restarting, Ray down) viewers get a
  placeholder JPEG drawn here from nothing (grey, "stream restarting"), never a frame.

Viewers are counted in the worker as leases: a (camera, watermark) polled within ``lease_s``
is watched. A lease expires ``lease_s`` after its last poll from any web process; the worker's
hub then stops the stream ``idle_stop_s`` (``GRIDSIGHT_RAY_IDLE_S``) later, as in-process.
Lifted (unmasked) frames are made only while a lease for that watermark is held.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import functools
import hashlib
import itertools
import logging
import math
import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streams import configure_threads
from streams.frames import PLACEHOLDER, ServedFrame
from streams.hub import HubBindings, HubSettings, StreamHub
from streams.sources import redact_url, scrub_text

log = logging.getLogger(__name__)

NAMESPACE = "gridsight"
WORKER_NAME = "gridsight-redactor-{index}"
#: Longest one ``wait_frame`` call blocks in the worker; the relay re-polls after it.
POLL_S = 1.0
#: Extra time a call may take (worker start-up, transfer) before the relay fails it closed.
CALL_GRACE_S = 5.0
#: How long a feed waits for the Ray connection before showing the placeholder (and retrying).
CONNECT_WAIT_S = 2.0
#: A (camera, watermark) not polled by any web process for this long is no longer watched.
LEASE_S = 3.0
#: A relay feed with no local viewer keeps polling this long (snapshot after snapshot).
FEED_LINGER_S = 2.0
#: Concurrent calls one worker serves (long-polls of all web processes, all its cameras).
MAX_CONCURRENCY = 256
#: OpenCV/OpenMP threads per worker process: processes, not threads, are the unit of capacity.
WORKER_THREADS = 1
PLACEHOLDER_TEXT = "stream restarting"
#: Node-local lock files by which the worker processes of one machine share out its cores.
CPU_LOCK_DIR = Path(tempfile.gettempdir()) / "gridsight-ray-cpus"
#: How often a failing feed re-sends its placeholder.
PLACEHOLDER_EVERY_S = 1.0


class ClusterError(RuntimeError):
    """The redaction cluster cannot be reached or used; video fails closed."""


class ClusterConfigError(ClusterError):
    """A worker found by name belongs to another deployment or another pool size."""


# -- connecting ------------------------------------------------------------------------------


def connect(address: str, *, num_cpus: int | None = None) -> None:
    """Connect this process to the Ray cluster at ``address`` (no-op when already connected).

    Parameters
    ----------
    address : str
        ``local`` starts a Ray instance inside this process (one web process, tests, the
        benchmark), listening on 127.0.0.1 only; ``auto`` joins the cluster started on this
        machine by ``ray start --head``; ``host:port`` or ``ray://host:10001`` a remote head.
    num_cpus : int, optional
        CPUs of a ``local`` instance (default: all).

    Raises
    ------
    ClusterError
        If Ray is not installed or the cluster cannot be reached.
    """
    # Before Ray is imported: no usage reporting (offline), and a local instance stays on
    # the loopback interface (Ray otherwise binds the node's first routable address).
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if _is_loopback(address):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(
            "cluster mode needs Ray: pip install -r requirements-cluster.txt"
        ) from exc
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "namespace": NAMESPACE,
        "ignore_reinit_error": True,
        "include_dashboard": False,
        "log_to_driver": False,
    }
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {exc}") from exc


def _is_loopback(address: str) -> bool:
    """Return True for ``local`` and addresses on the loopback interface (one-machine setups)."""
    if address == "local":
        return True
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def worker_index(camera_id: int, workers: int) -> int:
    """Return the index of the redaction worker that runs ``camera_id`` (same in every process)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return int(camera_id) % workers


def deployment_key(*parts: str | None) -> str:
    """Return a short fingerprint of what a worker serves (database URL, sample video).

    Two deployments sharing a Ray cluster and namespace would otherwise reach each other's
    workers by name, and show one city's cameras under the other's rules.
    """
    joined = "\x1f".join(p or "" for p in parts)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _worker_env() -> dict[str, str]:
    """Return the environment of a worker process: our code importable, one thread, offline."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {
        "PYTHONPATH": path,
        "OMP_NUM_THREADS": str(WORKER_THREADS),
        "OMP_WAIT_POLICY": "PASSIVE",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


@dataclass
class CpuClaim:
    """The cores one worker process holds; each lock is released when the process ends."""

    cpus: frozenset[int]
    _fds: list[int] = field(default_factory=list, repr=False)

    def release(self) -> None:
        """Give the cores back (the process ending does the same)."""
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        self.cpus = frozenset()


def claim_cpus(count: int, lock_dir: Path = CPU_LOCK_DIR) -> CpuClaim:
    """Return up to ``count`` of this process's allowed cores that no other worker holds.

    Ray reserves CPUs for an actor (``num_cpus``) but does not confine it to them: a worker
    whose threads spend their time in C code that releases the GIL (decode, cascade, JPEG)
    would spread over every core of its machine and crowd out the workers Ray placed beside
    it. Each core has a lock file in ``lock_dir`` (node-local); a worker takes the first free
    ones with a non-blocking ``flock``, which the kernel drops when the process dies, so a
    restarted worker takes its cores anew. The claim is empty when every core is taken (more
    workers than cores on this machine): the caller then lets the worker float.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    taken: list[int] = []
    fds: list[int] = []
    for cpu in sorted(os.sched_getaffinity(0)):
        if len(taken) >= count:
            break
        fd = os.open(lock_dir / f"cpu-{cpu}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                continue  # another worker holds this core
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        taken.append(cpu)
        fds.append(fd)
    return CpuClaim(frozenset(taken), fds)


def hold_to_cpus(cpus: frozenset[int] | set[int]) -> int:
    """Confine every thread of this process to ``cpus``; return how many threads were moved.

    Linux affinity belongs to a thread and is inherited by the threads it starts, so this is
    applied to all threads at start and again before a new stream starts its threads (Ray's
    executor threads that serve calls may be younger than the first pass).
    """
    moved = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
            moved += 1
        except OSError:
            continue  # the thread ended meanwhile
    return moved


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
def _actor_class():
    import ray

    return ray.remote(RedactionWorker)


# -- the web side: handles on the pool -------------------------------------------------------


class RedactionCluster:
    """The fixed pool of named redaction workers of one deployment, with handles on each.

    Parameters
    ----------
    address : str
        Ray address (see ``connect``); connecting happens in a background thread, so a
        cluster that is down never blocks a request.
    bindings_factory : callable
        Picklable; builds the worker's ``HubBindings`` inside the worker.
    deployment_key : str
        ``deployment_key(db_url, sample_video)``; a worker with another key is refused.
    workers : int
        Pool size W; camera ``c`` runs in worker ``c % W``. Every web process must use the
        same W (a worker created for another W is refused, so no camera runs twice).
    namespace : str
        Ray namespace of the workers.
    hub_settings : HubSettings, optional
        Stream tuning inside the workers; ``idle_stop_s`` is the grace after the last viewer.
    lease_s : float
        See ``RedactionWorker``.
    num_cpus : float
        Ray CPUs reserved per worker (1 = one worker per core).
    bind_cpus : bool
        Hold each worker to ``ceil(num_cpus)`` cores of its machine (``claim_cpus``), so a
        worker uses what Ray reserved for it and no more; False lets workers float.
    """

    def __init__(
        self,
        address: str,
        bindings_factory: Callable[[], HubBindings],
        *,
        deployment_key: str,
        workers: int = 2,
        namespace: str = NAMESPACE,
        hub_settings: HubSettings | None = None,
        lease_s: float = LEASE_S,
        num_cpus: float = 1.0,
        bind_cpus: bool = True,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.address = address
        self.workers = workers
        self.namespace = namespace
        self.deployment_key = deployment_key
        self._bindings_factory = bindings_factory
        self._hub_settings = (hub_settings or HubSettings()).model_dump()
        self._lease_s = lease_s
        self._num_cpus = num_cpus
        self._bind_cpus = max(1, math.ceil(num_cpus)) if bind_cpus else 0
        self._handles: dict[int, Any] = {}
        self._verified: set[int] = set()
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._connecting: threading.Thread | None = None
        self._connect_error = ""

    # -- connection ---------------------------------------------------------------------
    def wait_connected(self, timeout: float) -> None:
        """Return once connected to Ray; start connecting first if needed.

        Raises
        ------
        ClusterError
            If not connected within ``timeout`` (connecting goes on in the background).
        """
        if self._connected.is_set():
            return
        with self._lock:
            if self._connecting is None or not self._connecting.is_alive():
                self._connecting = threading.Thread(
                    target=self._connect, name="ray-connect", daemon=True
                )
                self._connecting.start()
        if not self._connected.wait(timeout):
            raise ClusterError(
                self._connect_error or f"still connecting to the Ray cluster at {self.address}"
            )

    def _connect(self) -> None:
        try:
            connect(self.address)
        except ClusterError as exc:
            self._connect_error = str(exc)
            log.error("video cluster: %s", exc)
            return
        self._connect_error = ""
        self._connected.set()
        log.info("video cluster: connected to Ray (%s), %d workers", self.address, self.workers)

    # -- workers ------------------------------------------------------------------------
    def worker_name(self, index: int) -> str:
        """Return the Ray actor name of worker ``index``."""
        return WORKER_NAME.format(index=index)

    def worker(self, camera_id: int, timeout: float = CALL_GRACE_S) -> Any:
        """Return the actor handle of the worker that runs ``camera_id``, creating it if needed.

        Raises
        ------
        ClusterError
            Not connected; ``ClusterConfigError`` if the worker of that name belongs to
            another deployment or pool size. ``ray.exceptions.RayError`` if it does not answer.
        """
        self.wait_connected(min(timeout, CONNECT_WAIT_S))
        import ray

        index = worker_index(camera_id, self.workers)
        with self._lock:
            handle = self._handles.get(index)
            if handle is None:
                handle = self._create(index)
                self._handles[index] = handle
        if index not in self._verified:
            from ray.exceptions import GetTimeoutError

            try:
                ident = ray.get(handle.identity.remote(), timeout=timeout)
            except GetTimeoutError as exc:
                raise ClusterError(
                    f"redaction worker {self.worker_name(index)!r} not up within {timeout:.0f} s "
                    "(still starting, or the Ray cluster has fewer free CPUs than "
                    "GRIDSIGHT_RAY_WORKERS)"
                ) from exc
            if ident["deployment_key"] != self.deployment_key or ident["workers"] != self.workers:
                raise ClusterConfigError(
                    f"Ray actor {self.worker_name(index)!r} in namespace {self.namespace!r} "
                    f"serves another deployment or pool size (workers={ident['workers']}, "
                    f"ours {self.workers}); give each deployment its own GRIDSIGHT_RAY_NAMESPACE "
                    "and the same GRIDSIGHT_RAY_WORKERS in every web process"
                )
            self._verified.add(index)
        return handle

    def _create(self, index: int) -> Any:
        return (
            _actor_class()
            .options(
                name=self.worker_name(index),
                namespace=self.namespace,
                get_if_exists=True,
                lifetime="detached",  # shared by every web process; outlives the one that made it
                max_restarts=-1,
                max_task_retries=0,  # a frame call is not retried; the relay re-polls
                max_concurrency=MAX_CONCURRENCY,
                num_cpus=self._num_cpus,
                runtime_env={"env_vars": _worker_env()},
            )
            .remote(
                self._bindings_factory,
                deployment_key=self.deployment_key,
                index=index,
                workers=self.workers,
                hub_settings=self._hub_settings,
                lease_s=self._lease_s,
                bind_cpus=self._bind_cpus,
            )
        )

    def forget(self, camera_id: int) -> None:
        """Drop the cached handle of ``camera_id``'s worker (it died for good: look it up again)."""
        index = worker_index(camera_id, self.workers)
        with self._lock:
            self._handles.pop(index, None)
            self._verified.discard(index)

    def existing_workers(self) -> dict[int, Any]:
        """Return handles of the pool's workers that exist now (none are created)."""
        self.wait_connected(0)
        import ray

        out = {}
        for index in range(self.workers):
            try:
                out[index] = ray.get_actor(self.worker_name(index), namespace=self.namespace)
            except ValueError:
                continue
        return out

    def notify_rules_changed(self, camera_id: int | None = None) -> None:
        """Tell the workers (the one of ``camera_id``, or all) to reload rules now."""
        if not self._connected.is_set():
            return  # the workers' own revision poll picks the change up within a second
        with self._lock:
            handles = dict(self._handles)
        for index, handle in handles.items():
            if camera_id is None or index == worker_index(camera_id, self.workers):
                handle.notify_rules_changed.remote(camera_id)

    def streams_info(self, timeout: float = 2.0) -> dict[int, tuple[int, dict]]:
        """Return ``{camera_id: (worker index, info)}`` of every running stream in the pool."""
        import ray
        from ray.exceptions import RayError

        out: dict[int, tuple[int, dict]] = {}
        refs = {i: h.streams_info.remote() for i, h in self.existing_workers().items()}
        for index, ref in refs.items():
            try:
                infos = ray.get(ref, timeout=timeout)
            except RayError as exc:
                log.warning("video cluster: worker %d did not report: %s", index, exc)
                continue
            for camera_id, info in infos.items():
                out[int(camera_id)] = (index, info)
        return out

    def process_stats(self, timeout: float = 5.0) -> list[dict]:
        """Return ``RedactionWorker.process_stats`` of every existing worker."""
        import ray

        handles = self.existing_workers()
        return [ray.get(h.process_stats.remote(), timeout=timeout) for h in handles.values()]

    def kill_workers(self) -> int:
        """Return how many workers were killed for good (tests, benchmarks, redeploys)."""
        import ray

        n = 0
        for handle in self.existing_workers().values():
            ray.kill(handle, no_restart=True)
            n += 1
        with self._lock:
            self._handles.clear()
            self._verified.clear()
        return n


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
    try:
        from ray.exceptions import RayError
    except ImportError:
        return ()
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
        ray_errors = _ray_errors()
        died_error: tuple[type[BaseException], ...] = ()
        try:
            import ray
            from ray.exceptions import ActorDiedError

            died_error = (ActorDiedError,)
        except ImportError:
            ray = None  # connect() reports it as a ClusterError below
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
