"""Per-frame pipeline: detect (every k-th frame) -> track -> redact, failing closed.

``RedactionPipeline.process(frame)`` returns a ``FrameResult`` whose ``frame`` is either the
redacted frame, a fully pixelated frame, or None (withheld). It never returns the input frame
unprocessed: every failure (detector error or timeout, warm-up, bad input) takes the
fail-closed branch, is counted in ``stats`` and logged.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from streams.detectors import DETECTORS, Box, Detector
from streams.redact import fail_closed_frame, redact_frame
from streams.rules import RedactionRules
from streams.track import BoxTracker

log = logging.getLogger(__name__)


class DetectionTimeout(RuntimeError):
    """A detection pass took longer than the rule's ``detector_timeout_ms``."""


@dataclass
class FrameResult:
    """One processed frame: ``frame`` is redacted, fully pixelated, or None when withheld."""

    frame: np.ndarray | None
    boxes: list[Box] = field(default_factory=list)
    failed: str | None = None
    detected: bool = False
    #: targets whose redaction was applied to this frame (empty when it failed closed)
    applied: frozenset[str] = frozenset()


class RedactionPipeline:
    """Return redacted frames for one stream; holds detector and tracker state."""

    def __init__(
        self,
        rules: RedactionRules | None = None,
        *,
        detector_factory: Callable[[object], Detector] = DETECTORS.create,
        clock: Callable[[], float] = time.perf_counter,
        name: str = "stream",
    ) -> None:
        self.name = name
        self._factory = detector_factory
        self._clock = clock
        self.stats: Counter[str] = Counter()
        self.rules = rules or RedactionRules()
        self.tracker = BoxTracker(self.rules.hold_frames)
        self.detectors: dict[str, Detector] = {}
        self._detector_key: tuple | None = None
        self._since_detect = 0
        self._need_detect = True
        self._last_detect_t = float("-inf")
        self._shape: tuple[int, ...] | None = None
        self.update_rules(self.rules)

    # -- rules ------------------------------------------------------------------------------
    def update_rules(self, rules: RedactionRules) -> None:
        """Switch to ``rules`` from the next frame; detectors are rebuilt only if they changed."""
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
            self._detector_key = key
            self.tracker.reset()
            self._need_detect = True
        self.tracker.hold_frames = rules.hold_frames
        self.rules = rules

    # -- frames -----------------------------------------------------------------------------
    def process(self, frame: np.ndarray | None) -> FrameResult:
        """Return the redacted (or fail-closed) version of ``frame``; never ``frame`` itself."""
        rules = self.rules
        self.stats["frames"] += 1
        if frame is None or frame.ndim != 3 or frame.shape[2] != 3 or frame.size == 0:
            return self._fail("bad_frame", None)
        if frame.shape != self._shape:
            if self._shape is not None:
                log.info("%s: resolution changed %s -> %s", self.name, self._shape, frame.shape)
                self.stats["resolution_changes"] += 1
            self._shape = frame.shape
            self.tracker.reset()
            self._need_detect = True
        detected = False
        if not self.detectors:
            boxes: list[Box] = []
        elif (
            self._need_detect
            or self._since_detect + 1 >= rules.detect_every
            # overload: frames are being dropped upstream, so k frames may span a long time and
            # tracked boxes drift; detect again rather than trust an old prediction
            or (self._clock() - self._last_detect_t) * 1000.0 > rules.max_track_ms
        ):
            try:
                found = self._detect(frame, rules)
            except DetectionTimeout as exc:
                self._need_detect = True
                return self._fail("detector_timeout", frame, exc)
            except Exception as exc:  # noqa: BLE001 - every detector failure fails closed
                self._need_detect = True
                return self._fail("detector_error", frame, exc)
            if any(not getattr(d, "ready", True) for d in self.detectors.values()):
                self._need_detect = True
                return self._fail("warmup", frame)
            boxes = self.tracker.update(found)
            self._since_detect = 0
            self._need_detect = False
            self._last_detect_t = self._clock()
            detected = True
            self.stats["detections"] += 1
        else:
            boxes = self.tracker.predict()
            self._since_detect += 1
        try:
            out = redact_frame(frame, boxes, rules)
        except Exception as exc:  # noqa: BLE001 - a redaction bug must not leak the frame
            return self._fail("redact_error", frame, exc)
        self.stats["redacted"] += 1
        return FrameResult(out, boxes, None, detected, frozenset(self.detectors))

    def _detect(self, frame: np.ndarray, rules: RedactionRules) -> list[Box]:
        h, w = frame.shape[:2]
        scale = 1.0
        small = frame
        if w > rules.detect_width:
            scale = w / rules.detect_width
            small = cv2.resize(
                frame, (rules.detect_width, int(round(h / scale))), interpolation=cv2.INTER_AREA
            )
        t0 = self._clock()
        found: list[Box] = []
        for det in self.detectors.values():
            found.extend(det.detect(small))
        elapsed_ms = (self._clock() - t0) * 1000.0
        if elapsed_ms > rules.detector_timeout_ms:
            raise DetectionTimeout(
                f"detection took {elapsed_ms:.0f} ms > {rules.detector_timeout_ms} ms"
            )
        return [b.scaled(scale) for b in found] if scale != 1.0 else found

    def _fail(
        self, reason: str, frame: np.ndarray | None, exc: BaseException | None = None
    ) -> FrameResult:
        self.stats[reason] += 1
        self.stats["failed_closed"] += 1
        n = self.stats[reason]
        if n <= 3 or n % 100 == 0:  # log the first few and then every 100th, not every frame
            log.warning("%s: frame failed closed (%s #%d): %s", self.name, reason, n, exc or "")
        if frame is None or self.rules.on_failure == "withhold":
            self.stats["withheld"] += 1
            return FrameResult(None, [], reason)
        try:
            return FrameResult(fail_closed_frame(frame), [], reason)
        except Exception:  # noqa: BLE001 - last resort: withhold
            self.stats["withheld"] += 1
            return FrameResult(None, [], reason)


class _BrokenDetector:
    """Stands in for a detector that could not be built: every call fails (closed)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def detect(self, frame: np.ndarray) -> list[Box]:
        raise RuntimeError(f"the {self.target} detector could not be built")
