"""Cluster mode: each camera's reader + redaction pipeline runs once, in a Ray worker process.

Ray is imported lazily, in this package only, so the embedded in-process mode never needs
it; configured without Ray installed, cluster mode stops with ``RAY_MISSING``. The rooms:

- ``connection.py``: ``connect``, ``worker_index``, ``deployment_key`` and
  ``RedactionCluster``, the web side's handles on the pool (connect, create with
  ``get_if_exists``, check that a worker found by name belongs to this deployment).
- ``cpu_binding.py``: ``claim_cpus`` / ``hold_to_cpus``, a worker held to its reserved cores.
- ``worker.py``: ``RedactionWorker``, a Ray actor hosting a ``StreamHub``, i.e. the very
  ``CameraStream`` code of the in-process mode (capture -> detect -> track -> redact -> encode, fail-closed).
  A fixed pool of ``workers`` such actors, named ``gridsight-redactor-<k>`` in the namespace,
  is the unit of capacity: one worker process each (``num_cpus=1``, one OpenCV/OpenMP thread),
  held to as many of its machine's cores as Ray reserved for it (``claim_cpus``), so W
  workers use W cores and adding one adds one core's worth of frames.
  Camera ``c`` runs in worker ``c % workers``: every web process of every machine computes the
  same index and reaches the same actor by name, with no coordinator. Raw frames exist only
  inside that process; ``wait_frame`` returns redacted JPEG bytes (or, for a watermark of an
  audited unmask grant, the lifted + watermarked JPEG ``CameraStream`` makes for it).
- ``relay.py``: ``RayStreamRelay``, the ``StreamHub`` interface the video routes use
  (``subscribe``, ``snapshot``, ``streams``, ``notify_rules_changed``, ``close``). One feed thread per camera
  (and watermark) per web process long-polls the worker and fans its JPEGs out to the local
  viewers. While the worker cannot be reached (killed, restarting, Ray down) viewers get a
  placeholder JPEG drawn here from nothing (grey, "stream restarting"), never a frame.

Viewers are counted in the worker as leases: a (camera, watermark) polled within ``lease_s``
is watched. A lease expires ``lease_s`` after its last poll from any web process; the worker's
hub then stops the stream ``idle_stop_s`` (``GRIDSIGHT_RAY_IDLE_S``) later, as in-process.
Lifted (unmasked) frames are made only while a lease for that watermark is held.
"""

from streams.cluster.connection import (
    CALL_GRACE_S,
    CONNECT_WAIT_S,
    NAMESPACE,
    RAY_MISSING,
    WORKER_NAME,
    ClusterConfigError,
    ClusterError,
    RedactionCluster,
    connect,
    deployment_key,
    require_ray,
    worker_index,
)
from streams.cluster.cpu_binding import CPU_LOCK_DIR, CpuClaim, claim_cpus, hold_to_cpus
from streams.cluster.relay import (
    FEED_LINGER_S,
    PLACEHOLDER_EVERY_S,
    PLACEHOLDER_TEXT,
    POLL_S,
    RayStreamRelay,
    RemoteStream,
    jpeg_size,
    placeholder_jpeg,
)
from streams.cluster.worker import LEASE_S, MAX_CONCURRENCY, WORKER_THREADS, RedactionWorker

__all__ = [
    "CALL_GRACE_S",
    "CONNECT_WAIT_S",
    "CPU_LOCK_DIR",
    "FEED_LINGER_S",
    "LEASE_S",
    "MAX_CONCURRENCY",
    "NAMESPACE",
    "PLACEHOLDER_EVERY_S",
    "PLACEHOLDER_TEXT",
    "POLL_S",
    "RAY_MISSING",
    "WORKER_NAME",
    "WORKER_THREADS",
    "ClusterConfigError",
    "ClusterError",
    "CpuClaim",
    "RayStreamRelay",
    "RedactionCluster",
    "RedactionWorker",
    "RemoteStream",
    "claim_cpus",
    "connect",
    "deployment_key",
    "hold_to_cpus",
    "jpeg_size",
    "placeholder_jpeg",
    "require_ray",
    "worker_index",
]
