"""The redaction-rule model: what to obscure, how strongly, which masks, which detectors.

A rule's JSON (``RedactionRules.model_dump_json()``) is what ``layers.services.rules`` stores in
``redaction_rules.config``; the row's ``scope_kind``/``scope_value`` say where it applies
(``RuleScope``). Image-space geometry (privacy masks) is in relative 0-1 frame coordinates,
never map coordinates.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from streams.detectors import DETECTORS
from streams.registry import StrictModel

Target = Literal["faces", "plates", "persons"]
Method = Literal["pixelate", "fill", "blur"]
ScopeKind = Literal["default", "camera", "camera_class", "grid", "district"]

#: Most specific first: the first scope with an active rule wins for a camera.
SCOPE_PRECEDENCE: tuple[ScopeKind, ...] = ("camera", "grid", "district", "camera_class", "default")

DEFAULT_DETECTORS: dict[str, dict[str, Any]] = {
    # CenterFace (vendored ONNX, onnxruntime): finds 16 px faces at 1.25x, flat memory
    "faces": {"type": "centerface"},
    # colour localiser for blue/yellow/green GA 36 plates + OpenCV's cascade for white/black
    # ones (see bench/RESULTS.md: both measured on synthetic plates only)
    "plates": {"type": "any_of", "detectors": [{"type": "color_plate"}, {"type": "haar_plate"}]},
    "persons": {"type": "mog2"},
}


class RuleScope(StrictModel):
    """Where a rule applies: everywhere, one camera, a camera class, a grid or a district."""

    kind: ScopeKind = "default"
    value: str | None = None

    @model_validator(mode="after")
    def _value_matches_kind(self) -> RuleScope:
        if self.kind == "default":
            if self.value not in (None, ""):
                raise ValueError("the default scope takes no value")
            return self
        if not self.value:
            raise ValueError(
                f"scope {self.kind!r} needs a value (camera id, class, grid, district)"
            )
        if self.kind == "camera_class" and self.value not in ("1", "2", "3"):
            raise ValueError("camera_class scope value must be 1, 2 or 3")
        if self.kind in ("camera", "grid") and not self.value.isdigit():
            raise ValueError(f"{self.kind} scope value must be a numeric id")
        if self.kind == "district" and not (len(self.value) == 6 and self.value.isdigit()):
            raise ValueError("district scope value must be a 6-digit GB/T 2260 code")
        return self


class PrivacyMask(StrictModel):
    """A fixed polygon in relative 0-1 frame coordinates (x right, y down), burned in."""

    name: str = ""
    points: tuple[tuple[float, float], ...] = Field(min_length=3)
    #: Permanent masks stay even when an unmask grant lifts the rest (private windows, doors).
    permanent: bool = True
    method: Method = "fill"

    @field_validator("points")
    @classmethod
    def _inside_unit_square(cls, pts: tuple[tuple[float, float], ...]):
        for x, y in pts:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"mask point ({x}, {y}) is outside the 0-1 frame square")
        return pts


class RedactionRules(StrictModel):
    """How a camera's frames are redacted (validated, ready to run).

    The default covers faces, plates and persons (every moving person-sized blob), as
    privacy-by-default video products do: only an audited unmask grant lifts it.
    """

    targets: frozenset[Target] = frozenset({"faces", "plates", "persons"})
    method: Method = "pixelate"
    #: 0 = lightest that still hides identity at our margin, 1 = coarsest (4 blocks per box).
    strength: float = Field(0.6, ge=0.0, le=1.0)
    #: Extra border around each box, as a fraction of the box's width/height on each side.
    margin: float = Field(0.3, ge=0.0, le=1.0)
    fill_color: tuple[int, int, int] = (32, 32, 32)
    masks: tuple[PrivacyMask, ...] = ()
    #: Smallest face (px at SOURCE resolution) that must be found: the face detector's input is
    #: scaled so a face this size is still above the detector's own minimum (no blind downscale).
    min_face_px: int = Field(16, ge=8, le=256)
    #: Grey-level change of a small cell (a quarter of ``min_face_px``) versus what the detector
    #: last saw there that makes the cell "new": new cells are detected on the frame they appear.
    change_threshold: float = Field(10.0, ge=1.0, le=128.0)
    #: Fraction of the frame that, when new at once (scene cut, PTZ move, decoder recovery),
    #: makes the detector run on the whole frame instead of on the changed regions.
    burst_fraction: float = Field(0.4, gt=0.0, le=1.0)
    #: Frames between whole-frame detections even when nothing changed (a safety net; changed
    #: regions are detected on every frame regardless).
    refresh_every: int = Field(250, ge=1, le=100000)
    #: No effect: accepted so rules stored before change-gated detection still load. Every
    #: changed region is now detected on the frame where it changed.
    detect_every: int = Field(3, ge=1, le=30)
    #: No effect (see ``detect_every``): detection scale comes from ``min_face_px``.
    detect_width: int = Field(640, ge=160, le=3840)
    #: No effect (see ``detect_every``): frames dropped under load show up as changed cells.
    max_track_ms: int = Field(500, ge=50, le=10000)
    #: Frames a lost box keeps being obscured (covers missed detections, prevents flicker).
    hold_frames: int = Field(12, ge=0, le=300)
    #: Per-target detector config chosen by ``type`` (see ``streams.detectors.DETECTORS``).
    detectors: dict[Target, Any] = Field(
        default_factory=lambda: dict(DEFAULT_DETECTORS), validate_default=True
    )
    #: Fail-closed action when detection cannot be trusted for a frame.
    on_failure: Literal["pixelate_frame", "withhold"] = "pixelate_frame"
    #: A detection pass slower than this counts as a failure (the frame is not trusted).
    detector_timeout_ms: int = Field(1500, ge=10, le=60000)

    @field_validator("detectors", mode="before")
    @classmethod
    def _parse_detectors(cls, value: Any) -> dict[str, Any]:
        if value is None:
            return dict(DEFAULT_DETECTORS)
        if not isinstance(value, dict):
            raise ValueError("detectors must map a target (faces/plates/persons) to a config")
        merged: dict[str, Any] = dict(DEFAULT_DETECTORS)
        merged.update(value)
        return {target: DETECTORS.parse(cfg) for target, cfg in merged.items()}

    def detector_config(self, target: str):
        """Return the validated detector config used for ``target``."""
        return self.detectors[target]


def parse_rules(data: str | bytes | dict | RedactionRules | None) -> RedactionRules:
    """Return validated rules from JSON text, a dict, or None (the default rules)."""
    if data is None:
        return RedactionRules()
    if isinstance(data, RedactionRules):
        return data
    if isinstance(data, str | bytes):
        return RedactionRules.model_validate_json(data)
    return RedactionRules.model_validate(data)
