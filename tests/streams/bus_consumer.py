"""A consumer process for the event-bus tests: follow a Redis stream, record what arrives.

``python -m tests.streams.bus_consumer URL STREAM N OUT`` builds its own ``RedisEventBus``
(as a web worker does), writes ``OUT.ready`` once it follows the stream, then records every
event it reads as one JSON line in ``OUT`` until it has ``N`` events (or 60 s pass), and
finishes with a ``{"stats": ...}`` line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from streams.events import RedisEventBus


def main(url: str, stream: str, n: int, out: Path) -> int:
    bus = RedisEventBus(url, stream, prefill=0).start()
    deadline = time.monotonic() + 20
    while not bus.complete and time.monotonic() < deadline:
        time.sleep(0.02)
    cursor = bus.last_id
    Path(f"{out}.ready").write_text(cursor)
    got = 0
    gaps = 0
    deadline = time.monotonic() + 60
    with open(out, "w", encoding="utf-8") as fh:
        while got < n and time.monotonic() < deadline:
            batch = bus.read(cursor, timeout=0.5)
            gaps += int(batch.gap)
            for ev in batch.events:
                fh.write(json.dumps({"id": ev.id, "kind": ev.kind, "data": ev.data}) + "\n")
                got += 1
            fh.flush()
            cursor = batch.cursor
        stats = bus.stats()
        stats["read_gaps"] = gaps
        fh.write(json.dumps({"stats": stats}) + "\n")
    bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])))
