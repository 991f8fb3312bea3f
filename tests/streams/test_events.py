"""The live event bus (``streams.events``): the ring buffer, the in-process bus, and Redis
Streams fan-out against a real redis-server: separate consumer processes each get every
event exactly once and in order, across dropped connections and a server restart."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streams.events import (
    Event,
    EventIdError,
    EventRing,
    LocalEventBus,
    RedisEventBus,
    is_event_id,
    parse_event_id,
)
from tests.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[2]


def _recording_clients(bus):
    """Return ``bus`` noting in ``bus.client_threads`` each thread that opens a Redis client."""
    bus.client_threads = []
    make = bus._client

    def client(role):
        bus.client_threads.append(threading.current_thread())
        return make(role)

    bus._client = client
    return bus


def ev(ms: int, seq: int = 0, kind: str = "incident.created", **data) -> Event:
    return Event(f"{ms}-{seq}", kind, data)


def wait_for(pred, timeout: float = 15.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


# -- ids and the ring ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "5", "5-", "-5", "a-1", "1-2-3", " 1-2", "1-2\n", None, 12])
def test_bad_event_ids_are_refused(bad):
    assert not is_event_id(bad)
    with pytest.raises(EventIdError, match="<milliseconds>-<sequence>"):
        parse_event_id(bad)


def test_event_ids_compare_numerically():
    assert parse_event_id("10-0") > parse_event_id("9-99")
    assert parse_event_id("1718000000000-2") == (1718000000000, 2)


def test_ring_reads_after_a_cursor_with_a_limit():
    ring = EventRing(10)
    ring.append([ev(1), ev(2), ev(2, 1), ev(5)])
    b = ring.read("2-0")
    assert [e.id for e in b.events] == ["2-1", "5-0"] and b.cursor == "5-0" and not b.gap
    b = ring.read("0-0", limit=2)
    assert [e.id for e in b.events] == ["1-0", "2-0"] and b.cursor == "2-0"
    b = ring.read("5-0")
    assert b.events == [] and b.cursor == "5-0"
    start = ring.read(None)
    assert start.events == [] and start.cursor == "5-0"


def test_ring_refuses_ids_that_are_not_newer():
    ring = EventRing(10)
    assert ring.append([ev(5), ev(4), ev(5), ev(6)]) == 2
    assert [e.id for e in ring.read("0-0").events] == ["5-0", "6-0"]


def test_ring_wakes_a_blocked_reader():
    ring = EventRing(10)
    ring.append([ev(1)])
    got = {}

    def reader():
        t0 = time.monotonic()
        got["batch"] = ring.read("1-0", timeout=10)
        got["waited"] = time.monotonic() - t0

    th = threading.Thread(target=reader)
    th.start()
    time.sleep(0.3)
    ring.append([ev(2)])
    th.join(60)
    assert [e.id for e in got["batch"].events] == ["2-0"]  # woken by the append, not timed out
    assert got["waited"] > 0.2  # and it did wait for it
    t0 = time.monotonic()
    assert ring.read("2-0", timeout=0.3).events == []
    assert time.monotonic() - t0 >= 0.29


def test_ring_trim_makes_old_cursors_a_gap():
    ring = EventRing(3)
    ring.append([ev(i) for i in range(1, 8)])  # > 2x capacity: trimmed to the newest 3
    assert len(ring) == 3
    old = ring.read("1-0")
    assert old.gap and [e.id for e in old.events] == ["5-0", "6-0", "7-0"]
    assert not ring.read("4-0").gap and not ring.read("6-0").gap


def test_ring_gap_marks_readers_that_crossed_it():
    ring = EventRing(10)
    ring.append([ev(1), ev(2)])
    gen = ring.read("2-0").generation
    ring.mark_gap()
    ring.append([ev(9)])
    assert ring.read("1-0").gap and ring.read("2-0").gap  # by id: at or before the gap
    assert not ring.read("9-0").gap
    assert ring.read("9-0", generation=gen).gap  # by generation: a gap happened since
    assert not ring.read("2-0", generation=ring.generation).gap


def test_ring_cursor_from_the_future_is_reset():
    ring = EventRing(10)
    ring.append([ev(5)])
    b = ring.read("99-0")
    assert b.gap and b.cursor == "5-0"


def test_local_bus_ids_increase_and_events_arrive_in_order():
    bus = LocalEventBus()
    bus.publish([("incident.created", {"n": i}) for i in range(50)])
    bus.publish([("camera.status", {"n": 50})])
    batch = bus.read("0-0")
    assert [e.data["n"] for e in batch.events] == list(range(51))
    keys = [e.key for e in batch.events]
    assert keys == sorted(keys) and len(set(keys)) == 51
    assert bus.complete and bus.last_id == batch.events[-1].id
    bus.close()
    assert not bus.complete


# -- Redis -------------------------------------------------------------------------------------


def test_redis_bus_round_trip_uses_stream_ids(redis_url, stream_key):
    import redis

    bus = RedisEventBus(redis_url, stream_key).start()
    try:
        assert wait_for(lambda: bus.complete)
        start = bus.last_id
        bus.publish([("incident.created", {"id": 7, "grid_id": 3}), ("camera.status", {"id": 2})])
        assert wait_for(lambda: len(bus.read(start).events) == 2)
        got = bus.read(start).events
        ids = [e.id for e, _ in zip(got, range(2), strict=False)]
        raw = redis.Redis.from_url(redis_url, decode_responses=True).xrange(stream_key)
        assert ids == [entry_id for entry_id, _ in raw]
        assert [(e.kind, e.data) for e in got] == [("incident.created", {"id": 7, "grid_id": 3}),
                                                   ("camera.status", {"id": 2})]  # fmt: skip
        assert bus.stats()["published"] == 2 and bus.stats()["received"] == 2
    finally:
        bus.close()


def test_redis_bus_drops_a_retried_duplicate(redis_url, stream_key):
    """An XADD retried after its reply was lost lands twice: consumers keep one copy."""
    import redis

    bus = RedisEventBus(redis_url, stream_key).start()
    try:
        assert wait_for(lambda: bus.complete)
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        fields = {"k": "incident.created", "d": json.dumps({"id": 1}), "u": "p1-1", "t": "0"}
        r.xadd(stream_key, fields)
        r.xadd(stream_key, fields)
        r.xadd(stream_key, {**fields, "u": "p1-2", "d": json.dumps({"id": 2})})
        assert wait_for(lambda: bus.stats()["received"] == 2)
        time.sleep(0.3)
        assert [e.data["id"] for e in bus.read("0-0").events] == [1, 2]
        assert bus.stats()["duplicates"] == 1
    finally:
        bus.close()


def _start_consumers(url: str, stream: str, n: int, tmp: Path, count: int = 2):
    procs, outs = [], []
    for k in range(count):
        out = tmp / f"consumer{k}.jsonl"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.streams.bus_consumer", url, stream, str(n), str(out)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(tmp / f"consumer{k}.log", "wb"),  # noqa: SIM115
        ))  # fmt: skip
        outs.append(out)
    for p, out in zip(procs, outs, strict=True):
        assert wait_for(lambda o=out, p=p: Path(f"{o}.ready").exists() or p.poll() is not None,
                        timeout=60), "consumer did not start"  # fmt: skip
        assert p.poll() is None, (tmp / "consumer0.log").read_text()
    return procs, outs


def _results(procs, outs, timeout: float = 60.0) -> list[tuple[list[dict], dict]]:
    results = []
    for p, out in zip(procs, outs, strict=True):
        p.wait(timeout)
        lines = [json.loads(ln) for ln in out.read_text().splitlines()]
        results.append(([ln for ln in lines if "id" in ln], lines[-1]["stats"]))
    return results


def _kill_consumer_connections(url: str, pids: list[int]) -> int:
    import redis

    r = redis.Redis.from_url(url, decode_responses=True)
    names = {f"gridsight-consumer-{pid}" for pid in pids}
    killed = 0
    for client in r.client_list():
        if client.get("name") in names:
            killed += r.client_kill_filter(_id=client["id"])
    return killed


def _assert_exactly_once_in_order(events: list[dict], n: int) -> None:
    seqs = [e["data"]["seq"] for e in events]
    assert seqs == list(range(n)), f"missing {sorted(set(range(n)) - set(seqs))[:10]}"
    keys = [parse_event_id(e["id"]) for e in events]
    assert keys == sorted(keys) and len(set(keys)) == n


@pytest.mark.slow
def test_two_consumer_processes_get_every_event_once_across_a_dropped_connection(
    redis_url, stream_key, tmp_path
):
    n = 600
    procs, outs = _start_consumers(redis_url, stream_key, n, tmp_path)
    producer = RedisEventBus(redis_url, stream_key).start()
    try:
        for i in range(n):
            producer.publish([("incident.created", {"seq": i})])
            if i == n // 3:
                time.sleep(0.3)
                assert _kill_consumer_connections(redis_url, [p.pid for p in procs]) == 2
            if i % 50 == 0:
                time.sleep(0.05)  # spread over a few seconds, so reconnects happen mid-stream
        results = _results(procs, outs)
    finally:
        producer.close()
        for p in procs:
            p.kill()
    (a, stats_a), (b, stats_b) = results
    for events, stats in results:
        _assert_exactly_once_in_order(events, n)
        assert stats["reconnects"] >= 1 and stats["gaps"] == 0 and stats["read_gaps"] == 0
    assert [e["id"] for e in a] == [e["id"] for e in b]  # the same ids in every process


@pytest.mark.slow
def test_consumers_resume_without_gaps_after_a_redis_restart(tmp_path):
    """The server goes away (SIGTERM, append-only file kept) while events are produced:
    the producer queues and retries, the consumers reconnect and continue from their id."""
    server = RedisServer(tmp_path / "redis", persistent=True).start()
    stream = "gridsight-test:restart"
    n = 300
    producer = _recording_clients(RedisEventBus(server.url, stream)).start()
    procs, outs = _start_consumers(server.url, stream, n, tmp_path)
    try:
        assert wait_for(lambda: producer.complete)
        for i in range(n // 3):
            producer.publish([("incident.created", {"seq": i})])
        assert wait_for(lambda: producer.stats()["published"] == n // 3)
        server.stop()
        for i in range(n // 3, 2 * n // 3):  # Redis is down: publishing must not block
            producer.publish([("incident.created", {"seq": i})])
        assert threading.current_thread() not in producer.client_threads  # never touches Redis
        time.sleep(1.0)
        assert not producer.complete
        server.start()
        for i in range(2 * n // 3, n):
            producer.publish([("incident.created", {"seq": i})])
        results = _results(procs, outs)
    finally:
        producer.close()
        for p in procs:
            p.kill()
        server.stop()
    for events, stats in results:
        _assert_exactly_once_in_order(events, n)
        assert stats["reconnects"] >= 1 and stats["gaps"] == 0
    assert producer.stats()["publish_errors"] >= 1 and producer.stats()["dropped"] == 0


def test_lost_redis_data_is_reported_as_a_gap(tmp_path):
    """Redis restarts without its data: the entry read last is gone, readers must resync."""
    server = RedisServer(tmp_path / "redis", persistent=False).start()
    bus = RedisEventBus(server.url, "gridsight-test:gap").start()
    try:
        assert wait_for(lambda: bus.complete)
        bus.publish([("incident.created", {"seq": 0})])
        assert wait_for(lambda: len(bus.read("0-0").events) == 1)
        cursor = bus.last_id
        gen = bus.generation
        server.kill()
        server.wipe()
        server.start()
        assert wait_for(lambda: bus.stats()["reconnects"] >= 1 and bus.complete, timeout=20)
        bus.publish([("incident.created", {"seq": 1})])
        assert wait_for(lambda: bus.read(cursor).events != [])
        batch = bus.read(cursor, generation=gen)
        assert batch.gap and bus.stats()["gaps"] == 1
        assert [e.data["seq"] for e in batch.events] == [1]
    finally:
        bus.close()
        server.stop()


def test_publish_never_blocks_when_redis_is_unreachable():
    from tests.redis_server import free_port

    bus = _recording_clients(
        RedisEventBus(f"redis://127.0.0.1:{free_port()}/0", "gridsight-test:down")
    ).start()
    try:
        for i in range(1000):
            bus.publish([("incident.created", {"seq": i})])
        # publishing only queues: the caller's thread never opens a Redis connection
        assert threading.current_thread() not in bus.client_threads
        assert not bus.complete and bus.stats()["queued"] == 1000
        assert bus.read(bus.last_id).events == []
    finally:
        bus.close(timeout=2)
        deadline = time.monotonic() + 60  # both threads end (the sender after its retry)
        while any(th.is_alive() for th in bus._threads):
            assert time.monotonic() < deadline, "the bus threads did not end after close()"
            time.sleep(0.1)
    assert bus.stats()["dropped"] == 1000
