"""Redaction throughput and face recall at 1280x720 and 1920x1080, on 1 and 2 threads.

Run: ``PYTHONPATH=. /work/main/.venv/bin/python bench/bench_redact.py [--frames 90] [--plates]``

Each configuration runs in its own subprocess (thread pools are sized when they start).
Frames: vtest.avi (../shared/data) scaled to the resolution, with real faces from
scikit-image's bundled ``lfw_subset`` moving across it at known positions (ground truth).
Per frame we time the server path after decode: detect (what changed, at the scale
``min_face_px`` asks for) -> track -> redact -> JPEG encode. A face counts as covered in a
frame when >= 90 % of its box lies inside the obscured area (or the frame failed closed);
faces hidden under a face pasted later are not counted. The baseline, run in the same
invocation on the same frames, detects the whole of every frame.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VTEST = REPO.parent / "shared" / "data" / "vtest.avi"

CONFIGS = {
    # the baseline may take seconds per frame under load: no timeout, so no fail-closed frames
    "baseline: faces, whole frame detected every frame": {"targets": ["faces"], "refresh_every": 1, "detector_timeout_ms": 60000},
    "faces, change-gated, min_face_px 16": {"targets": ["faces"]},
    "faces, change-gated, min_face_px 24": {"targets": ["faces"], "min_face_px": 24},
    "default rules (faces+plates+persons), change-gated": {},
}  # fmt: skip


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def make_frames(width: int, height: int, n: int):
    """Return (frames, ground-truth face boxes per frame) for a synthetic moving-faces clip."""
    import cv2
    import numpy as np
    from skimage import data

    faces = data.lfw_subset()[:100]
    cap = cv2.VideoCapture(str(VTEST))
    frames, truth = [], []
    s = width / 1280
    # (face index, face side px at 720p, start x, start y, vx, vy)
    actors = [(3, 48, 100, 80, 5, 1), (17, 64, 1100, 150, -4, 2), (42, 80, 300, 420, 3, -1),
              (58, 96, 800, 380, -3, -1), (77, 56, 600, 60, 2, 3)]  # fmt: skip
    for i in range(n):
        ok, bg = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bg = cap.read()
        frame = cv2.resize(bg, (width, height), interpolation=cv2.INTER_LINEAR)
        boxes, patches = [], []
        for idx, side, x0, y0, vx, vy in actors:
            side = int(side * s)
            face = cv2.resize(
                (faces[idx] * 255).astype(np.uint8), (side, side), interpolation=cv2.INTER_CUBIC
            )
            pad = side // 2  # some head/shoulder context, as in a real scene
            patch = np.full((side + 2 * pad, side + 2 * pad), 110, np.uint8)
            patch[pad : pad + side, pad : pad + side] = face
            patch = cv2.cvtColor(patch, cv2.COLOR_GRAY2BGR)
            x = int((x0 + vx * i) * s) % (width - patch.shape[1])
            y = int((y0 + vy * i) * s) % (height - patch.shape[0])
            frame[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
            boxes.append((x + pad, y + pad, x + pad + side, y + pad + side))
            patches.append((x, y, x + patch.shape[1], y + patch.shape[0]))
        # a face partly hidden under a patch pasted after it is not ground truth any more
        visible = [
            b for k, b in enumerate(boxes)
            if not any(_overlap(b, p) for p in patches[k + 1 :])
        ]  # fmt: skip
        frames.append(frame)
        truth.append(visible)
    return frames, truth


def run_one(name: str, width: int, height: int, threads: int, n: int) -> dict:
    """Return fps and recall for one configuration (runs inside the subprocess)."""
    from streams import configure_threads

    configure_threads(threads)
    import cv2
    import numpy as np

    from streams.pipeline import RedactionPipeline
    from streams.redact import expand_box
    from streams.rules import RedactionRules

    warnings.filterwarnings("ignore")
    frames, truth = make_frames(width, height, n)
    rules = RedactionRules(**CONFIGS[name])
    pipe = RedactionPipeline(rules, name=name)
    pipe.process(frames[0])  # warm-up (model init), not timed
    pipe = RedactionPipeline(rules, name=name)
    covered = total = 0
    t0, c0 = time.perf_counter(), time.process_time()
    results = []
    for f in frames:
        r = pipe.process(f)
        if r.frame is not None:
            cv2.imencode(".jpg", r.frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
        results.append(r)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    for r, gts in zip(results, truth, strict=True):
        mask = np.zeros((height, width), bool)
        if r.failed:
            mask[:] = True
        for b in r.boxes:
            x1, y1, x2, y2 = expand_box(b, rules.margin, width, height)
            mask[y1:y2, x1:x2] = True
        for x1, y1, x2, y2 in gts:
            total += 1
            covered += mask[y1:y2, x1:x2].mean() >= 0.9
    return {
        "config": name, "size": f"{width}x{height}", "threads": threads, "frames": n,
        "fps": n / wall, "cpu_ms_per_frame": 1000 * cpu / n, "recall": covered / total,
        "failed_closed": pipe.stats["failed_closed"],
    }  # fmt: skip


def plate_recall(n_plates: int = 60) -> dict:
    """Return the plate cascade's recall on synthetic plates of three colour schemes."""
    import cv2
    import numpy as np

    from streams.detectors import DETECTORS, Box
    from streams.detectors.plates import HaarPlateConfig
    from streams.track import iou

    dets = {
        "haar_plate": DETECTORS.create(HaarPlateConfig()),
        "color_plate": DETECTORS.create({"type": "color_plate"}),
        "any_of(haar, color)": DETECTORS.create(
            {"type": "any_of", "detectors": [{"type": "haar_plate"}, {"type": "color_plate"}]}
        ),
    }
    cap = cv2.VideoCapture(str(VTEST))
    rng = np.random.default_rng(0)
    schemes = {"blue/white (small car)": ((160, 60, 0), (255, 255, 255)),
               "yellow/black (large vehicle)": ((0, 200, 255), (0, 0, 0)),
               "white/black (police, RU-like)": ((255, 255, 255), (0, 0, 0))}  # fmt: skip
    out = {}
    for scheme, (bg, fg) in schemes.items():
        hits = dict.fromkeys(dets, 0)
        for _ in range(n_plates):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(rng.integers(0, 700)))
            _, frame = cap.read()
            w = int(rng.integers(70, 160))
            h = int(w * 140 / 440)
            plate = np.zeros((h, w, 3), np.uint8)
            plate[:] = bg
            cv2.rectangle(plate, (1, 1), (w - 2, h - 2), fg, 1)
            text = f"A{rng.integers(10000, 99999)}"
            cv2.putText(plate, text, (int(w * 0.06), int(h * 0.78)), cv2.FONT_HERSHEY_SIMPLEX,
                        w / 190, fg, max(1, w // 70), cv2.LINE_AA)  # fmt: skip
            x, y = int(rng.integers(0, 768 - w)), int(rng.integers(200, 576 - h))
            frame[y : y + h, x : x + w] = plate
            gt = Box(x, y, x + w, y + h)
            for name, det in dets.items():
                hits[name] += any(iou(b, gt) >= 0.3 for b in det.detect(frame))
        for name in dets:
            out[f"{name}, {scheme}"] = hits[name] / n_plates
    # false positives: boxes per frame on plain vtest frames (no readable plate in them)
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    frames = [cap.read()[1] for _ in range(100)]
    for name, det in dets.items():
        out[f"{name}, boxes per plate-free vtest frame"] = (
            sum(len(det.detect(f)) for f in frames) / 100
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--plates", action="store_true", help="also measure plate recall")
    ap.add_argument("--only", default="", help="run only configs whose name contains this")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        name, size, threads = json.loads(a.one)
        w, h = map(int, size.split("x"))
        print(json.dumps(run_one(name, w, h, threads, a.frames)))
        return
    rows = []
    for size in ("1280x720", "1920x1080"):
        for threads in (1, 2):
            for name in CONFIGS:
                if a.only and a.only not in name and not name.startswith("baseline"):
                    continue
                env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
                arg = json.dumps([name, size, threads])
                res = subprocess.run(
                    [sys.executable, __file__, "--frames", str(a.frames), "--one", arg],
                    capture_output=True, text=True, env=env, check=True,
                )  # fmt: skip
                row = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print("| size | threads | config | fps | x baseline | CPU ms/frame | face recall |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        base = next(r for r in rows if r["size"] == row["size"] and r["threads"] == row["threads"]
                    and r["config"].startswith("baseline"))  # fmt: skip
        print(f"| {row['size']} | {row['threads']} | {row['config']} | {row['fps']:.1f} | "
              f"{row['fps'] / base['fps']:.1f} | {row['cpu_ms_per_frame']:.1f} | {row['recall']:.3f} |")  # fmt: skip
    if a.plates:
        print()
        for scheme, recall in plate_recall().items():
            print(f"plates: {scheme}: {recall:.2f}")
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
