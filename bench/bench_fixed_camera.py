"""Throughput on a real fixed CCTV clip (vtest.avi scaled to 1280x720, 300 frames).

Run: ``PYTHONPATH=. /work/main/.venv/bin/python bench/bench_fixed_camera.py``

One thread (``streams.configure_threads(1)``); per rule set, CPU time of this process for
pipeline + JPEG encode (q80), fps = frames / CPU s, and the per-stage / per-target CPU ms
the pipeline reports. Decode is not timed (frames are decoded and scaled beforehand).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VTEST = REPO.parent / "shared" / "data" / "vtest.avi"

from streams import configure_threads  # noqa: E402 - before cv2 / onnxruntime pools start

configure_threads(1)

import cv2  # noqa: E402

from streams.pipeline import RedactionPipeline  # noqa: E402
from streams.rules import RedactionRules  # noqa: E402

CONFIGS = {
    "default rules (faces+plates+persons)": {},
    "faces only": {"targets": ["faces"]},
    "faces+plates (the former default)": {"targets": ["faces", "plates"]},
}


def main() -> None:
    cap = cv2.VideoCapture(str(VTEST))
    frames = []
    for _ in range(300):
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(f, (1280, 720)))
    print("| rules | frames | fps (1 core) | CPU ms/frame: detect whole-frame (MOG2) / coverage "
          "/ detect regions / track / mask | region ms by target | whole-frame detections |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, cfg in CONFIGS.items():
        p = RedactionPipeline(RedactionRules(**cfg), clock=time.thread_time)
        st: Counter[str] = Counter()
        by_target: Counter[str] = Counter()
        c0 = time.process_time()
        for f in frames:
            r = p.process(f)
            cv2.imencode(".jpg", r.frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
            st.update(p.timings)
            by_target.update(p.target_ms)
        n = len(frames)
        fps = n / (time.process_time() - c0)
        stages = " / ".join(f"{st[k] / n:.1f}" for k in
                            ("detect_whole", "coverage", "detect_regions", "track", "mask"))  # fmt: skip
        targets = ", ".join(f"{k} {v / n:.1f}" for k, v in sorted(by_target.items()))
        print(f"| {name} | {n} | {fps:.1f} | {stages} | {targets} "
              f"| {p.stats['whole_frame_detections']} |")  # fmt: skip


if __name__ == "__main__":
    main()
