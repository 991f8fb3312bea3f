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
    """A licence-plate detector using a Haar cascade (Russian plates: low recall on ours)."""

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


class ColorPlateConfig(StrictModel):
    """Colour-based plate finder for Chinese plates (blue, yellow, new-energy green)."""

    type: Literal["color_plate"] = "color_plate"
    colors: tuple[Literal["blue", "yellow", "green"], ...] = ("blue", "yellow", "green")
    min_width: int = Field(20, ge=8)
    min_aspect: float = Field(1.8, gt=0)
    max_aspect: float = Field(6.0, gt=0)


# HSV ranges (OpenCV hue 0-180) of plate backgrounds, and whether the characters are light
_PLATE_HSV = {
    "blue": ((100, 90, 50), (130, 255, 255), True),
    "yellow": ((15, 90, 90), (35, 255, 255), False),
    "green": ((40, 60, 60), (85, 255, 255), False),
}


class ColorPlateDetector:
    """A licence-plate detector by plate colour, plate shape and text-like contrast inside.

    A classical localiser for GA 36 plates: background colour by HSV threshold, closed
    horizontally over the characters, kept when its aspect ratio and fill look like a plate and
    it contains light (blue plates) or dark (yellow/green) character pixels. Blue shop signs and
    clothes can pass too: a false positive only costs an extra obscured patch.
    """

    label = "plate"

    def __init__(self, config: ColorPlateConfig) -> None:
        self.config = config

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Return plate boxes in ``frame`` pixels (frame BGR)."""
        c = self.config
        hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        kw = max(3, c.min_width // 4)
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (kw, max(3, kw // 3)))
        out: list[Box] = []
        for color in c.colors:
            lo, hi, light_text = _PLATE_HSV[color]
            mask = cv2.inRange(hsv, np.array(lo, np.uint8), np.array(hi, np.uint8))
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            for cnt in contours:
                x, y, w, h = cv2.boundingRect(cnt)
                if w < c.min_width or h < 4 or not (c.min_aspect <= w / h <= c.max_aspect):
                    continue
                if cv2.contourArea(cnt) < 0.5 * w * h:
                    continue
                inner = gray[y : y + h, x : x + w]
                bg = float(np.median(inner))
                text = inner > bg + 50 if light_text else inner < bg - 50
                if 0.04 <= float(text.mean()) <= 0.6:
                    out.append(Box(x, y, x + w, y + h, 1.0, self.label))
        return out


DETECTORS.register(ColorPlateConfig)(ColorPlateDetector)
