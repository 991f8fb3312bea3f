"""The live event feed: one bus interface, in-process (embedded default) or Redis Streams.

Committed writes reach the bus through ``layers.events`` (new incidents, workflow
transitions, camera status). Each web process keeps the events in a local ring buffer that
readers (the operator map's refresh, the ``/api/v1/events`` SSE route) page through by event
id, optionally blocking on a condition variable until something new arrives.

- ``LocalEventBus`` (no Redis configured): ``publish`` appends straight to the ring; ids are
  generated in Redis' ``<ms>-<seq>`` format, so both backends compare ids the same way.
  It only sees the writes of its own process.
- ``RedisEventBus``: ``publish`` hands events to a sender thread that ``XADD``s them (with an
  approximate ``MAXLEN``) to one stream, retrying with backoff while Redis is away, so a
  commit never waits for Redis. One consumer thread per process reads the whole stream with
  ``XREAD BLOCK`` from its last id into the ring: every process sees every event once, in
  stream order, and resumes after a reconnect without gaps or duplicates (a retried ``XADD``
  whose first reply was lost is recognised by the producer's unique id and dropped). The
  stream id is the event id. If the entry last read is gone from the stream on reconnect
  (trimmed, or Redis restarted without persistence) the ring records a *gap*, and readers
  that crossed it are told to resynchronise from the database.

The database stays the source of truth; the bus only tells readers that something changed.
``redis`` is imported lazily: the embedded default does not need it.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_ID = re.compile(r"(\d{1,19})-(\d{1,19})")
DEFAULT_STREAM = "gridsight:events"
RING_CAPACITY = 10_000  # events kept per process (SSE resume window, refresh look-back)
STREAM_MAXLEN = 100_000  # approximate length Redis keeps (XADD MAXLEN ~)
OUTBOX_MAX = 100_000  # events a process queues while Redis is unreachable before dropping
BLOCK_MS = 1000  # XREAD BLOCK timeout: also how fast a closing bus notices
PREFILL = 1000  # recent events a starting process loads (SSE clients resume through it)
MAX_BACKOFF_S = 5.0


class EventBusError(RuntimeError):
    """The event bus cannot be built as configured; the message says what to change."""


class EventIdError(ValueError):
    """An event id is not of the form ``<milliseconds>-<sequence>`` (e.g. ``1718000000000-0``)."""


def parse_event_id(value: str) -> tuple[int, int]:
    """Return an event id ``"<ms>-<seq>"`` as a comparable (ms, seq) tuple.

    Raises
    ------
    EventIdError
        If ``value`` is not two non-negative integers joined by ``-``.
    """
    m = _ID.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise EventIdError(
            f"event id {value!r} is not of the form <milliseconds>-<sequence>, e.g. 1718000000000-0"
        )
    return int(m.group(1)), int(m.group(2))


def is_event_id(value: object) -> bool:
    """Return True if ``value`` is a well-formed event id string."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Event:
    """One live event: ``id`` (stream id), ``kind`` (see ``layers.events.EVENT_KINDS``), data."""

    id: str
    kind: str
    data: dict
    ts: float = 0.0

    @property
    def key(self) -> tuple[int, int]:
        """Return the id as a sortable (ms, seq) tuple."""
        return parse_event_id(self.id)

    def as_dict(self) -> dict:
        """Return the event as a JSON-ready dict."""
        return {"id": self.id, "kind": self.kind, "data": self.data, "ts": self.ts}


@dataclass(frozen=True)
class EventBatch:
    """The events ``EventBus.read`` found after a cursor, the new cursor, and whether
    events may have been lost between the reader's cursor and now (``gap``: resynchronise).
    """

    events: list[Event]
    cursor: str
    gap: bool
    generation: int


class EventRing:
    """An ordered, bounded buffer of events with a condition variable for blocking readers."""

    def __init__(self, capacity: int = RING_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: {capacity!r}; give a positive number of events")
        self.capacity = int(capacity)
        self._cond = threading.Condition()
        self._events: list[Event] = []
        self._keys: list[tuple[int, int]] = []
        self._trimmed_upto: tuple[int, int] | None = None  # newest event dropped from the ring
        self._gaps: list[tuple[int, int]] = []  # last event key before each gap
        self._last: tuple[int, int] = (0, 0)
        self.generation = 0
        self.closed = False

    @property
    def last_id(self) -> str:
        """Return the id of the newest event ever appended (``0-0`` before the first)."""
        with self._cond:
            return f"{self._last[0]}-{self._last[1]}"

    def __len__(self) -> int:
        with self._cond:
            return len(self._events)

    def append(self, events: Iterable[Event]) -> int:
        """Return how many of ``events`` were added (older-than-newest ids are refused)."""
        added = 0
        with self._cond:
            for ev in events:
                k = ev.key
                if k <= self._last:
                    log.warning("event %s is not newer than %s; dropped", ev.id, self.last_id)
                    continue
                self._events.append(ev)
                self._keys.append(k)
                self._last = k
                added += 1
            if len(self._events) > 2 * self.capacity:  # trim in chunks: amortised O(1)
                cut = len(self._events) - self.capacity
                self._trimmed_upto = self._keys[cut - 1]
                del self._events[:cut], self._keys[:cut]
                self._gaps = [g for g in self._gaps if g >= self._trimmed_upto]
            if added:
                self._cond.notify_all()
        return added

    def mark_gap(self) -> None:
        """Record that events after the newest one may have been lost (readers resync)."""
        with self._cond:
            self._gaps.append(self._last)
            self.generation += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every blocked reader; reads return at once from now on."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def read(
        self,
        after: str | None,
        *,
        generation: int | None = None,
        timeout: float = 0.0,
        limit: int = 1000,
    ) -> EventBatch:
        """Return the events after the id ``after`` (None: start now, no events).

        Parameters
        ----------
        after : str or None
            The reader's cursor: the last event id it has seen.
        generation : int, optional
            The ring generation the reader saw with that cursor; a different one means a
            gap happened since. Without it, a cursor at or before a recorded gap is a gap.
        timeout : float
            Seconds to wait for a new event when there is none yet (0: do not wait).
        limit : int
            Most events returned at once (the cursor then points at the last one returned).

        Raises
        ------
        EventIdError
            If ``after`` is not a well-formed event id.
        """
        k = parse_event_id(after) if after is not None else None
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            if k is None:
                return EventBatch([], self.last_id, False, self.generation)
            while not self.closed and self._last <= k:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            i = bisect.bisect_right(self._keys, k)
            events = self._events[i : i + limit]
            trimmed = self._trimmed_upto is not None and k < self._trimmed_upto
            if generation is not None:
                crossed = generation != self.generation
            else:
                crossed = any(k <= g for g in self._gaps)
            if k > self._last:
                # a cursor from the future: another process's ids (local bus) or a reset stream
                crossed = True
            cursor = events[-1].id if events else (after if k <= self._last else self.last_id)
            return EventBatch(events, cursor, trimmed or crossed, self.generation)


class EventBus:
    """The bus of committed live events (``make_event_bus``): publish them, read them by id."""

    backend = "none"

    def __init__(self, ring_capacity: int = RING_CAPACITY) -> None:
        self.ring = EventRing(ring_capacity)
        self.epoch = secrets.token_hex(8)

    # -- the interface ----------------------------------------------------------------
    def publish(self, items: list[tuple[str, dict]]) -> None:
        """Publish committed events ``(kind, data)``; never raises for a transport failure."""
        raise NotImplementedError

    @property
    def complete(self) -> bool:
        """Return True if every committed write of the deployment reaches this process's ring."""
        raise NotImplementedError

    def read(
        self,
        after: str | None,
        *,
        generation: int | None = None,
        timeout: float = 0.0,
        limit: int = 1000,
    ) -> EventBatch:
        """Return the events after ``after`` from this process's ring (see ``EventRing.read``)."""
        return self.ring.read(after, generation=generation, timeout=timeout, limit=limit)

    @property
    def last_id(self) -> str:
        """Return the newest event id this process has seen (``0-0`` before the first)."""
        return self.ring.last_id

    @property
    def generation(self) -> int:
        """Return how many gaps (possibly lost events) this process's ring has recorded."""
        return self.ring.generation

    def start(self) -> EventBus:
        """Start background threads, if any; return self."""
        return self

    def close(self) -> None:
        """Stop background threads and wake blocked readers."""
        self.ring.close()

    def end_streams(self) -> None:
        """Wake every blocked reader for good (the process is shutting down)."""
        self.ring.close()

    def stats(self) -> dict[str, Any]:
        """Return counters and state for /healthz (no secrets)."""
        return {"backend": self.backend, "complete": self.complete, "last_id": self.last_id,
                "buffered": len(self.ring), "generation": self.ring.generation}  # fmt: skip


class LocalEventBus(EventBus):
    """The in-process bus of the embedded default: events of this process only."""

    backend = "local"

    def __init__(self, ring_capacity: int = RING_CAPACITY) -> None:
        super().__init__(ring_capacity)
        self._lock = threading.Lock()
        self._ms = 0
        self._seq = 0
        self.published = 0

    def _next_id(self) -> str:
        ms = int(time.time() * 1000)
        if ms > self._ms:
            self._ms, self._seq = ms, 0
        else:
            self._seq += 1
        return f"{self._ms}-{self._seq}"

    def publish(self, items: list[tuple[str, dict]]) -> None:
        """Append ``items`` to the ring at once, with fresh ids."""
        now = time.time()
        with self._lock:  # ids and ring order must agree
            events = [Event(self._next_id(), kind, data, now) for kind, data in items]
            self.ring.append(events)
            self.published += len(events)

    @property
    def complete(self) -> bool:
        """Return True: with one web process every write of the app passes this bus."""
        return not self.ring.closed


def _dumps(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass
class _Counters:
    published: int = 0
    publish_errors: int = 0
    dropped: int = 0
    received: int = 0
    duplicates: int = 0
    reconnects: int = 0
    gaps: int = 0


class RedisEventBus(EventBus):
    """Redis Streams fan-out: every process of the deployment sees every event once.

    Parameters
    ----------
    url : str
        ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``).
    stream : str
        The stream key; deployments sharing one Redis use different keys.
    maxlen, ring_capacity, outbox_max, prefill, block_ms
        Approximate stream length kept by Redis; events kept per process; events queued
        while Redis is away; recent events loaded at start; XREAD BLOCK milliseconds.
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        stream: str = DEFAULT_STREAM,
        *,
        maxlen: int = STREAM_MAXLEN,
        ring_capacity: int = RING_CAPACITY,
        outbox_max: int = OUTBOX_MAX,
        prefill: int = PREFILL,
        block_ms: int = BLOCK_MS,
    ) -> None:
        super().__init__(ring_capacity)
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - requirements-cluster.txt has it
            raise EventBusError(
                "GRIDSIGHT_REDIS_URL is set but the redis package is missing; "
                "pip install -r requirements-cluster.txt"
            ) from exc
        self._redis = redis
        self.url = url
        self.stream = stream
        self.epoch = f"redis:{stream}"  # ids are the stream's: valid in every process
        self.maxlen = int(maxlen)
        self.outbox_max = int(outbox_max)
        self.prefill = int(prefill)
        self.block_ms = int(block_ms)
        self.counters = _Counters()
        self._producer = secrets.token_hex(6)
        self._seq = itertools.count(1)
        self._outbox: deque[tuple[str, str, str, float]] = deque()
        self._outbox_cond = threading.Condition()
        self._closing = threading.Event()
        self._connected = False
        self._last_read: str | None = None
        self._inflight = 0  # events the sender took from the outbox and has not delivered
        self._seen: OrderedDict[str, None] = OrderedDict()  # recent producer uids (dedupe)
        self._threads: list[threading.Thread] = []

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> RedisEventBus:
        """Start the sender and the consumer thread (idempotent); return self."""
        if self._threads:
            return self
        for target, name in ((self._send_loop, "sender"), (self._consume_loop, "consumer")):
            th = threading.Thread(target=target, name=f"gridsight-events-{name}", daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def close(self, timeout: float = 3.0) -> None:
        """Flush what Redis accepts within ``timeout``, stop both threads, wake readers."""
        self._closing.set()
        with self._outbox_cond:
            self._outbox_cond.notify_all()
        for th in self._threads:
            th.join(timeout)
        super().close()

    def _client(self, role: str):
        return self._redis.Redis.from_url(
            self.url,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_timeout=self.block_ms / 1000.0 + 5.0,
            client_name=f"gridsight-{role}-{os.getpid()}",
        )

    @property
    def complete(self) -> bool:
        """Return True while the consumer is connected and following the stream."""
        return self._connected and not self._closing.is_set()

    def stats(self) -> dict[str, Any]:
        """Return counters and state for /healthz (the URL's password is never included)."""
        doc = super().stats()
        c = self.counters
        with self._outbox_cond:
            queued = len(self._outbox) + self._inflight
        doc.update(stream=self.stream, connected=self._connected, queued=queued,
                   published=c.published, publish_errors=c.publish_errors, dropped=c.dropped,
                   received=c.received, duplicates=c.duplicates, reconnects=c.reconnects,
                   gaps=c.gaps)  # fmt: skip
        return doc

    # -- publishing -------------------------------------------------------------------
    def publish(self, items: list[tuple[str, dict]]) -> None:
        """Queue ``items`` for the sender thread; never blocks on Redis."""
        if self._closing.is_set():
            self.counters.dropped += len(items)
            return
        now = time.time()
        with self._outbox_cond:
            for kind, data in items:
                uid = f"{self._producer}-{next(self._seq)}"
                self._outbox.append((kind, _dumps(data), uid, now))
            over = len(self._outbox) - self.outbox_max
            for _ in range(max(0, over)):  # Redis away for long: keep the newest events
                self._outbox.popleft()
            if over > 0:
                self.counters.dropped += over
                log.warning("event outbox full: dropped %s events (Redis unreachable)", over)
            self._outbox_cond.notify()

    def _take(self, n: int = 500) -> list[tuple[str, str, str, float]]:
        with self._outbox_cond:
            while not self._outbox and not self._closing.is_set():
                self._outbox_cond.wait(1.0)
            return [self._outbox.popleft() for _ in range(min(n, len(self._outbox)))]

    def _send_loop(self) -> None:
        client = None
        backoff = 0.1
        batch: list = []
        while True:
            if not batch:
                batch = self._take()
                self._inflight = len(batch)
            if not batch:
                if self._closing.is_set():
                    break
                continue
            try:
                if client is None:
                    client = self._client("sender")
                pipe = client.pipeline(transaction=False)
                for kind, payload, uid, ts in batch:
                    pipe.xadd(self.stream, {"k": kind, "d": payload, "u": uid, "t": f"{ts:.3f}"},
                              maxlen=self.maxlen, approximate=True)  # fmt: skip
                results = pipe.execute(raise_on_error=False)
                bad = [r for r in results if isinstance(r, Exception)]
                if bad:  # e.g. WRONGTYPE: retrying cannot help, so count and drop those
                    self.counters.dropped += len(bad)
                    log.error("Redis refused %s events: %s", len(bad), bad[0])
                self.counters.published += len(batch) - len(bad)
                batch = []
                self._inflight = 0
                if backoff > 0.1:
                    log.info("publishing to Redis works again")
                backoff = 0.1
            except self._redis.RedisError as exc:
                self.counters.publish_errors += 1
                (log.warning if backoff == 0.1 else log.debug)(
                    "publishing %s events to Redis failed (%s); queueing and retrying",
                    len(batch), exc,
                )  # fmt: skip
                if client is not None:
                    client.close()
                client = None
                if self._closing.wait(backoff):
                    with self._outbox_cond:
                        self.counters.dropped += len(batch) + len(self._outbox)
                        self._outbox.clear()
                    self._inflight = 0
                    break
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        if client is not None:
            client.close()

    # -- consuming --------------------------------------------------------------------
    def _ingest(self, entries: list) -> None:
        events = []
        for entry_id, fields in entries:
            self._last_read = entry_id
            uid = fields.get("u", "")
            if uid and uid in self._seen:
                self.counters.duplicates += 1  # an XADD retried after its reply was lost
                continue
            if uid:
                self._seen[uid] = None
                if len(self._seen) > 4 * self.ring.capacity:
                    self._seen.popitem(last=False)
            try:
                data = json.loads(fields.get("d") or "{}")
                ts = float(fields.get("t") or 0.0)
            except ValueError:
                log.warning("malformed event %s in %s; skipped", entry_id, self.stream)
                continue
            events.append(Event(entry_id, fields.get("k", ""), data, ts))
        self.counters.received += self.ring.append(events)

    def _resume(self, client) -> None:
        """Load recent history on first connect; on a reconnect, check for a gap."""
        if self._last_read is None:
            entries = client.xrevrange(self.stream, "+", "-", count=max(1, self.prefill))
            entries.reverse()
            if self.prefill > 0:
                self._last_read = "0-0"
                self._ingest(entries)
            else:  # follow from the newest entry on, load nothing older
                self._last_read = entries[-1][0] if entries else "0-0"
            return
        self.counters.reconnects += 1
        if self._last_read != "0-0" and not client.xrange(
            self.stream, self._last_read, self._last_read, count=1
        ):
            # the entry we read last is gone: trimmed while we were away, or Redis lost its
            # data; events between it and the oldest entry may be missing
            self.counters.gaps += 1
            self.ring.mark_gap()
            log.warning("event stream %s: entry %s is gone; readers resynchronise",
                        self.stream, self._last_read)  # fmt: skip

    def _consume_loop(self) -> None:
        backoff = 0.1
        while not self._closing.is_set():
            client = None
            try:
                client = self._client("consumer")
                self._resume(client)
                self._connected = True
                if backoff > 0.1:
                    log.info("event stream %s: connected again at %s", self.stream,
                             self._last_read)  # fmt: skip
                backoff = 0.1
                while not self._closing.is_set():
                    resp = client.xread({self.stream: self._last_read}, count=1000,
                                        block=self.block_ms)  # fmt: skip
                    for _name, entries in resp or ():
                        self._ingest(entries)
            except self._redis.RedisError as exc:
                if self._connected or backoff == 0.1:
                    log.warning("event stream %s: %s; reconnecting", self.stream, exc)
                else:
                    log.debug("event stream %s: still unreachable (%s)", self.stream, exc)
                self._connected = False
                if self._closing.wait(backoff):
                    break
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            finally:
                if client is not None:
                    client.close()
        self._connected = False


def make_event_bus(redis_url: str | None, stream: str = DEFAULT_STREAM) -> EventBus:
    """Return a started event bus: Redis Streams when ``redis_url`` is set, else in-process."""
    if not redis_url:
        return LocalEventBus().start()
    return RedisEventBus(redis_url, stream).start()
