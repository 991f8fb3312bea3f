"""The per-frame pipeline fails closed: no failure path ever returns the raw frame."""

from __future__ import annotations

import numpy as np
import pytest

from streams.detectors import Box
from streams.pipeline import RedactionPipeline
from streams.rules import PrivacyMask, RedactionRules


def _frame(seed=0, h=240, w=320):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


class ScriptedDetector:
    """Return boxes from a script; raise when told to; count calls."""

    def __init__(self, boxes=(), fail=False, ready=True):
        self.boxes = list(boxes)
        self.fail = fail
        self.ready = ready
        self.calls = 0

    def detect(self, frame):
        self.calls += 1
        if self.fail:
            raise RuntimeError("model exploded")
        return list(self.boxes)


def make(rules=None, det=None, clock=None):
    det = det or ScriptedDetector()
    kwargs = {"detector_factory": lambda cfg: det}
    if clock is not None:
        kwargs["clock"] = clock
    return RedactionPipeline(rules or RedactionRules(targets={"faces"}), **kwargs), det


def _not_raw(out, raw):
    return out is not None and out is not raw and not np.array_equal(out, raw)


def test_detects_every_kth_frame_and_tracks_in_between():
    det = ScriptedDetector([Box(100, 100, 140, 140, label="face")])
    p, _ = make(RedactionRules(targets={"faces"}, detect_every=3), det)
    results = [p.process(_frame(i)) for i in range(9)]
    assert det.calls == 3
    assert [r.detected for r in results] == [True, False, False] * 3
    for i, r in enumerate(results):
        assert r.boxes, f"frame {i} has no box: the face would flicker through"
        assert not np.array_equal(r.frame[100:140, 100:140], _frame(i)[100:140, 100:140])


@pytest.mark.parametrize("on_failure", ["pixelate_frame", "withhold"])
def test_detector_error_fails_closed(on_failure):
    p, det = make(
        RedactionRules(targets={"faces"}, on_failure=on_failure), ScriptedDetector(fail=True)
    )
    raw = _frame()
    r = p.process(raw)
    assert r.failed == "detector_error"
    if on_failure == "withhold":
        assert r.frame is None
    else:
        assert _not_raw(r.frame, raw)
    assert p.stats["failed_closed"] == 1


def test_detector_error_on_a_later_frame_also_fails_closed_and_retries_next_frame():
    det = ScriptedDetector()
    p, _ = make(RedactionRules(targets={"faces"}, detect_every=5), det)
    p.process(_frame(0))
    det.fail = True
    p.process(_frame(1))  # tracked frame, no detection yet
    for i in range(2, 6):
        r = p.process(_frame(i))
    assert r.failed == "detector_error"
    det.fail = False
    assert p.process(_frame(7)).failed is None  # retried at once, not after k frames


def test_detector_timeout_fails_closed():
    ticks = iter([0.0, 5.0] * 10)
    p, _ = make(
        RedactionRules(targets={"faces"}, detector_timeout_ms=1000), clock=lambda: next(ticks)
    )
    raw = _frame()
    r = p.process(raw)
    assert r.failed == "detector_timeout" and _not_raw(r.frame, raw)


def test_warmup_fails_closed_until_detector_ready():
    det = ScriptedDetector(ready=False)
    p, _ = make(RedactionRules(targets={"persons"}), det)
    raw = _frame()
    r = p.process(raw)
    assert r.failed == "warmup" and _not_raw(r.frame, raw)
    det.ready = True
    assert p.process(_frame(1)).failed is None


def test_unbuildable_detector_fails_closed():
    def factory(cfg):
        raise FileNotFoundError("weights missing")

    p = RedactionPipeline(RedactionRules(targets={"faces"}), detector_factory=factory)
    raw = _frame()
    r = p.process(raw)
    assert r.failed == "detector_error" and _not_raw(r.frame, raw)


@pytest.mark.parametrize("bad", [None, np.zeros((0, 0, 3), np.uint8), np.zeros((10, 10), np.uint8)])
def test_bad_frames_are_withheld(bad):
    p, _ = make()
    r = p.process(bad)
    assert r.frame is None and r.failed == "bad_frame"


def test_resolution_change_resets_tracks_and_detects_again():
    det = ScriptedDetector([Box(10, 10, 40, 40, label="face")])
    p, _ = make(RedactionRules(targets={"faces"}, detect_every=10), det)
    p.process(_frame(0, 240, 320))
    p.process(_frame(1, 240, 320))
    r = p.process(_frame(2, 480, 640))
    assert r.detected and det.calls == 2 and p.stats["resolution_changes"] == 1


def test_rules_update_applies_from_next_frame():
    p, _ = make()
    raw = _frame()
    assert np.array_equal(p.process(raw).frame, raw)  # nothing detected, no masks
    p.update_rules(
        RedactionRules(
            targets={"faces"}, masks=[PrivacyMask(points=[(0, 0), (1, 0), (1, 1), (0, 1)])]
        )
    )
    out = p.process(raw).frame
    assert (out == RedactionRules().fill_color).all()


def test_detection_runs_on_downscaled_frame_and_boxes_are_scaled_back():
    seen = []

    class Probe(ScriptedDetector):
        def detect(self, frame):
            seen.append(frame.shape)
            return [Box(10, 10, 20, 20, label="face")]

    p, _ = make(RedactionRules(targets={"faces"}, detect_width=320), Probe())
    r = p.process(_frame(0, 720, 1280))
    assert seen == [(180, 320, 3)]
    (b,) = r.boxes
    assert (b.x1, b.y1, b.x2, b.y2) == (40, 40, 80, 80)


def test_overload_forces_detection_when_last_one_is_too_old():
    now = {"t": 0.0}
    det = ScriptedDetector([Box(10, 10, 40, 40, label="face")])
    p, _ = make(
        RedactionRules(targets={"faces"}, detect_every=10, max_track_ms=500),
        det,
        clock=lambda: now["t"],
    )
    p.process(_frame(0))
    now["t"] = 0.1
    assert not p.process(_frame(1)).detected
    now["t"] = 0.7  # frames were dropped upstream: 600 ms since the last detection
    assert p.process(_frame(2)).detected and det.calls == 2
