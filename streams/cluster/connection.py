"""Reaching the redaction cluster: Ray connection, worker naming, the web side's pool handles.

``connect`` joins (or starts) the Ray cluster; ``worker_index`` and ``deployment_key`` are the
rules every web process applies the same way; ``RedactionCluster`` holds the web side's
handles on the fixed pool of named workers (create with ``get_if_exists``, check that a
worker found by name belongs to this deployment and pool size).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.cluster.worker import LEASE_S, MAX_CONCURRENCY, WORKER_THREADS, actor_class
from streams.hub import HubBindings, HubSettings

log = logging.getLogger(__name__)

NAMESPACE = "gridsight"
WORKER_NAME = "gridsight-redactor-{index}"
#: Extra time a call may take (worker start-up, transfer) before the relay fails it closed.
CALL_GRACE_S = 5.0
#: How long a feed waits for the Ray connection before showing the placeholder (and retrying).
CONNECT_WAIT_S = 2.0


class ClusterError(RuntimeError):
    """The redaction cluster cannot be reached or used; video fails closed."""


class ClusterConfigError(ClusterError):
    """A worker found by name belongs to another deployment or another pool size."""


# -- connecting ------------------------------------------------------------------------------

RAY_MISSING = (
    "cluster mode (GRIDSIGHT_RAY_ADDRESS) needs Ray, which is not installed: "
    "pip install -r requirements-cluster.txt"
)


def require_ray():
    """Return the ``ray`` module; raise ``ClusterError`` saying how to install it if it is absent.

    Ray is optional: only cluster mode needs it, so it is imported here, when that mode is
    configured, and its absence stops that mode with this message (video never falls back to
    anything unredacted or silently in-process).
    """
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(RAY_MISSING) from exc
    return ray


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
    ray = require_ray()
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
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {
        "PYTHONPATH": path,
        "OMP_NUM_THREADS": str(WORKER_THREADS),
        "OMP_WAIT_POLICY": "PASSIVE",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


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
        require_ray()  # configured without Ray installed: refuse now, not per stream later
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
            actor_class()
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
