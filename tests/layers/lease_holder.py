"""A process for the lease tests: ``python -m tests.layers.lease_holder URL NAME MODE OUT``.

``MODE`` ``lease``: take the leader lease ``NAME`` (waiting for it), write ``OUT`` once held,
then sleep until killed. ``MODE`` ``startup``: hold the startup lock for one second, logging
``start``/``end`` lines with timestamps into ``OUT`` (overlap tests).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from layers.db import Database
from layers.leader import LeaderLease, startup_lock


def main(url: str, name: str, mode: str, out: Path) -> int:
    db = Database(url)
    if mode == "lease":
        lease = LeaderLease(db, name)
        while not lease.try_acquire():
            time.sleep(0.05)
        out.write_text("held")
        while True:
            time.sleep(1)
    with startup_lock(db):
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(f"start {time.time():.4f}\n")
        time.sleep(1.0)
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(f"end {time.time():.4f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))
