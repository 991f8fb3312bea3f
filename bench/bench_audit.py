"""Benchmark: the audit log sealed with a key (HMAC) against the plain SHA-256 chain.

Both runs in the same process, on fresh SQLite files in the same folder, with the same entries:

- ``plain``: ``audit.record`` without an audit key (the chain before the key existed);
- ``keyed``: the same with ``Database.audit_key`` set (HMAC entry hashes, a sealed head).

Measures appends per second (one entry per transaction, as the app writes them) and
``audit.verify`` over the whole chain (best of 3), and prints keyed/plain ratios.

Usage::

    python bench/bench_audit.py --n 3000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from layers.db import Database  # noqa: E402
from layers.services import audit  # noqa: E402
from layers.services.audit_key import AuditKey  # noqa: E402


def run(folder: Path, name: str, n: int, keyed: bool) -> tuple[float, float]:
    """Return (appends per second, verify seconds) for ``n`` entries."""
    key = AuditKey(folder / f"{name}.audit-key") if keyed else None
    db = Database(f"sqlite:///{folder / name}.sqlite", audit_key=key)
    db.migrate()
    if keyed:
        audit.ensure_keyed(db)
    t0 = time.perf_counter()
    for i in range(n):
        with db.session() as s:
            audit.record(s, actor=f"user{i % 7}", role="operator", action="video.view",
                         target=f"camera:{i % 500}", detail={"camera_id": i % 500,
                                                              "redacted": True})  # fmt: skip
    appends = n / (time.perf_counter() - t0)
    verify_s = float("inf")
    for _ in range(3):  # best of 3: the machine is shared
        t0 = time.perf_counter()
        report = audit.verify(db)
        verify_s = min(verify_s, time.perf_counter() - t0)
        assert report.ok, report.summary()
    db.dispose()
    return appends, verify_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="entries per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plain = run(folder, "plain", args.n, keyed=False)
        keyed = run(folder, "keyed", args.n, keyed=True)
    print(f"entries: {args.n}")
    print(f"append/s   plain {plain[0]:8.0f}   keyed {keyed[0]:8.0f}   "
          f"ratio keyed/plain {keyed[0] / plain[0]:.2f}")  # fmt: skip
    print(f"verify s   plain {plain[1]:8.3f}   keyed {keyed[1]:8.3f}   "
          f"ratio keyed/plain {keyed[1] / plain[1]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
