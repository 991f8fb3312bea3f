"""What the detectors have seen of a stream, and which regions of a new frame they have not.

A frame is reduced to a grid of small cells (a quarter of the minimum face size, so a face
covers at least 4x4 cells) holding the mean grey level and its standard deviation (texture:
a face over an even grey of the same brightness changes the deviation, not the mean).
``reference`` keeps, per cell, the values the detectors last saw there (NaN: never seen).
A cell where either moved more than the threshold since then is *new*: its pixels were not seen by any detection and must be
detected on this frame before they are served. Changes accumulate against the reference,
not against the previous frame, so a slow change (a face turning, light drifting) is caught
once it adds up.

New cells are grouped into rectangles (grown by a context margin) for the detectors; a
component of fewer than ``SPECK_CELLS`` cells cannot hold a face and is obscured instead;
cells under a box that is obscured anyway need no detection (they stay new until seen).
Only a rectangle's core, a margin in from its sides, counts as seen.

A camera pan moves the whole picture: when more than ``PAN_CHECK_FRACTION`` of the cells
are new, the shift between the reference and the frame is estimated by phase correlation;
if shifting the reference explains the change (to within the range of the neighbouring
cells, the shift being sub-cell), the reference (and the tracked boxes, by the caller) move
with it, and only the strip that entered the picture, plus a band of ``EDGE_FACES`` face
sizes that was seen cut by the frame edge, is new.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: When more of the frame than this is new, check whether the camera panned (~1 ms).
PAN_CHECK_FRACTION = 0.08
#: Faces up to this many times ``min_face_px`` entering with a pan are seen whole at least once.
EDGE_FACES = 4
#: Side (cells) of the pieces a sparse component is cut into.
SPLIT_CELLS = 16
#: Connected new cells fewer than this are specks (a min_face_px face covers 16 cells).
SPECK_CELLS = 4


@dataclass(frozen=True)
class Rect:
    """An integer pixel rectangle [x1, x2) x [y1, y2) in source-frame coordinates."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def area(self) -> int:
        """Return the rectangle's area in pixels."""
        return max(0, self.x2 - self.x1) * max(0, self.y2 - self.y1)

    def intersects(self, x1: float, y1: float, x2: float, y2: float) -> bool:
        """Return True when the box (x1, y1, x2, y2) overlaps this rectangle."""
        return x1 < self.x2 and self.x1 < x2 and y1 < self.y2 and self.y1 < y2

    def union(self, other: Rect) -> Rect:
        """Return the smallest rectangle holding both."""
        return Rect(
            min(self.x1, other.x1),
            min(self.y1, other.y1),
            max(self.x2, other.x2),
            max(self.y2, other.y2),
        )

    def grown(self, margin: int, width: int, height: int) -> Rect:
        """Return this rectangle grown by ``margin`` px per side, clipped to the frame."""
        return Rect(
            max(0, self.x1 - margin),
            max(0, self.y1 - margin),
            min(width, self.x2 + margin),
            min(height, self.y2 + margin),
        )


@dataclass
class Changes:
    """Which cells of a frame are new (never seen, or changed since seen) and the pan shift."""

    grid: np.ndarray
    new: np.ndarray
    new_fraction: float
    shift: tuple[float, float] = (0.0, 0.0)
    everything: bool = False


@dataclass
class Regions:
    """Where the region detectors must look on this frame, and what is obscured instead."""

    rects: list[Rect]
    whole_frame: bool
    #: New specks too small to hold a face (fewer than 4 cells): obscured, not detected.
    specks: list[Rect] = field(default_factory=list)


def merge_rects(rects: list[Rect], slack: float = 1.25, near: int = 0) -> list[Rect]:
    """Return ``rects`` with overlapping (or ``near``-px close) pairs merged where the union
    costs little more.

    Two such rectangles become their union when its area is at most ``slack`` times the
    area they cover together; otherwise both stay (a detector looks at the overlap twice
    rather than at a large empty union). ``near``: rectangles that close are joined too, so
    an object whose middle did not change (a face moving over its own even skin) is not cut
    in two crops, neither of which holds it whole.
    """
    out = list(rects)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if not a.intersects(b.x1 - near, b.y1 - near, b.x2 + near, b.y2 + near):
                    continue
                u = a.union(b)
                ix = max(0, min(a.x2, b.x2) - max(a.x1, b.x1))
                iy = max(0, min(a.y2, b.y2) - max(a.y1, b.y1))
                if u.area <= slack * (a.area + b.area - ix * iy):
                    out[i] = u
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return out


class Coverage:
    """A memory of what the detections saw: the regions of each frame no detection has seen yet."""

    def __init__(self, min_face_px: int, threshold: float, burst_fraction: float) -> None:
        self.cell = max(2, min_face_px // 4)
        self.edge_px = EDGE_FACES * min_face_px
        self.threshold = threshold
        self.burst_fraction = burst_fraction
        self.reference: np.ndarray | None = None
        self._frame_size: tuple[int, int] | None = None

    def reset(self) -> None:
        """Forget everything seen: the next frame is new everywhere."""
        self.reference = None
        self._frame_size = None

    def grid_of(self, frame: np.ndarray) -> np.ndarray:
        """Return the cell grid of a BGR frame: (rows, cols, 2) float32, mean grey and its
        standard deviation per cell.

        The deviation catches a change that keeps the mean: a face (dark eyes, light skin)
        appearing over an even grey of the same average brightness.
        """
        h, w = frame.shape[:2]
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)
        gw, gh = max(1, -(-w // self.cell)), max(1, -(-h // self.cell))
        mean = cv2.resize(gray, (gw, gh), interpolation=cv2.INTER_AREA)
        mean_sq = cv2.resize(gray * gray, (gw, gh), interpolation=cv2.INTER_AREA)
        std = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))
        return np.dstack([mean, std])

    def changes(self, frame: np.ndarray) -> Changes:
        """Return which cells of ``frame`` are new versus the reference (following a pan)."""
        h, w = frame.shape[:2]
        grid = self.grid_of(frame)
        ref = self.reference
        if ref is None or ref.shape != grid.shape or self._frame_size != (w, h):
            return Changes(grid, np.ones(grid.shape[:2], bool), 1.0, everything=True)
        new = self._new_cells(ref, grid)
        fraction = float(new.mean())
        shift = (0.0, 0.0)
        if fraction > PAN_CHECK_FRACTION:
            moved = self._follow_pan(ref, grid)
            if moved is not None:
                new_after = self._new_cells(moved[0], grid, subcell=True)
                if float(new_after.mean()) < fraction:
                    self.reference, new, shift = moved[0], new_after, moved[1]
                    fraction = float(new.mean())
        return Changes(grid, new, fraction, shift)

    def regions(
        self,
        changes: Changes,
        margin_px: int,
        width: int,
        height: int,
        covered: list[tuple[float, float, float, float]] = (),
    ) -> Regions:
        """Return the rectangles to detect (new cells grown by ``margin_px``) and the specks.

        Cells wholly inside a ``covered`` box (x1, y1, x2, y2 px; obscured in this frame
        whatever is found there) need no detection and are left out; they stay new until a
        detection sees them. More than ``burst_fraction`` new: the whole frame.
        """
        whole = Regions([Rect(0, 0, width, height)], True)
        if changes.everything:
            return whole
        new = changes.new.copy()
        c = self.cell
        for x1, y1, x2, y2 in covered:
            gx1, gy1 = max(0, -(-int(x1) // c)), max(0, -(-int(y1) // c))
            gx2, gy2 = int(x2) // c, int(y2) // c
            if gx2 > gx1 and gy2 > gy1:
                new[gy1:gy2, gx1:gx2] = False
        if float(new.mean()) > self.burst_fraction:
            return whole
        rects, specks = self._rects(new, margin_px, width, height)
        return Regions(rects, False, specks)

    def mark_seen(
        self, grid: np.ndarray, rects: list[Rect], margin_px: int, width: int, height: int
    ) -> None:
        """Record that the detectors saw ``grid``'s cells inside ``rects`` on this frame.

        Only a rectangle's core counts: ``margin_px`` in from each side that is not the frame's
        edge, so every cell marked seen had that much context around it in the detector's input.
        """
        if self.reference is None or self.reference.shape != grid.shape:
            self.reference = np.full(grid.shape, np.nan, np.float32)
            self._frame_size = (width, height)
        c = self.cell
        for r in rects:
            x1 = r.x1 + margin_px if r.x1 > 0 else 0
            y1 = r.y1 + margin_px if r.y1 > 0 else 0
            x2 = r.x2 - margin_px if r.x2 < width else width
            y2 = r.y2 - margin_px if r.y2 < height else height
            # only cells wholly inside the core count as seen
            gx1, gy1 = -(-x1 // c), -(-y1 // c)
            gx2 = x2 // c if x2 < width else grid.shape[1]
            gy2 = y2 // c if y2 < height else grid.shape[0]
            if gx2 > gx1 and gy2 > gy1:
                self.reference[gy1:gy2, gx1:gx2] = grid[gy1:gy2, gx1:gx2]

    def _new_cells(self, ref: np.ndarray, grid: np.ndarray, subcell: bool = False) -> np.ndarray:
        """Return the cells whose value moved more than the threshold (NaN: never seen: new).

        ``subcell``: after a pan the shift is known to a fraction of a cell, and the shifted
        reference mixes neighbouring cells; a cell then counts as new only when its value is
        outside the range of the 3x3 reference cells around it, widened by the threshold.
        """
        with np.errstate(invalid="ignore"):
            new = ~(np.abs(grid - ref) <= self.threshold)  # per channel
        if not subcell:
            return new.any(axis=2)
        unseen = ~np.isfinite(ref)
        kernel = np.ones((3, 3), np.uint8)
        lo = cv2.erode(np.where(unseen, 1e6, ref).astype(np.float32), kernel)
        hi = cv2.dilate(np.where(unseen, -1e6, ref).astype(np.float32), kernel)
        outside = (grid < lo - self.threshold) | (grid > hi + self.threshold)
        return (unseen | (new & outside)).any(axis=2)

    def _follow_pan(
        self, ref: np.ndarray, grid: np.ndarray
    ) -> tuple[np.ndarray, tuple[float, float]] | None:
        seen = np.isfinite(ref[..., 0])
        if seen.mean() < 0.5:
            return None
        fill = np.nanmean(ref, axis=(0, 1))
        filled = np.where(seen[..., None], ref, fill).astype(np.float32)
        (dx, dy), response = cv2.phaseCorrelate(
            np.ascontiguousarray(filled[..., 0]), np.ascontiguousarray(grid[..., 0])
        )
        gh, gw = grid.shape[:2]
        if response < 0.1 or (abs(dx) < 0.25 and abs(dy) < 0.25):
            return None
        if abs(dx) > gw / 3 or abs(dy) > gh / 3:
            return None
        # a near-zero component would smear the NaN border into a whole edge row or column
        dx = 0.0 if abs(dx) < 0.25 else dx
        dy = 0.0 if abs(dy) < 0.25 else dy
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        # replicate at the border (a NaN border leaks into the last row through a 0 weight),
        # then mark unseen what came from outside or from unseen cells
        moved = cv2.warpAffine(
            filled, m, (gw, gh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        unseen = cv2.warpAffine(
            (~seen).astype(np.float32),
            m,
            (gw, gh),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=1.0,
        )
        moved[unseen > 0.01] = np.nan
        # cells that were near the edge the picture enters from were seen with only part of
        # their surroundings (a face cut by the frame edge): seen again, with what now joins
        # them, until they are EDGE_FACES face sizes inside the view
        c = self.cell
        bx = -(-int(abs(dx) * c + self.edge_px) // c) if dx else 0
        by = -(-int(abs(dy) * c + self.edge_px) // c) if dy else 0
        if dx > 0:
            moved[:, :bx] = np.nan
        elif dx < 0:
            moved[:, gw - bx :] = np.nan
        if dy > 0:
            moved[:by, :] = np.nan
        elif dy < 0:
            moved[gh - by :, :] = np.nan
        return moved, (dx * c, dy * c)

    def _rects(
        self, new: np.ndarray, margin_px: int, width: int, height: int
    ) -> tuple[list[Rect], list[Rect]]:
        """Return (regions to detect, specks to obscure) for the new cells.

        A sparse component (an L-shaped strip after a diagonal pan, a ring) is cut into
        pieces of ``SPLIT_CELLS`` squares so its bounding box does not take in the whole
        frame; adjacent compact pieces are merged again by ``merge_rects``.
        """
        if not new.any():
            return [], []
        c = self.cell
        n, labels, stats, _ = cv2.connectedComponentsWithStats(new.astype(np.uint8), connectivity=8)
        rects, specks = [], []
        for i in range(1, n):
            x, y, bw, bh, area = (int(v) for v in stats[i])
            if area < SPECK_CELLS:
                # a face of min_face_px covers 16 cells: a speck cannot hold one, only reveal
                # a sliver; it is obscured (and stays new) rather than sent to the detectors
                specks.append(
                    Rect(x * c, y * c, (x + bw) * c, (y + bh) * c).grown(c, width, height)
                )
                continue
            pieces = [(x, y, bw, bh)]
            if area < 0.35 * bw * bh and max(bw, bh) > SPLIT_CELLS:
                pieces = []
                for ty in range(y, y + bh, SPLIT_CELLS):
                    for tx in range(x, x + bw, SPLIT_CELLS):
                        tile = labels[ty : ty + SPLIT_CELLS, tx : tx + SPLIT_CELLS] == i
                        if tile.any():
                            ys, xs = np.nonzero(tile)
                            pieces.append((tx + xs.min(), ty + ys.min(), xs.max() - xs.min() + 1,
                                           ys.max() - ys.min() + 1))  # fmt: skip
            for px, py, pw, ph in pieces:
                r = Rect(int(px * c), int(py * c), int((px + pw) * c), int((py + ph) * c))
                rects.append(r.grown(margin_px, width, height))
        return merge_rects(rects, near=margin_px), specks
