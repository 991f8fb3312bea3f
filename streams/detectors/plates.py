"""Plate detectors: OpenCV's bundled Russian-plate Haar cascade (a weak default; see RESULTS)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from streams.detectors.base import DETECTORS, Box, DetectorError
from streams.registry import StrictModel


class HaarPlateConfig(StrictModel):
    """A Haar cascade shipped in ``cv2.data`` (or a repo path); no download."""

    type: Literal["haar_plate"] = "haar_plate"
    cascade: str = "haarcascade_russian_plate_number.xml"
    scale_factor: float = Field(1.1, gt=1.0, le=2.0)
    min_neighbors: int = Field(3, ge=0, le=20)
    min_size: tuple[int, int] = (24, 8)


class HaarPlateDetector:
    """Return plate-like boxes (trained on Russian plates: expect low recall on Chinese plates)."""

    label = "plate"

    def __init__(self, config: HaarPlateConfig) -> None:
        self.config = config
        path = Path(config.cascade)
        if not path.is_absolute() and not path.exists():
            path = Path(cv2.data.haarcascades) / config.cascade
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise DetectorError(f"cannot load plate cascade {path}")

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Return plate boxes in ``frame`` pixels."""
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        c = self.config
        rects = self._cascade.detectMultiScale(
            gray, scaleFactor=c.scale_factor, minNeighbors=c.min_neighbors, minSize=c.min_size
        )
        return [Box(x, y, x + w, y + h, 1.0, self.label) for x, y, w, h in rects]


DETECTORS.register(HaarPlateConfig)(HaarPlateDetector)
