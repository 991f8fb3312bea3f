"""Person detectors: OpenCV HOG people detector and MOG2 background subtraction."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from streams.detectors.base import DETECTORS, Box
from streams.registry import StrictModel


class HogConfig(StrictModel):
    """OpenCV's bundled HOG + linear SVM people detector (Dalal-Triggs)."""

    type: Literal["hog"] = "hog"
    win_stride: int = Field(8, ge=4, le=32)
    scale: float = Field(1.05, gt=1.0, le=2.0)
    #: Frames are upscaled so a person of this height (px) matches the 128 px window.
    min_person_height: int = Field(96, ge=32, le=512)
    min_score: float = 0.0


class HogPersonDetector:
    """An upright-person detector using HOG (slow: ~100 ms at 640x360 on one core)."""

    label = "person"

    def __init__(self, config: HogConfig) -> None:
        self.config = config
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Return person boxes in ``frame`` pixels."""
        c = self.config
        up = 128.0 / c.min_person_height
        img = frame if up <= 1.0 else cv2.resize(frame, None, fx=up, fy=up)
        rects, weights = self._hog.detectMultiScale(
            img, winStride=(c.win_stride, c.win_stride), padding=(8, 8), scale=c.scale
        )
        f = 1.0 / max(up, 1.0)
        out = []
        for (x, y, w, h), score in zip(rects, np.ravel(weights), strict=False):
            if score >= c.min_score:
                out.append(Box(x * f, y * f, (x + w) * f, (y + h) * f, float(score), self.label))
        return out


class Mog2Config(StrictModel):
    """MOG2 background subtraction: every moving blob is obscured (persons, but also vehicles)."""

    type: Literal["mog2"] = "mog2"
    history: int = Field(200, ge=10, le=5000)
    var_threshold: float = Field(25.0, gt=0.0)
    #: Blobs smaller than this fraction of the frame area are ignored (noise, leaves).
    min_area: float = Field(0.0008, ge=0.0, le=0.5)
    #: Width the subtractor works at (cheap: ~2 ms at 320 px).
    work_width: int = Field(320, ge=80, le=1920)
    #: Frames the background model needs before its boxes are trusted (fail closed until then).
    warmup_frames: int = Field(5, ge=0, le=1000)


class Mog2PersonDetector:
    """A moving-foreground detector (MOG2 background model, stateful): boxes around blobs."""

    label = "person"
    #: The background model must learn from every frame, so it runs on whole frames.
    sees_every_frame = True

    def __init__(self, config: Mog2Config) -> None:
        self.config = config
        self._sub = cv2.createBackgroundSubtractorMOG2(
            history=config.history, varThreshold=config.var_threshold, detectShadows=True
        )
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self._seen = 0

    @property
    def ready(self) -> bool:
        """Return True once the background model has seen ``warmup_frames`` frames."""
        return self._seen >= self.config.warmup_frames

    def learn(self, frame: np.ndarray) -> None:
        """Teach the background model ``frame`` without detecting (reading ahead in a file)."""
        self._apply(frame)

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Return blob boxes in ``frame`` pixels."""
        small, fg, f = self._apply(frame)
        # 127 marks shadows; only confident foreground counts.
        _, fg = cv2.threshold(fg, 200, 255, cv2.THRESH_BINARY)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self._kernel, iterations=2)
        fg = cv2.dilate(fg, self._kernel)
        contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_area = self.config.min_area * small.shape[0] * small.shape[1]
        out = []
        for cnt in contours:
            x, y, bw, bh = cv2.boundingRect(cnt)
            if bw * bh >= min_area:
                out.append(Box(x / f, y / f, (x + bw) / f, (y + bh) / f, 1.0, self.label))
        return out

    def _apply(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Return (the frame at the working width, its foreground mask, the scale used); the
        model learns the frame."""
        f = min(1.0, self.config.work_width / frame.shape[1])
        small = (
            frame if f == 1.0 else cv2.resize(frame, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        )
        fg = self._sub.apply(small)
        self._seen += 1
        return small, fg, f


DETECTORS.register(HogConfig)(HogPersonDetector)
DETECTORS.register(Mog2Config)(Mog2PersonDetector)
