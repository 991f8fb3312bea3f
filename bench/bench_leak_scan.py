"""Leak scan: clips with known face boxes through the real pipeline and JPEG, as served.

Run: ``PYTHONPATH=. /work/main/.venv/bin/python bench/bench_leak_scan.py [--seconds 12]``

Clips are made here, offline, with KNOWN face boxes: real faces (scikit-image's astronaut
photo, its mirror image, the cameraman, and LFW faces set into the astronaut's head so each
has hair, neck and background around it) composited onto real CCTV frames (vtest.avi in
../shared/data), 16-60 px wide at SOURCE resolution, moving a few px a frame. Three kinds:

- ``cuts``: a new background and new faces every second (25 frames);
- ``pan``: a PTZ-like pan over a wide background (4-16 px a frame, turning every 2 s), faces
  fixed in the scene enter and leave the view;
- ``damage``: cuts plus packet-loss damage: 10 % of frames get 1-4 blocks smeared from 5
  frames back or greyed, 5 % of frames are repeated.

Each clip is written with OpenCV's MJPG writer (quality 95) and read back with
``cv2.VideoCapture`` (the decode stage), run through ``RedactionPipeline.process`` (as the
hub does), JPEG-encoded at the hub's quality (80) and decoded again (what a viewer or a
snapshot gets). A face counts as LEAKED in a served frame when the SSIM of the served crop to
the raw crop, grey at 64x64, is above 0.6. Control: the raw frames through the same JPEG path
are scored too (every face should count as recognisable there, else the metric is blind).

Speed: one thread (``streams.configure_threads(1)``: OpenCV, FFmpeg and onnxruntime), CPU
time of this process per stage (decode, detect, track, mask, encode), fps = frames / CPU s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VTEST = REPO.parent / "shared" / "data" / "vtest.avi"

from streams import configure_threads  # noqa: E402 - before cv2 / onnxruntime pools start

configure_threads(1)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from skimage import data  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402

from streams.pipeline import RedactionPipeline  # noqa: E402
from streams.redact import expand_box  # noqa: E402
from streams.rules import RedactionRules  # noqa: E402

FPS = 25
JPEG_QUALITY = 80
ASTRONAUT_FACE = (182, 58, 270, 178)  # CenterFace's box on the 512x512 photo, rounded
CAMERAMAN_FACE = (202, 119, 258, 197)

CONFIGS = {
    "default rules (faces+plates+persons)": {},
    "faces only, min_face_px 16": {"targets": ["faces"]},
    "faces only, min_face_px 12 (stronger: CenterFace at 1.67x)": {
        "targets": ["faces"],
        "min_face_px": 12,
    },
}


def _heads(rng: np.random.Generator) -> list[tuple[str, np.ndarray, tuple[int, int, int, int]]]:
    """Return (source, head image, face box in it) for every face identity used."""
    ast = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    cam = cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR)

    def head(img, box):
        x1, y1, x2, y2 = box
        m = (x2 - x1) // 2
        hx1, hy1 = max(0, x1 - m), max(0, y1 - m)
        crop = img[hy1 : y2 + m, hx1 : x2 + m].copy()
        return crop, (x1 - hx1, y1 - hy1, x2 - hx1, y2 - hy1)

    out = []
    h, b = head(ast, ASTRONAUT_FACE)
    out += [("astronaut", h, b), ("astronaut-mirror", h[:, ::-1].copy(), _mirror(b, h.shape[1]))]
    h, b = head(cam, CAMERAMAN_FACE)
    out.append(("cameraman", h, b))
    lfw = data.lfw_subset()[:100]
    base, (x1, y1, x2, y2) = head(ast, ASTRONAUT_FACE)
    fw, fh = x2 - x1, y2 - y1
    # the LFW crop is the inner face (brows to chin): set it into the middle of the face box,
    # tinted to the astronaut's skin and feathered at the edge so no square seam shows
    ix1, iy1, iw, ih = x1 + fw // 8, y1 + fh // 5, fw * 3 // 4, fh * 3 // 4
    skin = base[y1 + fh // 2 : y1 + fh // 2 + 10, x1 + fw // 3 : x1 + fw // 3 + 10]
    tint = skin.reshape(-1, 3).mean(axis=0) / 160.0
    alpha = np.zeros((ih, iw), np.float32)
    cv2.ellipse(alpha, (iw // 2, ih // 2), (iw // 2 - 2, ih // 2 - 2), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, iw / 12))[..., None]
    for i in rng.choice(100, 20, replace=False):
        face = cv2.resize((lfw[i] * 255).astype(np.float32), (iw, ih))[..., None] * tint
        img = base.copy()
        region = img[iy1 : iy1 + ih, ix1 : ix1 + iw].astype(np.float32)
        mixed = alpha * np.clip(face, 0, 255) + (1 - alpha) * region
        img[iy1 : iy1 + ih, ix1 : ix1 + iw] = mixed.astype(np.uint8)
        out.append((f"lfw{i}", img, (x1, y1, x2, y2)))
    return out


def _mirror(box, width):
    x1, y1, x2, y2 = box
    return width - x2, y1, width - x1, y2


def _backgrounds(size: tuple[int, int], n: int, rng) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(VTEST))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    w, h = size
    out = []
    for _ in range(n):
        f = frames[int(rng.integers(len(frames)))]
        # a random crop (scale 0.6-1.0 of the frame) scaled up: each scene looks different
        s = rng.uniform(0.6, 1.0)
        ch, cw = int(f.shape[0] * s), int(f.shape[1] * s)
        y, x = int(rng.integers(0, f.shape[0] - ch + 1)), int(rng.integers(0, f.shape[1] - cw + 1))
        img = cv2.resize(f[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(img[:, ::-1].copy() if rng.random() < 0.5 else img)
    return out


class Actor:
    """One face in a clip: identity, size, position and velocity (px per frame)."""

    def __init__(self, head, face_w, x, y, vx, vy):
        src, img, (fx1, fy1, fx2, fy2) = head
        self.source = src
        s = face_w / (fx2 - fx1)
        self.img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        self.face = (round(fx1 * s), round(fy1 * s), round(fx2 * s), round(fy2 * s))
        self.x, self.y, self.vx, self.vy = x, y, vx, vy

    def paste(self, frame, ox=0, oy=0):
        """Paste into ``frame`` at scene position minus (ox, oy); return the face box or None."""
        x, y = int(round(self.x - ox)), int(round(self.y - oy))
        h, w = self.img.shape[:2]
        fh, fw = frame.shape[:2]
        if x < 0 or y < 0 or x + w > fw or y + h > fh:
            sx1, sy1, sx2, sy2 = max(0, x), max(0, y), min(fw, x + w), min(fh, y + h)
            if sx2 <= sx1 or sy2 <= sy1:
                return None
            frame[sy1:sy2, sx1:sx2] = self.img[sy1 - y : sy2 - y, sx1 - x : sx2 - x]
        else:
            frame[y : y + h, x : x + w] = self.img
        fx1, fy1, fx2, fy2 = self.face
        box = (x + fx1, y + fy1, x + fx2, y + fy2)
        inside = box[0] >= 0 and box[1] >= 0 and box[2] <= fw and box[3] <= fh
        return box if inside else None

    def step(self):
        self.x += self.vx
        self.y += self.vy


def _actors(heads, n, area_w, area_h, rng, speed=3.0):
    """Return up to ``n`` actors whose heads do not overlap at the start (tries 20x n)."""
    out: list[Actor] = []
    for _ in range(20 * n):
        if len(out) == n:
            break
        face_w = int(rng.integers(16, 61))
        a = Actor(heads[int(rng.integers(len(heads)))], face_w, 0, 0,
                  rng.uniform(-speed, speed), rng.uniform(-speed / 3, speed / 3))  # fmt: skip
        a.x = rng.uniform(0, max(1, area_w - a.img.shape[1]))
        a.y = rng.uniform(0, max(1, area_h - a.img.shape[0]))
        if not any(_overlap(a, b) for b in out):
            out.append(a)
    return out


def _overlap(a: Actor, b: Actor, pad: float = 40.0) -> bool:
    """Return True when two heads' rectangles come within ``pad`` px (they move)."""
    ah, aw = a.img.shape[:2]
    bh, bw = b.img.shape[:2]
    return (a.x - pad < b.x + bw and b.x - pad < a.x + aw
            and a.y - pad < b.y + bh and b.y - pad < a.y + ah)  # fmt: skip


def make_clip(kind: str, size, seconds: int, heads, rng):
    """Return (frames, faces per frame as [(box, source)]) for one synthetic clip."""
    w, h = size
    n = seconds * FPS
    frames, truth = [], []
    if kind == "pan":
        wide_w = int(w * 1.8)
        bgs = [cv2.resize(b, (wide_w, h)) for b in _backgrounds(size, seconds // 4 + 1, rng)]
        scene = actors = None
        ox, vx = 0.0, 0.0
        for i in range(n):
            if i % (4 * FPS) == 0:
                scene = bgs[i // (4 * FPS)]
                actors = _actors(heads, 10, wide_w, h, rng, speed=0.5)
                ox = float(rng.uniform(0, wide_w - w))
            if i % (2 * FPS) == 0:
                vx = float(rng.choice([-1, 1]) * rng.uniform(4, 16))
            ox = min(max(0.0, ox + vx), wide_w - w)
            canvas = scene.copy()
            faces = [(b, a.source) for a in actors if (b := a.paste(canvas)) is not None]
            f = np.ascontiguousarray(canvas[:, int(ox) : int(ox) + w])
            frames.append(f)
            truth.append([((b[0] - int(ox), b[1], b[2] - int(ox), b[3]), s) for b, s in faces
                          if b[0] >= int(ox) and b[2] <= int(ox) + w])  # fmt: skip
            for a in actors:
                a.step()
        return frames, truth
    bgs = _backgrounds(size, seconds + 1, rng)
    actors = []
    for i in range(n):
        if i % FPS == 0:  # a cut every second: new scene, new faces
            scene = bgs[i // FPS]
            actors = _actors(heads, int(rng.integers(3, 7)), w, h, rng)
        f = scene.copy()
        faces = [(b, a.source) for a in actors if (b := a.paste(f)) is not None]
        for a in actors:
            a.step()
        frames.append(f)
        truth.append(faces)
    if kind == "damage":
        frames, truth = _damage(frames, truth, rng)
    return frames, truth


def _damage(frames, truth, rng):
    """Return frames with packet-loss damage; a face a damage block covers >= 30 % is dropped
    from the truth (the raw frame no longer shows that face)."""
    out_f, out_t = [], []
    for i, (f, t) in enumerate(zip(frames, truth, strict=True)):
        if rng.random() < 0.05 and out_f:  # repeated frame
            out_f.append(out_f[-1].copy())
            out_t.append(out_t[-1])
            continue
        if rng.random() < 0.10:
            f = f.copy()
            h, w = f.shape[:2]
            hit = np.zeros((h, w), bool)
            for _ in range(int(rng.integers(1, 5))):
                bw, bh = int(rng.integers(32, 160)), int(rng.integers(16, 96))
                x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                if rng.random() < 0.5 and i >= 5:
                    f[y : y + bh, x : x + bw] = frames[i - 5][y : y + bh, x : x + bw]
                else:
                    f[y : y + bh, x : x + bw] = 128
                hit[y : y + bh, x : x + bw] = True
            t = [(b, s) for b, s in t if hit[b[1] : b[3], b[0] : b[2]].mean() < 0.3]
        out_f.append(f)
        out_t.append(t)
    return out_f, out_t


def _write(frames, path):
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (w, h))
    vw.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    for f in frames:
        vw.write(f)
    vw.release()


def _gray64(img, box):
    x1, y1, x2, y2 = (int(v) for v in box)
    g = cv2.cvtColor(img[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    return cv2.resize(g, (64, 64), interpolation=cv2.INTER_AREA)


def _obscured_fraction(result, rules: RedactionRules, shape) -> float:
    """Return the fraction of the frame obscured (boxes with margin; 1 when failed closed)."""
    if result.failed is not None:
        return 1.0
    h, w = shape[:2]
    mask = np.zeros((h // 4 + 1, w // 4 + 1), bool)
    for b in result.boxes:
        x1, y1, x2, y2 = expand_box(b, rules.margin, w, h)
        mask[y1 // 4 : -(-y2 // 4), x1 // 4 : -(-x2 // 4)] = True
    return float(mask.mean())


def scan(path: Path, truth, rules: RedactionRules, name: str) -> dict:
    """Return counts and per-stage CPU ms for one clip through pipeline + JPEG."""
    pipeline = RedactionPipeline(rules, clock=time.thread_time, name=name)
    cap = cv2.VideoCapture(str(path))
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    st = Counter()
    res = Counter()
    leaks_by_size = Counter()
    for faces in truth:
        c0 = time.process_time()
        ok, raw = cap.read()
        c1 = time.process_time()
        if not ok:
            break
        result = pipeline.process(raw)
        c2 = time.process_time()
        enc = cv2.imencode(".jpg", result.frame, params)[1] if result.frame is not None else None
        c3 = time.process_time()
        st["decode"] += c1 - c0
        st["pipeline"] += c2 - c1
        st["encode"] += c3 - c2
        for k, v in pipeline.timings.items():
            st[k] += v / 1000.0
        res["frames"] += 1
        res["failed_closed"] += result.failed is not None
        res["obscured"] += _obscured_fraction(result, rules, raw.shape)
        if result.frame is None:
            res["face_frames"] += len(faces)
            continue
        served = cv2.imdecode(enc, cv2.IMREAD_COLOR)
        raw_jpeg = cv2.imdecode(cv2.imencode(".jpg", raw, params)[1], cv2.IMREAD_COLOR)
        for box, _src in faces:
            if box[2] - box[0] < 16:
                continue
            res["face_frames"] += 1
            ref = _gray64(raw, box)
            if structural_similarity(_gray64(raw_jpeg, box), ref, data_range=255) > 0.6:
                res["control_recognisable"] += 1
            if structural_similarity(_gray64(served, box), ref, data_range=255) > 0.6:
                res["leaked"] += 1
                leaks_by_size[(box[2] - box[0]) // 10 * 10] += 1
    cap.release()
    res.update({f"s_{k}": v for k, v in st.items()})
    res["leaks_by_size"] = dict(leaks_by_size)
    res["stats"] = dict(pipeline.stats)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=12, help="length of each clip (s)")
    ap.add_argument("--sizes", default="1280x720,1920x1080")
    ap.add_argument("--configs", default=",".join(str(i) for i in range(len(CONFIGS))))
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    heads = _heads(rng)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    names = list(CONFIGS)
    chosen = [names[int(i)] for i in args.configs.split(",")]
    print("| config | size | clips | frames | face frames >= 16 px | leaked | control recognisable "
          "| failed closed | obscured | fps (1 core) | ms/frame decode / detect / track / mask / encode |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        clips = []
        for size in sizes:
            for kind in ("cuts", "pan", "damage"):
                frames, truth = make_clip(kind, size, args.seconds, heads, rng)
                path = Path(tmp) / f"{kind}_{size[0]}.avi"
                _write(frames, path)
                clips.append((size, kind, path, truth))
        for cfg in chosen:
            rules = RedactionRules.model_validate(CONFIGS[cfg])
            for size in sizes:
                tot = Counter()
                detail = []
                for csize, kind, path, truth in clips:
                    if csize != size:
                        continue
                    r = scan(path, truth, rules, f"{kind}-{size[0]}")
                    detail.append((kind, r["leaked"], r["face_frames"], r["leaks_by_size"]))
                    for k, v in r.items():
                        if isinstance(v, int | float):
                            tot[k] += v
                n = tot["frames"]
                cpu = tot["s_decode"] + tot["s_pipeline"] + tot["s_encode"]
                det = tot["s_detect_whole"] + tot["s_coverage"] + tot["s_detect_regions"]
                ms = [tot["s_decode"], det, tot["s_track"], tot["s_mask"], tot["s_encode"]]
                print(f"| {cfg} | {size[0]}x{size[1]} | {len(detail)} | {n} | {tot['face_frames']} "
                      f"| {tot['leaked']} | {tot['control_recognisable']} | {tot['failed_closed']} "
                      f"| {100 * tot['obscured'] / n:.0f} % "
                      f"| {n / cpu:.1f} | {' / '.join(f'{1000 * v / n:.1f}' for v in ms)} |",
                      flush=True)  # fmt: skip
                for kind, leaked, faces, by_size in detail:
                    print(f"<!-- {kind}: {leaked}/{faces} leaked, by face width: {by_size} -->")
    print(f"<!-- cpu count {os.cpu_count()}, load {os.getloadavg()} -->")


if __name__ == "__main__":
    main()
