"""What the detectors have seen of a stream, and which regions of a new frame they have not.

A frame is reduced to a grid of small cells (a quarter of the minimum face size, so a face
covers at least 4x4 cells) holding the mean grey level. ``reference`` keeps, per cell, the
value the detectors last saw there (NaN: never seen). A cell whose value moved more than
the threshold since then is *new*: its pixels were not seen by any detection and must be
detected on this frame before they are served. Changes accumulate against the reference,
not against the previous frame, so a slow change (a face turning, light drifting) is caught
once it adds up.

A camera pan moves the whole picture: when most cells are new, the shift between the
reference and the frame is estimated by phase correlation; if shifting the reference
explains the change, the reference (and the tracked boxes, by the caller) move with it and
only the strip that entered the picture is new.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: When more of the frame than this is new, check whether the camera panned (~1 ms).
PAN_CHECK_FRACTION = 0.08
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
    """This frame's new regions (source px), the grid it was measured on, and the pan shift."""

    grid: np.ndarray
    rects: list[Rect]
    new_fraction: float
    shift: tuple[float, float] = (0.0, 0.0)
    whole_frame: bool = False
    #: New specks too small to hold a face (fewer than 4 cells): obscured, not detected.
    specks: list[Rect] = field(default_factory=list)


def merge_rects(rects: list[Rect], slack: float = 1.25) -> list[Rect]:
    """Return ``rects`` with overlapping pairs merged where the union costs little more.

    Two overlapping rectangles become their union when its area is at most ``slack`` times
    the sum of theirs; otherwise both stay (a detector looks at the overlap twice rather than
    at a large empty union).
    """
    out = list(rects)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if not a.intersects(b.x1, b.y1, b.x2, b.y2):
                    continue
                u = a.union(b)
                if u.area <= slack * (a.area + b.area):
                    out[i] = u
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return out


class Coverage:
    """Return the regions of each frame that no detection has seen yet; remember what it saw."""

    def __init__(self, min_face_px: int, threshold: float, burst_fraction: float) -> None:
        self.cell = max(2, min_face_px // 4)
        self.threshold = threshold
        self.burst_fraction = burst_fraction
        self.reference: np.ndarray | None = None
        self._frame_size: tuple[int, int] | None = None

    def reset(self) -> None:
        """Forget everything seen: the next frame is new everywhere."""
        self.reference = None
        self._frame_size = None

    def grid_of(self, frame: np.ndarray) -> np.ndarray:
        """Return the cell grid (float32 mean grey per cell) of a BGR frame."""
        h, w = frame.shape[:2]
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        gw, gh = max(1, -(-w // self.cell)), max(1, -(-h // self.cell))
        return cv2.resize(gray, (gw, gh), interpolation=cv2.INTER_AREA).astype(np.float32)

    def changes(
        self,
        frame: np.ndarray,
        margin_px: int,
        covered: list[tuple[float, float, float, float]] = (),
    ) -> Changes:
        """Return the new regions of ``frame`` (each grown by ``margin_px``) versus the reference.

        Cells wholly inside a ``covered`` box (x1, y1, x2, y2 px; obscured in this frame
        whatever is found there) need no detection and are left out of the regions; they
        stay new until a detection sees them.
        """
        h, w = frame.shape[:2]
        grid = self.grid_of(frame)
        whole = [Rect(0, 0, w, h)]
        ref = self.reference
        if ref is None or ref.shape != grid.shape or self._frame_size != (w, h):
            return Changes(grid, whole, 1.0, whole_frame=True)
        new = self._new_cells(ref, grid)
        fraction = float(new.mean())
        shift = (0.0, 0.0)
        if fraction > PAN_CHECK_FRACTION:
            moved = self._follow_pan(ref, grid)
            if moved is not None:
                new_after = self._new_cells(moved[0], grid)
                if float(new_after.mean()) < fraction:
                    self.reference, new, shift = moved[0], new_after, moved[1]
                    fraction = float(new.mean())
        c = self.cell
        for x1, y1, x2, y2 in covered:
            gx1, gy1 = max(0, -(-int(x1) // c)), max(0, -(-int(y1) // c))
            gx2, gy2 = int(x2) // c, int(y2) // c
            if gx2 > gx1 and gy2 > gy1:
                new[gy1:gy2, gx1:gx2] = False
        uncovered = float(new.mean())
        if uncovered > self.burst_fraction:
            return Changes(grid, whole, fraction, shift, whole_frame=True)
        rects, specks = self._rects(new, margin_px, w, h)
        return Changes(grid, rects, fraction, shift, specks=specks)

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

    def _new_cells(self, ref: np.ndarray, grid: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return ~(np.abs(grid - ref) <= self.threshold)  # NaN (never seen) counts as new

    def _follow_pan(
        self, ref: np.ndarray, grid: np.ndarray
    ) -> tuple[np.ndarray, tuple[float, float]] | None:
        seen = np.isfinite(ref)
        if seen.mean() < 0.5:
            return None
        filled = np.where(seen, ref, float(np.nanmean(ref))).astype(np.float32)
        (dx, dy), response = cv2.phaseCorrelate(filled, grid)
        gh, gw = grid.shape
        if response < 0.1 or (abs(dx) < 0.25 and abs(dy) < 0.25):
            return None
        if abs(dx) > gw / 3 or abs(dy) > gh / 3:
            return None
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        moved = cv2.warpAffine(
            np.where(seen, ref, np.nan).astype(np.float32),
            m,
            (gw, gh),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=float("nan"),
        )
        return moved, (dx * self.cell, dy * self.cell)

    def _rects(
        self, new: np.ndarray, margin_px: int, width: int, height: int
    ) -> tuple[list[Rect], list[Rect]]:
        """Return (regions to detect, specks to obscure) for the new cells."""
        if not new.any():
            return [], []
        c = self.cell
        n, _, stats, _ = cv2.connectedComponentsWithStats(new.astype(np.uint8), connectivity=8)
        rects, specks = [], []
        for x, y, bw, bh, area in stats[1:n]:
            r = Rect(int(x * c), int(y * c), int((x + bw) * c), int((y + bh) * c))
            if area < SPECK_CELLS:
                # a face of min_face_px covers 16 cells: a speck cannot hold one, only reveal
                # a sliver; it is obscured (and stays new) rather than sent to the detectors
                specks.append(r.grown(c, width, height))
            else:
                rects.append(r.grown(margin_px, width, height))
        return merge_rects(rects), specks
