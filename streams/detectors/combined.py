"""``any_of``: the union of several detectors' boxes (e.g. HOG people + MOG2 motion)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from streams.detectors.base import DETECTORS, Box
from streams.registry import StrictModel


class AnyOfConfig(StrictModel):
    """Run every listed detector; an object found by any of them is obscured."""

    type: Literal["any_of"] = "any_of"
    detectors: tuple[Any, ...] = Field(min_length=1)

    @field_validator("detectors", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> tuple:
        return tuple(DETECTORS.parse(v) for v in value)


class AnyOfDetector:
    """A detector made of others: the boxes of all members; ready when every member is ready."""

    def __init__(self, config: AnyOfConfig) -> None:
        self.members = [DETECTORS.create(c) for c in config.detectors]

    @property
    def ready(self) -> bool:
        """Return True when every member detector is ready (MOG2 needs warm-up)."""
        return all(getattr(m, "ready", True) for m in self.members)

    @property
    def sees_every_frame(self) -> bool:
        """Return True when a member must see every whole frame (then all members do)."""
        return any(getattr(m, "sees_every_frame", False) for m in self.members)

    @property
    def min_face_px(self) -> float:
        """Return the largest minimum object size (px) among members that declare one."""
        sizes = [getattr(m, "min_face_px", 0) for m in self.members]
        return max(sizes) if any(sizes) else 0

    def learn(self, frame: np.ndarray) -> None:
        """Teach ``frame`` to every member that learns from frames (background models)."""
        for m in self.members:
            learn = getattr(m, "learn", None)
            if learn is not None:
                learn(frame)

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Return every member's boxes for ``frame``."""
        out: list[Box] = []
        for m in self.members:
            out.extend(m.detect(frame))
        return out


DETECTORS.register(AnyOfConfig)(AnyOfDetector)
