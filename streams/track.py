"""Keep detected boxes alive between detections so obscured objects never flicker into view.

A small IoU tracker with constant-velocity prediction. Detection runs on the regions of a
frame that changed (see ``streams.coverage``): a track inside such a region is matched to
the new detections or, when missed, kept for ``hold_frames`` frames, moved by its velocity
and grown a little per frame of uncertainty. A track outside every changed region covers
pixels that did not change since it was detected, so it stays as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.detectors.base import Box


def iou(a: Box, b: Box) -> float:
    """Return the intersection-over-union of two boxes (0 when disjoint)."""
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One tracked object: last detected box, velocity (px/frame) and frames since a hit."""

    box: Box
    vx: float = 0.0
    vy: float = 0.0
    since_hit: int = 0
    since_update: int = 0

    def predicted(self) -> Box:
        """Return the box moved by the velocity for the frames since the last update."""
        dx, dy = self.vx * self.since_update, self.vy * self.since_update
        b = self.box
        return Box(b.x1 + dx, b.y1 + dy, b.x2 + dx, b.y2 + dy, b.score, b.label)


class BoxTracker:
    """A tracker keeping boxes stable per frame from detections that arrive every few frames."""

    def __init__(
        self, hold_frames: int = 12, growth_per_frame: float = 0.03, max_growth: float = 0.5
    ):
        self.hold_frames = hold_frames
        self.growth_per_frame = growth_per_frame
        self.max_growth = max_growth
        self.tracks: list[Track] = []

    def reset(self) -> None:
        """Forget every track (resolution change, new detector set)."""
        self.tracks.clear()

    def advance(self, frames: int) -> None:
        """Move every moving track on by ``frames`` frames nobody looked at (the reader dropped
        them): its predicted box follows its velocity that much further and grows with the
        uncertainty. A still track is left as it is (its pixels are checked by the caller)."""
        for t in self.tracks:
            if t.vx or t.vy:
                t.since_update += frames
                t.since_hit += frames

    def shift(self, dx: float, dy: float) -> None:
        """Move every track by (dx, dy) px: the camera panned and the picture moved with it."""
        for t in self.tracks:
            b = t.box
            t.box = Box(b.x1 + dx, b.y1 + dy, b.x2 + dx, b.y2 + dy, b.score, b.label)

    def update(self, detections: list[Box], regions: list | None = None) -> list[Box]:
        """Return this frame's boxes after matching ``detections`` to the existing tracks.

        ``regions`` (objects with ``intersects(x1, y1, x2, y2)``) are where the detectors
        looked; a track intersecting none of them is unchanged and kept as detected. None
        means the detectors looked at the whole frame.
        """
        pairs = sorted(
            (
                (iou(t.predicted(), d), ti, di)
                for ti, t in enumerate(self.tracks)
                for di, d in enumerate(detections)
                if t.box.label == d.label
            ),
            reverse=True,
        )
        used_t: set[int] = set()
        used_d: set[int] = set()
        for score, ti, di in pairs:
            if score < 0.05 or ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            t, d = self.tracks[ti], detections[di]
            n = max(1, t.since_update + 1)
            cx_old, cy_old = (t.box.x1 + t.box.x2) / 2, (t.box.y1 + t.box.y2) / 2
            cx_new, cy_new = (d.x1 + d.x2) / 2, (d.y1 + d.y2) / 2
            t.vx = 0.5 * t.vx + 0.5 * (cx_new - cx_old) / n
            t.vy = 0.5 * t.vy + 0.5 * (cy_new - cy_old) / n
            t.box, t.since_hit, t.since_update = d, 0, 0
        unmatched = [d for di, d in enumerate(detections) if di not in used_d]
        kept: list[Track] = []
        for ti, t in enumerate(self.tracks):
            if ti not in used_t and regions is not None:
                p = t.predicted()
                if not any(r.intersects(p.x1, p.y1, p.x2, p.y2) for r in regions):
                    kept.append(t)  # its pixels did not change: the object is still there
                    continue
            if ti not in used_t:
                t.since_hit += 1
                t.since_update += 1
                if t.since_hit > self.hold_frames:
                    continue
            kept.append(t)
        kept.extend(Track(box=d) for d in unmatched)
        self.tracks = kept
        return self.boxes()

    def predict(self) -> list[Box]:
        """Return this frame's boxes when no detection ran (every track advances one frame)."""
        kept = []
        for t in self.tracks:
            t.since_hit += 1
            t.since_update += 1
            if t.since_hit <= self.hold_frames:
                kept.append(t)
        self.tracks = kept
        return self.boxes()

    def boxes(self) -> list[Box]:
        """Return every live track's predicted box, grown by its uncertainty."""
        out = []
        for t in self.tracks:
            b = t.predicted()
            g = min(self.max_growth, self.growth_per_frame * t.since_hit) / 2
            gx, gy = b.width * g, b.height * g
            out.append(Box(b.x1 - gx, b.y1 - gy, b.x2 + gx, b.y2 + gy, b.score, b.label))
        return out
