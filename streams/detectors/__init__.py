"""Detectors behind one interface; importing this package registers the built-ins."""

from streams.detectors import (  # noqa: F401 - registers built-ins
    centerface,
    combined,
    faces,
    persons,
    plates,
)
from streams.detectors.base import DETECTORS, Box, Detector, DetectorError

__all__ = ["DETECTORS", "Box", "Detector", "DetectorError"]
