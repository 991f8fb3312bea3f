"""Soak: N cameras (looping real clips) through the real hub for a while; RSS must stay flat.

Run: ``PYTHONPATH=. /work/main/.venv/bin/python bench/bench_soak.py --minutes 30 [--cameras 4]``

Each camera is a ``streams.hub.CameraStream`` reading a looping file source (vtest.avi from
../shared/data at its own 10 fps, and a 1280x720 copy of it written here), redacting with the
default rules (faces, plates, persons) and JPEG-encoding every processed frame, as served.
RSS of this process (``/proc/self/status``) is sampled every 10 s; the slope after the
warm-up is a least-squares fit in MB per minute. Goal: slope <= 1 MB/min.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VTEST = REPO.parent / "shared" / "data" / "vtest.avi"

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from streams.hub import CameraStream  # noqa: E402
from streams.rules import RedactionRules  # noqa: E402
from streams.sources import FileSourceConfig, create_source  # noqa: E402


def rss_mb() -> float:
    """Return this process's resident set size in MB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _hd_copy(path: Path) -> None:
    cap = cv2.VideoCapture(str(VTEST))
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1280, 720))
    while True:
        ok, f = cap.read()
        if not ok:
            break
        vw.write(cv2.resize(f, (1280, 720)))
    vw.release()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warmup-minutes", type=float, default=3.0)
    ap.add_argument("--cameras", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hd = Path(tmp) / "vtest_720p.avi"
        _hd_copy(hd)
        clips = [VTEST, hd]
        streams = []
        for cam in range(args.cameras):
            cfg = FileSourceConfig(path=str(clips[cam % 2]))
            s = CameraStream(
                cam + 1, lambda cfg=cfg: create_source(cfg), lambda _: RedactionRules()
            )
            s.start()
            streams.append(s)
        t0 = time.monotonic()
        samples = []
        while (now := time.monotonic() - t0) < args.minutes * 60:
            samples.append((now / 60.0, rss_mb()))
            print(f"{now / 60:6.1f} min  RSS {samples[-1][1]:7.1f} MB  "
                  f"served {[s.stats().get('served', 0) for s in streams]}", flush=True)  # fmt: skip
            time.sleep(10)
        stats = [s.stats() for s in streams]
        for s in streams:
            s.stop()
    t = np.array([m for m, _ in samples])
    r = np.array([v for _, v in samples])
    keep = t >= args.warmup_minutes
    slope = float(np.polyfit(t[keep], r[keep], 1)[0]) if keep.sum() >= 3 else float("nan")
    served = sum(s.get("served", 0) for s in stats)
    failed = sum(s.get("pipeline_failed_closed", 0) for s in stats)
    print(f"| {args.cameras} cameras (vtest 768x576 + 1280x720, 10 fps, default rules) "
          f"| {args.minutes:.0f} min | {served} frames served, {failed} failed closed "
          f"| RSS {r[keep][0]:.0f} -> {r[-1]:.0f} MB (max {r.max():.0f}) "
          f"| slope after {args.warmup_minutes:.0f} min warm-up: {slope:+.2f} MB/min |")  # fmt: skip


if __name__ == "__main__":
    main()
