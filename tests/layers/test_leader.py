"""Deployment-wide locks (``layers.leader``) with real processes: on a SQLite file (flock)
and on PostgreSQL (advisory locks; ``GRIDSIGHT_TEST_PG_URL``): one holder at a time, the
lease passes on when its holder is killed, a leader whose connection dies stops its
services, and the startup lock never lets two processes into the block at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from layers.db import Database
from layers.leader import (
    LeaderElector,
    LeaderLease,
    advisory_key,
    read_holder,
    sqlite_lock_path,
    startup_lock,
)
from tests.absent import missing

REPO = Path(__file__).resolve().parents[2]


def _pg_url() -> str:
    url = os.environ.get("GRIDSIGHT_TEST_PG_URL")
    if not url:
        missing("PostgreSQL (GRIDSIGHT_TEST_PG_URL)", "`. .ci/services.sh` starts it and sets it")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """Return (database URL, unique lease name) on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gs.sqlite'}"
    else:
        url = _pg_url()  # advisory locks need no schema: a unique lock name isolates the test
    return url, f"test-{uuid.uuid4().hex[:10]}"


def _holder(url: str, name: str, out: Path, mode: str = "lease") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.layers.lease_holder", url, name, mode, str(out)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(f"{out}.log", "wb"),  # noqa: SIM115
    )  # fmt: skip


def _wait(pred, timeout=30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_one_holder_at_a_time_in_one_process(target):
    url, name = target
    a, b = LeaderLease(Database(url), name), LeaderLease(Database(url), name)
    try:
        assert a.try_acquire() and a.held
        assert not b.try_acquire() and not b.held
        assert a.check()
        a.release()
        assert b.try_acquire()
        assert not a.try_acquire()
    finally:
        a.release()
        b.release()


def test_the_lease_passes_on_when_its_holder_is_killed(target, tmp_path):
    url, name = target
    out = tmp_path / "held"
    proc = _holder(url, name, out)
    try:
        assert _wait(out.exists), Path(f"{out}.log").read_text()
        mine = LeaderLease(Database(url), name)
        assert not mine.try_acquire()
        if url.startswith("sqlite"):
            holder = read_holder(sqlite_lock_path(mine.db, name))
            assert holder["pid"] == str(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup: the OS / server must release it
        proc.wait(10)
        assert _wait(mine.try_acquire, timeout=15)
        mine.release()
    finally:
        if proc.poll() is None:
            proc.kill()


class FakeService:
    def __init__(self, log: list, name: str) -> None:
        self.log, self.name = log, name
        log.append(("start", name))

    def stop(self) -> None:
        self.log.append(("stop", self.name))


def test_elector_runs_services_in_one_process_and_hands_over(target):
    url, name = target
    log: list = []
    e1 = LeaderElector(LeaderLease(Database(url), name),
                       lambda: {"sim": FakeService(log, "e1")}, retry_s=0.2).start()  # fmt: skip
    e2 = LeaderElector(LeaderLease(Database(url), name),
                       lambda: {"sim": FakeService(log, "e2")}, retry_s=0.2).start()  # fmt: skip
    try:
        time.sleep(0.8)
        assert (e1.is_leader, e2.is_leader) == (True, False)
        assert log == [("start", "e1")]
        e1.stop()
        assert _wait(lambda: e2.is_leader, timeout=5)
        assert log == [("start", "e1"), ("stop", "e1"), ("start", "e2")]
        assert e2.terms == 1 and e1.terms == 1
    finally:
        e1.stop()
        e2.stop()
    assert log[-1] == ("stop", "e2")


def test_postgres_leader_whose_connection_dies_stops_its_services():
    url = _pg_url()
    name = f"test-{uuid.uuid4().hex[:10]}"
    log: list = []
    db = Database(url)
    elector = LeaderElector(LeaderLease(db, name),
                            lambda: {"sim": FakeService(log, "x")}, retry_s=0.2).start()  # fmt: skip
    try:
        assert elector.is_leader
        other = Database(url)
        with other.engine.connect() as conn:
            # the server side of the lease: find the backend holding our advisory lock, end it
            k = advisory_key(name)
            pids = conn.execute(text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = (:k)::bigint"
            ), {"k": k}).scalars().all()  # fmt: skip
            assert len(pids) == 1
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pids[0]})
        # it notices at its next check, stops the services, and takes the lease back as the
        # lock is free again (a new term)
        assert _wait(lambda: ("stop", "x") in log, timeout=5)
        assert _wait(lambda: elector.terms == 2 and elector.is_leader, timeout=5)
    finally:
        elector.stop()


@pytest.mark.slow
def test_startup_lock_serialises_processes(target, tmp_path):
    url, _name = target
    out = tmp_path / "sections.log"
    procs = [_holder(url, "-", out, mode="startup") for _ in range(3)]
    for p in procs:
        assert p.wait(60) == 0, Path(f"{out}.log").read_text()
    lines = [ln.split() for ln in out.read_text().splitlines()]
    assert [kind for kind, _ in lines] == ["start", "end"] * 3  # never two inside at once
    times = [float(t) for _, t in lines]
    assert times == sorted(times)


def test_startup_lock_in_memory_sqlite_is_a_no_op():
    db = Database("sqlite://")
    with startup_lock(db), startup_lock(db):  # nothing to serialise: one process owns it
        pass
    lease = LeaderLease(db)
    assert lease.try_acquire() and LeaderLease(db).try_acquire()


def test_elector_keeps_trying_after_a_failing_start(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'gs.sqlite'}")
    calls = []

    def start():
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise RuntimeError("the simulator could not start")
        return {}

    elector = LeaderElector(LeaderLease(db, "flaky"), start, retry_s=0.2).start()
    try:
        assert not elector.is_leader  # gave the lease up again
        assert _wait(lambda: elector.is_leader, timeout=5) and len(calls) == 2
    finally:
        elector.stop()
