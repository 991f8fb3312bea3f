"""Holding a redaction worker to the cores Ray reserved for it (node-local core locks)."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: Node-local lock files by which the worker processes of one machine share out its cores.
CPU_LOCK_DIR = Path(tempfile.gettempdir()) / "gridsight-ray-cpus"


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
