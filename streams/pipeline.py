"""Per-frame pipeline: find what is new -> detect it -> track -> redact, failing closed.

``RedactionPipeline.process(frame)`` returns a ``FrameResult`` whose ``frame`` is either the
redacted frame, a fully pixelated frame, or None (withheld). It never returns the input frame
unprocessed: every failure (detector error, timeout or malformed output, warm-up, bad input)
takes the fail-closed branch, is counted in ``stats`` and logged.

Every served pixel was covered by a detection that saw it, by construction:

- ``streams.coverage`` keeps, per cell of a quarter of ``min_face_px``, the grey level the
  detectors last saw. On each frame the cells that moved past ``change_threshold`` (or were
  never seen) are *new*; they are grown by a context margin into rectangles, and every
  region detector runs on those rectangles of THIS frame before it is served. Pixels outside
  them are, to within the threshold, the pixels a detection already saw; tracked boxes there
  stay where they were. So a face cannot appear between detections: the frame where it
  appears is the frame where it is detected. The first frame, a resolution change and a
  rule change start with nothing seen, so the whole frame is detected before it leaves.
- A scene cut, a decoder recovering from packet loss, or any burst that makes more than
  ``burst_fraction`` of the frame new runs detection on the whole frame. A PTZ pan is
  followed (phase correlation of the grids): the reference and the tracks move with the
  picture, and only the strip entering the view (and a band seen cut by the edge) is new.
- What is obscured anyway needs no detection: cells under the boxes of the whole-frame
  detectors and under tracked boxes (with the redaction margin) stay new but are not sent
  to the region detectors; specks too small to hold a face are obscured, not detected. A
  box that spared cells is obscured on that frame even when the tracker then shrinks, moves
  or drops it (a person box never stands in for a face detection: it only hides pixels on
  the frames it is drawn on, and never marks them seen).
- Frames may carry their number in the source (``seq``). A gap since the last analysed
  frame (frames dropped by a slow consumer, lost by the decoder) moves tracks on by the
  frames missed, and only that frame's own detections spare cells; a number that goes back
  (or ``restart()``, a reconnect) starts a new run whose first frame is detected whole.
- Region detectors see the frame at a scale where a ``min_face_px`` face at SOURCE
  resolution is above the detector's own minimum (``min_face_px`` attribute, e.g.
  CenterFace 20 px: 16 px faces are searched at 1.25x). No fixed-width downscale. Many
  small regions are packed onto one canvas: one detector call instead of one each. A box
  cut by a region's inner edge (an object reaching out of the region) is detected again in
  a region grown by its size, so a track never shrinks to part of a face.
- Detectors that must see every frame (``sees_every_frame``: MOG2 motion) run on the whole
  frame every frame, first.
- A detector's output is checked: anything but a list of ``Box`` with finite coordinates,
  x2 > x1, y2 > y1 and some part inside the frame is a failure (``detector_output``), like
  an exception or a timeout. Boxes partly outside are clipped.

Why not "detect every k-th frame and track": a face that appears between two detections is
served raw (measured before this design: 15 of 79 face frames from a file camera). Why not
"detect every whole frame": CenterFace at the 16 px scale costs ~110-200 CPU ms per 720p
frame. Detecting what changed costs ~13 ms per 720p frame on vtest.avi with the default
rules (42 fps per core) and leaks no face in bench_leak_scan (bench/RESULTS.md); the leaks
left in faces-only rules are detector misses of 16-19 px faces, not timing. ``detect_every``
is accepted for stored rules and has no effect.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from streams.coverage import Coverage, Rect, merge_rects
from streams.detectors import DETECTORS, Box, Detector, DetectorError
from streams.redact import apply_masks, expand_box, fail_closed_frame, redact_frame
from streams.rules import RedactionRules
from streams.track import BoxTracker

log = logging.getLogger(__name__)

#: Small regions are packed onto a canvas this wide for one detector call.
PACK_WIDTH = 640
#: Black gutter (px) between packed regions and around the canvas.
PACK_GAP = 16
#: A box this close (px) to a region's inner edge counts as cut by it (box regression is not
#: pixel-exact, least of all after scaling).
CUT_PX = 4


class DetectionTimeout(RuntimeError):
    """A detection pass took longer than the rule's ``detector_timeout_ms``."""


class MalformedDetection(DetectorError):
    """A detector returned something that is not a list of sane boxes; the frame fails closed."""


@dataclass
class FrameResult:
    """One processed frame and what was applied to it.

    ``frame`` is redacted, fully pixelated (``failed`` names why) or None when withheld.
    ``applied`` names the targets whose detection covered every pixel of this frame and
    whose boxes were redacted (``"faces"``, ``"plates"``, ``"persons"``), for truthful
    per-frame ``X-Redacted`` markers (``streams.frames``); empty when the frame failed closed
    (it is obscured as a whole instead). Privacy masks are the rule's: burned into every
    frame, failed-closed ones too. ``detected`` is True for every redacted frame: each of its
    pixels was seen by a detection, on this frame or, unchanged, on an earlier one.
    ``regions`` are the rectangles the region detectors ran on this frame (the whole frame
    after a cut; none when nothing changed).
    """

    frame: np.ndarray | None
    boxes: list[Box] = field(default_factory=list)
    failed: str | None = None
    detected: bool = False
    applied: frozenset[str] = frozenset()
    regions: list[Rect] = field(default_factory=list)


def rules_for_still(rules: RedactionRules) -> RedactionRules:
    """Return ``rules`` for one still image: motion-based person detection, which needs a
    video to learn a background from, is replaced by OpenCV's HOG people detector, and the
    detection deadline is the longest allowed (a still has no frame rate to keep up with; a
    loaded machine must not turn an image into a fully pixelated one)."""
    data = rules.model_dump(mode="json")
    data["detector_timeout_ms"] = 60_000  # the longest RedactionRules allows
    if "persons" in rules.targets:
        det = DETECTORS.create(rules.detector_config("persons"))
        if getattr(det, "sees_every_frame", False):
            data["detectors"]["persons"] = {"type": "hog"}
    return RedactionRules.model_validate(data)


def check_boxes(found: object, width: int, height: int, where: str) -> list[Box]:
    """Return ``found`` as boxes clipped to a ``width`` x ``height`` frame; raise if malformed.

    Malformed: not a list/tuple of ``Box``; a coordinate or score that is not a finite real
    number; x2 <= x1 or y2 <= y1 (inverted or empty); a box wholly outside the frame.
    """
    if not isinstance(found, list | tuple):
        raise MalformedDetection(f"{where} returned {type(found).__name__}, not a list of boxes")
    out = []
    for b in found:
        if not isinstance(b, Box):
            raise MalformedDetection(f"{where} returned a {type(b).__name__}, not a Box")
        vals = (b.x1, b.y1, b.x2, b.y2, b.score)
        if not all(
            isinstance(v, int | float | np.integer | np.floating)
            and not isinstance(v, bool)
            and math.isfinite(v)
            for v in vals
        ):
            raise MalformedDetection(f"{where} returned a box with a non-finite value: {b}")
        if not (b.x2 > b.x1 and b.y2 > b.y1):
            raise MalformedDetection(f"{where} returned an inverted or empty box: {b}")
        if b.x2 <= 0 or b.y2 <= 0 or b.x1 >= width or b.y1 >= height:
            raise MalformedDetection(f"{where} returned a box outside the {width}x{height} frame")
        out.append(
            Box(
                max(0.0, float(b.x1)),
                max(0.0, float(b.y1)),
                min(float(width), float(b.x2)),
                min(float(height), float(b.y2)),
                float(b.score),
                str(b.label),
            )
        )
    return out


class RedactionPipeline:
    """The redaction of one stream: detector, coverage and tracker state, frame by frame."""

    def __init__(
        self,
        rules: RedactionRules | None = None,
        *,
        detector_factory: Callable[[object], Detector] = DETECTORS.create,
        clock: Callable[[], float] = time.perf_counter,
        name: str = "stream",
        enforce_deadline: bool = True,
    ) -> None:
        self.name = name
        #: False for offline work (a file export can wait): a slow detection is not a failure.
        self.enforce_deadline = enforce_deadline
        self._factory = detector_factory
        self._clock = clock
        self.stats: Counter[str] = Counter()
        self.rules = rules or RedactionRules()
        self.tracker = BoxTracker(self.rules.hold_frames)
        self.coverage = Coverage(16, 10.0, 0.4)
        self.detectors: dict[str, Detector] = {}
        self._detector_key: tuple | None = None
        self._every_frame_labels: set[str] = set()
        self._since_full = 0
        self._shape: tuple[int, ...] | None = None
        #: Source frame number of the last frame the detectors analysed (None: none yet).
        self._last_seq: int | None = None
        #: Milliseconds per stage of the last frame (coverage, detect, track, mask).
        self.timings: dict[str, float] = {}
        #: Milliseconds each region detector took on the last frame, by target.
        self.target_ms: dict[str, float] = {}
        self.update_rules(self.rules, force=True)

    # -- rules ------------------------------------------------------------------------------
    def update_rules(self, rules: RedactionRules, *, force: bool = False) -> None:
        """Switch to ``rules`` from the next frame; detection restarts when detection changed."""
        key = tuple(sorted((t, rules.detectors[t].model_dump_json()) for t in rules.targets))
        if key != self._detector_key:
            detectors = {}
            for target in sorted(rules.targets):
                try:
                    detectors[target] = self._factory(rules.detector_config(target))
                except Exception:  # noqa: BLE001 - any construction failure must fail closed
                    log.exception(
                        "%s: cannot build the %s detector; frames fail closed", self.name, target
                    )
                    self.stats["detector_build_error"] += 1
                    detectors[target] = _BrokenDetector(target)
            self.detectors = detectors
            self._every_frame_labels = {
                label
                for det in detectors.values()
                if getattr(det, "sees_every_frame", False)
                for label in _labels_of(det)
            }
            self._detector_key = key
            force = True
        gate = (rules.min_face_px, rules.change_threshold, rules.burst_fraction)
        old = (self.rules.min_face_px, self.rules.change_threshold, self.rules.burst_fraction)
        if force or gate != old:
            # nothing seen under the new rules yet: the next frame is detected as a whole
            self.coverage = Coverage(*gate)
            self.tracker.reset()
        self.tracker.hold_frames = rules.hold_frames
        self.rules = rules

    # -- frames -----------------------------------------------------------------------------
    @property
    def learns_from_frames(self) -> bool:
        """Return True when a detector learns from the frames it sees (a background model)."""
        return any(callable(getattr(d, "learn", None)) for d in self.detectors.values())

    def warm_up(self, frames: Iterable[np.ndarray]) -> int:
        """Return how many of ``frames`` the learning detectors (MOG2's background model)
        learned from, without detecting or serving anything.

        A file is read ahead this way before its first frame is redacted, so motion is
        judged against a background learned from the clip, not from its first few frames
        (a person walking from the start was only partly boxed, and the first frames failed
        closed while the model warmed up).
        """
        learners = [d.learn for d in self.detectors.values() if callable(getattr(d, "learn", None))]
        n = 0
        for frame in frames:
            if not learners:
                break
            if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.dtype == np.uint8:
                for learn in learners:
                    learn(frame)
                n += 1
        return n

    def restart(self) -> None:
        """Start a new run of the stream (a reconnect): the next frame is detected whole."""
        self.stats["restarts"] += 1
        self.coverage.reset()
        self.tracker.reset()
        self._last_seq = None

    def process(self, frame: np.ndarray | None, seq: int | None = None) -> FrameResult:
        """Return the redacted (or fail-closed) version of ``frame``; never ``frame`` itself.

        ``seq``: the frame's number in its source (the reader's count, dropped frames
        included). Without it, frames are taken as consecutive. A gap since the last frame
        the detectors analysed (frames dropped by a slow consumer or lost by the decoder)
        moves tracks on by the frames missed and makes this frame's changes be detected even
        under tracked boxes (predictions across a gap spare nothing); a number that goes back
        starts a new run (``restart``).
        """
        rules = self.rules
        self.stats["frames"] += 1
        gap = 0
        if seq is not None and self._last_seq is not None:
            if seq <= self._last_seq:
                self.restart()
            else:
                gap = seq - self._last_seq - 1
        if (
            not isinstance(frame, np.ndarray)
            or frame.ndim != 3
            or frame.shape[2] != 3
            or frame.size == 0
            or frame.dtype != np.uint8
        ):
            return self._fail("bad_frame", None)
        if frame.shape != self._shape:
            if self._shape is not None:
                log.info("%s: resolution changed %s -> %s", self.name, self._shape, frame.shape)
                self.stats["resolution_changes"] += 1
            self._shape = frame.shape
            self.tracker.reset()
            self.coverage.reset()
        h, w = frame.shape[:2]
        t0 = self._clock()
        margin = max(2 * rules.min_face_px, 24)
        try:
            # whole-frame detectors first: what they box is obscured anyway, so the region
            # detectors need not look there (it stays new until one does)
            every = self._detect_every_frame(frame)
        except Exception as exc:  # noqa: BLE001 - every detector failure fails closed
            return self._detector_failure(frame, exc)
        if any(not getattr(d, "ready", True) for d in self.detectors.values()):
            return self._fail("warmup", frame)  # before the costly region detection
        t1 = self._clock()
        changes = self.coverage.changes(frame)
        self._since_full += 1 + gap
        if gap:
            self.stats["gaps"] += 1
            self.stats["frames_skipped"] += gap
            self.tracker.advance(gap)
        if changes.shift != (0.0, 0.0):
            self.tracker.shift(*changes.shift)
            self.stats["pans_followed"] += 1
        # obscured in this frame whatever a detector would say: the whole-frame detectors'
        # boxes and the tracked boxes, with the margin ``redact_frame`` obscures around them
        # (a face moving inside its obscured area needs no new detection). They spare pixels
        # from detection on THIS frame only, so each is obscured on this frame even when the
        # tracker drops or moves it below; they never mark a pixel seen. After a gap the
        # tracked boxes are guesses across frames nobody saw: only this frame's own spare.
        sparing = every + ([] if gap else self.tracker.boxes())
        covered = [expand_box(b, rules.margin, w, h) for b in sparing]
        regions = self.coverage.regions(changes, margin, w, h, covered)
        whole = regions.whole_frame or self._since_full >= rules.refresh_every
        rects = [Rect(0, 0, w, h)] if whole else self._with_tracks(regions.rects, margin, w, h)
        t2 = self._clock()
        try:
            found = every + self._detect_regions(frame, rects, rules, margin)
        except Exception as exc:  # noqa: BLE001 - every detector failure fails closed
            return self._detector_failure(frame, exc)
        t3 = self._clock()
        boxes = self.tracker.update(found, None if whole else rects)
        self.coverage.mark_seen(changes.grid, rects, margin, w, h)
        if seq is not None:
            self._last_seq = seq
        elapsed_ms = (t3 - t0) * 1000.0
        if self.enforce_deadline and elapsed_ms > rules.detector_timeout_ms:
            # too late to serve, but what the detectors saw is valid: keep it, so the next
            # frame needs only its changes detected (no timeout spiral on a loaded machine)
            exc = DetectionTimeout(
                f"detection took {elapsed_ms:.0f} ms > {rules.detector_timeout_ms} ms"
            )
            return self._fail("detector_timeout", frame, exc)
        if whole:
            self._since_full = 0
            self.stats["whole_frame_detections"] += 1
        if rects:
            self.stats["region_detections"] += 1
        if not whole:
            boxes = boxes + _no_longer_obscured(sparing, covered, boxes, rects, rules, w, h)
            boxes = boxes + [Box(r.x1, r.y1, r.x2, r.y2, 1.0, "unseen") for r in regions.specks]
        t4 = self._clock()
        try:
            out = redact_frame(frame, boxes, rules)
        except Exception as exc:  # noqa: BLE001 - a redaction bug must not leak the frame
            return self._fail("redact_error", frame, exc)
        t5 = self._clock()
        self.timings = {
            "detect_whole": (t1 - t0) * 1e3,
            "coverage": (t2 - t1) * 1e3,
            "detect_regions": (t3 - t2) * 1e3,
            "track": (t4 - t3) * 1e3,
            "mask": (t5 - t4) * 1e3,
        }
        self.stats["redacted"] += 1
        # every pixel was seen by a detection (this frame's or an earlier one of the same
        # pixels), so the frame counts as detected: it may serve as a snapshot
        return FrameResult(out, boxes, None, True, frozenset(self.detectors), rects)

    def _with_tracks(self, rects: list[Rect], margin: int, w: int, h: int) -> list[Rect]:
        """Return ``rects`` grown to hold every tracked box they touch (so it is seen whole).

        Only boxes of region detectors count: a whole-frame detector saw the whole frame.
        """
        if not rects:
            return rects
        grown = list(rects)
        for b in self.tracker.boxes():
            if b.label in self._every_frame_labels:
                continue
            for i, r in enumerate(grown):
                if r.intersects(b.x1, b.y1, b.x2, b.y2):
                    box_rect = Rect(int(b.x1), int(b.y1), math.ceil(b.x2), math.ceil(b.y2))
                    grown[i] = r.union(box_rect.grown(margin, w, h))
        return merge_rects(grown, near=margin)

    def _detector_failure(self, frame: np.ndarray, exc: Exception) -> FrameResult:
        if isinstance(exc, DetectionTimeout):
            return self._fail("detector_timeout", frame, exc)
        if isinstance(exc, MalformedDetection):
            return self._fail("detector_output", frame, exc)
        return self._fail("detector_error", frame, exc)

    def _detect_every_frame(self, frame: np.ndarray) -> list[Box]:
        """Return the boxes of the detectors that see every whole frame (MOG2 motion)."""
        h, w = frame.shape[:2]
        found: list[Box] = []
        for target, det in self.detectors.items():
            if getattr(det, "sees_every_frame", False):
                found.extend(check_boxes(det.detect(frame), w, h, f"the {target} detector"))
        return found

    def _detect_regions(
        self, frame: np.ndarray, rects: list[Rect], rules: RedactionRules, margin: int
    ) -> list[Box]:
        """Return the region detectors' boxes in ``rects``; raise on bad output.

        A box cut by a region's inner edge is an object that goes on outside the region (a
        face whose middle did not change, so only its edges were new): it is detected again
        in a region grown around it by its own size, so the track gets the whole object.
        """
        h, w = frame.shape[:2]
        found: list[Box] = []
        for target, det in self.detectors.items():
            if getattr(det, "sees_every_frame", False):
                continue
            scale = (getattr(det, "min_face_px", 0) or rules.min_face_px) / rules.min_face_px
            ts = self._clock()
            boxes = self._detect_in(det, frame, rects, scale, target)
            cut = [b for b in boxes if _cut_by_region(b, rects, w, h)]
            if cut:
                self.stats["cut_boxes_redetected"] += len(cut)
                grown = [
                    Rect(int(b.x1), int(b.y1), math.ceil(b.x2), math.ceil(b.y2)).grown(
                        int(max(b.width, b.height)) + margin, w, h
                    )
                    for b in cut
                ]
                again = self._detect_in(det, frame, merge_rects(grown, near=margin), scale, target)
                # keep a cut box too unless the second look found something over it
                kept = [b for b in cut if not any(_overlap(b, a) for a in again)]
                boxes = [b for b in boxes if b not in cut] + again + kept
            found.extend(boxes)
            self.target_ms[target] = (self._clock() - ts) * 1e3
        return found

    def _detect_in(
        self, det: Detector, frame: np.ndarray, rects: list[Rect], scale: float, target: str
    ) -> list[Box]:
        """Return ``det``'s boxes in ``rects`` (small ones packed onto one canvas)."""
        found: list[Box] = []
        small = [r for r in rects if max(r.x2 - r.x1, r.y2 - r.y1) * scale < PACK_WIDTH / 2]
        if len(small) > 1:
            found.extend(self._detect_packed(det, frame, small, scale, target))
        else:
            small = []
        for r in rects:
            if r not in small:
                found.extend(self._detect_region(det, frame, r, scale, target))
        return found

    @staticmethod
    def _detect_region(
        det: Detector, frame: np.ndarray, r: Rect, scale: float, target: str
    ) -> list[Box]:
        crop = _scaled(frame[r.y1 : r.y2, r.x1 : r.x2], scale)
        ch, cw = crop.shape[:2]
        boxes = check_boxes(det.detect(crop), cw, ch, f"the {target} detector")
        return [_to_frame(b, scale, r.x1, r.y1) for b in boxes]

    @staticmethod
    def _detect_packed(
        det: Detector, frame: np.ndarray, rects: list[Rect], scale: float, target: str
    ) -> list[Box]:
        """Return boxes found in ``rects``, packed onto one canvas for a single detector call.

        Many small regions cost one call instead of one each (a call has a fixed cost); a
        ``PACK_GAP`` px black gutter keeps regions apart. A box is given to the region holding
        its centre and clipped to it.
        """
        crops = [_scaled(frame[r.y1 : r.y2, r.x1 : r.x2], scale) for r in rects]
        places, cw, ch = _shelf_pack([c.shape[1::-1] for c in crops], PACK_WIDTH, PACK_GAP)
        canvas = np.zeros((ch, cw, 3), np.uint8)
        for crop, (x, y) in zip(crops, places, strict=True):
            canvas[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
        boxes = check_boxes(det.detect(canvas), cw, ch, f"the {target} detector")
        out = []
        for b in boxes:
            cx, cy = (b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2
            for crop, (x, y), r in zip(crops, places, rects, strict=True):
                h, w = crop.shape[:2]
                if x <= cx < x + w and y <= cy < y + h:
                    inner = Box(
                        max(0.0, b.x1 - x),
                        max(0.0, b.y1 - y),
                        min(float(w), b.x2 - x),
                        min(float(h), b.y2 - y),
                        b.score,
                        b.label,
                    )
                    out.append(_to_frame(inner, scale, r.x1, r.y1))
                    break
        return out

    def _fail(
        self, reason: str, frame: np.ndarray | None, exc: BaseException | None = None
    ) -> FrameResult:
        # nothing is marked seen: the cells stay new, so the next frame is detected again
        self.stats[reason] += 1
        self.stats["failed_closed"] += 1
        n = self.stats[reason]
        if n <= 3 or n % 100 == 0:  # log the first few and then every 100th, not every frame
            log.warning("%s: frame failed closed (%s #%d): %s", self.name, reason, n, exc or "")
        if frame is None or self.rules.on_failure == "withhold":
            self.stats["withheld"] += 1
            return FrameResult(None, [], reason)
        try:
            out = fail_closed_frame(frame)
            apply_masks(out, self.rules.masks, self.rules)  # a mask never lapses, not even here
            return FrameResult(out, [], reason)
        except Exception:  # noqa: BLE001 - last resort: withhold
            self.stats["withheld"] += 1
            return FrameResult(None, [], reason)


def _scaled(img: np.ndarray, scale: float) -> np.ndarray:
    """Return ``img`` resized by ``scale`` (linear up, area down); itself at 1.0."""
    if scale == 1.0:
        return img
    interp = cv2.INTER_LINEAR if scale > 1.0 else cv2.INTER_AREA
    return cv2.resize(img, None, fx=scale, fy=scale, interpolation=interp)


def _to_frame(b: Box, scale: float, ox: int, oy: int) -> Box:
    """Return box ``b`` of a crop scaled by ``scale`` at (ox, oy) in frame pixels."""
    return Box(
        b.x1 / scale + ox, b.y1 / scale + oy, b.x2 / scale + ox, b.y2 / scale + oy, b.score, b.label
    )


def _shelf_pack(
    sizes: list[tuple[int, int]], width: int, gap: int
) -> tuple[list[tuple[int, int]], int, int]:
    """Return (x, y) places for (w, h) sizes packed in rows, and the canvas width and height."""
    width = max([width] + [w + 2 * gap for w, _ in sizes])
    places: list[tuple[int, int]] = [(0, 0)] * len(sizes)
    x, y, row_h = gap, gap, 0
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i][1]):
        w, h = sizes[i]
        if x + w + gap > width:
            x, y, row_h = gap, y + row_h + gap, 0
        places[i] = (x, y)
        x += w + gap
        row_h = max(row_h, h)
    return places, width, y + row_h + gap


def _cut_by_region(b: Box, rects: list[Rect], width: int, height: int) -> bool:
    """Return True when ``b`` touches an inner edge (not the frame's) of the region it is in."""
    cx, cy = (b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2
    for r in rects:
        if r.x1 <= cx < r.x2 and r.y1 <= cy < r.y2:
            return (
                (r.x1 > 0 and b.x1 <= r.x1 + CUT_PX)
                or (r.y1 > 0 and b.y1 <= r.y1 + CUT_PX)
                or (r.x2 < width and b.x2 >= r.x2 - CUT_PX)
                or (r.y2 < height and b.y2 >= r.y2 - CUT_PX)
            )
    return False


def _no_longer_obscured(
    sparing: list[Box],
    covered: list[tuple[int, int, int, int]],
    boxes: list[Box],
    rects: list[Rect],
    rules: RedactionRules,
    width: int,
    height: int,
) -> list[Box]:
    """Return the boxes of ``sparing`` whose area this frame's ``boxes`` no longer obscure and
    no detection region looked at.

    A box spared its pixels from detection on this frame because it was to be obscured
    (``covered``: the same boxes with the redaction margin). The tracker may then shrink,
    move or drop it (a person who stops is absorbed by the motion detector in a few frames;
    a lost track expires): served as the tracker says, those pixels would leave unseen and
    unobscured. Each such box is obscured on this frame too; from the next frame on it spares
    nothing, so those of its pixels no detection has seen are detected.
    """
    served = [expand_box(b, rules.margin, width, height) for b in boxes]
    out = []
    for b, (x1, y1, x2, y2) in zip(sparing, covered, strict=True):
        if x2 <= x1 or y2 <= y1:
            continue
        inside = [s for s in served if s[0] <= x1 and s[1] <= y1 and x2 <= s[2] and y2 <= s[3]]
        seen = [r for r in rects if r.x1 <= x1 and r.y1 <= y1 and x2 <= r.x2 and y2 <= r.y2]
        if not inside and not seen:
            out.append(b)
    return out


def _overlap(a: Box, b: Box) -> bool:
    """Return True when two boxes overlap."""
    return a.x1 < b.x2 and b.x1 < a.x2 and a.y1 < b.y2 and b.y1 < a.y2


def _labels_of(det: object) -> set[str]:
    """Return the box labels a detector (or an ``any_of`` union's members) produces."""
    members = getattr(det, "members", None)
    if members is not None:
        return set().union(*(_labels_of(m) for m in members))
    label = getattr(det, "label", None)
    return {label} if isinstance(label, str) else set()


class _BrokenDetector:
    """Stands in for a detector that could not be built: every call fails (closed)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def detect(self, frame: np.ndarray) -> list[Box]:
        raise RuntimeError(f"the {self.target} detector could not be built")
