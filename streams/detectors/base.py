"""The detector interface: a frame in, boxes out; variants register in ``DETECTORS``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from streams.registry import Registry


class DetectorError(RuntimeError):
    """Raised when a detector cannot run (missing weights, bad input); the frame fails closed."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates of the frame it was found in."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0
    label: str = ""

    @property
    def width(self) -> float:
        """Return the box width in pixels."""
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        """Return the box height in pixels."""
        return self.y2 - self.y1

    def scaled(self, factor: float) -> Box:
        """Return this box with every coordinate multiplied by ``factor``."""
        return Box(
            self.x1 * factor,
            self.y1 * factor,
            self.x2 * factor,
            self.y2 * factor,
            self.score,
            self.label,
        )


class Detector(Protocol):
    """Anything with ``detect(frame_bgr) -> list[Box]`` (boxes in that frame's pixels)."""

    def detect(self, frame: np.ndarray) -> list[Box]: ...


#: Every detector variant, keyed by its config's ``type``.
DETECTORS: Registry[Detector] = Registry("detector")
