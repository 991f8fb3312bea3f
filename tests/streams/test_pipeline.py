"""The per-frame pipeline fails closed: no failure path ever returns the raw frame."""

from __future__ import annotations

import numpy as np
import pytest

from streams.coverage import Rect
from streams.detectors import Box
from streams.pipeline import RedactionPipeline
from streams.rules import PrivacyMask, RedactionRules


def _frame(seed=0, h=240, w=320):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


class ScriptedDetector:
    """A detector playing a script of boxes; raises when told to; counts calls."""

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


def test_static_scene_is_detected_once_and_changes_are_detected_where_they_appear():
    seen = []

    class Probe(ScriptedDetector):
        def detect(self, frame):
            seen.append(frame.shape[:2])
            whole = frame.shape[:2] == (240, 320)
            return super().detect(frame) if whole else []

    det = Probe([Box(100, 100, 140, 140, label="face")])
    p, _ = make(RedactionRules(targets={"faces"}, min_face_px=20), det)
    still = _frame(0)
    results = [p.process(still) for _ in range(5)]
    assert seen == [(240, 320)]  # the first frame, whole; nothing new after it
    assert results[0].regions and not any(r.regions for r in results[1:])
    for r in results:  # the box found on the first frame stays over unchanged pixels
        assert r.boxes and not np.array_equal(r.frame[100:140, 100:140], still[100:140, 100:140])
    moved = still.copy()
    moved[180:230, 250:300] = 0  # something new, bottom right
    r = p.process(moved)
    (region,) = r.regions
    assert region.x1 <= 250 and region.y1 <= 180 and region.x2 >= 300 and region.y2 >= 230
    assert region.area < 320 * 240 / 2 and seen[-1] != (240, 320)


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
    p, _ = make(RedactionRules(targets={"faces"}), det)
    p.process(_frame(0))
    det.fail = True
    r = p.process(_frame(1))
    assert r.failed == "detector_error" and r.applied == frozenset()
    det.fail = False
    assert p.process(_frame(1)).failed is None  # retried at once: nothing was marked seen


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


def test_resolution_change_resets_tracks_and_detects_the_whole_frame():
    det = ScriptedDetector([Box(10, 10, 40, 40, label="face")])
    p, _ = make(RedactionRules(targets={"faces"}), det)
    p.process(_frame(0, 240, 320))
    p.process(_frame(0, 240, 320))
    r = p.process(_frame(0, 480, 640))
    assert r.detected and det.calls == 2 and p.stats["resolution_changes"] == 1
    assert r.regions == [Rect(0, 0, 640, 480)]


def test_rule_change_detects_the_whole_next_frame_again():
    det = ScriptedDetector()
    p, _ = make(RedactionRules(targets={"faces"}), det)
    still = _frame(0)
    p.process(still)
    p.process(still)
    assert det.calls == 1
    p.update_rules(RedactionRules(targets={"faces"}, min_face_px=24))
    r = p.process(still)
    assert det.calls == 2 and r.regions == [Rect(0, 0, 320, 240)]


def test_rules_update_applies_from_next_frame():
    p, _ = make()
    raw = _frame()
    assert np.array_equal(p.process(raw).frame, raw)  # nothing detected, no masks
    p.update_rules(
        RedactionRules(
            targets={"faces"}, masks=[PrivacyMask(points=[(0, 0), (1, 0), (1, 1), (0, 1)])]
        )
    )
    r = p.process(raw)
    assert (r.frame == RedactionRules().fill_color).all()
    assert r.applied == {"faces"}  # masks are the rule's, burned into every frame


def test_detector_input_is_scaled_by_the_minimum_face_size_not_downscaled():
    seen = []

    class Probe(ScriptedDetector):
        min_face_px = 20  # this detector finds faces of 20 px and up at its input

        def detect(self, frame):
            seen.append(frame.shape)
            return [Box(20, 20, 40, 40, label="face")]

    p, _ = make(RedactionRules(targets={"faces"}, min_face_px=16), Probe())
    r = p.process(_frame(0, 720, 1280))
    assert seen == [(900, 1600, 3)]  # 1.25x: a 16 px face reaches the detector at 20 px
    (b,) = r.boxes
    assert (b.x1, b.y1, b.x2, b.y2) == (16, 16, 32, 32)


def test_applied_names_what_each_frame_got():
    p, _ = make(RedactionRules(targets={"faces"}), ScriptedDetector())
    assert p.process(_frame()).applied == {"faces"}
    p2, _ = make(RedactionRules(targets={"faces"}), ScriptedDetector(fail=True))
    r = p2.process(_frame())
    assert r.applied == frozenset()  # obscured as a whole: no target was redacted as such


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param([Box(140, 140, 100, 100, label="face")], id="inverted"),
        pytest.param([Box(100, 140, 140, 100, label="face")], id="inverted-y"),
        pytest.param([Box(100, 100, 100, 140, label="face")], id="empty"),
        pytest.param([Box(float("nan"), 100, 140, 140, label="face")], id="nan"),
        pytest.param([Box(100, 100, float("inf"), 140, label="face")], id="inf"),
        pytest.param([Box(100, 100, 140, 140, float("nan"), "face")], id="nan-score"),
        pytest.param([Box(400, 300, 500, 400, label="face")], id="outside"),
        pytest.param([Box(-90, -90, -10, -10, label="face")], id="outside-negative"),
        pytest.param([(100, 100, 140, 140)], id="tuple-not-box"),
        pytest.param([Box("100", 100, 140, 140, label="face")], id="string-coordinate"),
        pytest.param([Box(True, 100, 140, 140, label="face")], id="bool-coordinate"),
        pytest.param(None, id="none"),
        pytest.param(np.array([[100, 100, 140, 140]]), id="ndarray"),
    ],
)
def test_malformed_detector_output_fails_closed(bad):
    class Malformed(ScriptedDetector):
        def detect(self, frame):
            return bad

    p, _ = make(RedactionRules(targets={"faces"}), Malformed())
    raw = _frame()
    r = p.process(raw)
    assert r.failed == "detector_output" and _not_raw(r.frame, raw)
    assert not np.array_equal(r.frame[100:140, 100:140], raw[100:140, 100:140])
    assert p.stats["failed_closed"] == 1


def test_box_partly_outside_the_frame_is_clipped_not_a_failure():
    det = ScriptedDetector([Box(-20, -20, 40, 40, label="face"), Box(300, 200, 400, 300)])
    p, _ = make(RedactionRules(targets={"faces"}), det)
    r = p.process(_frame())
    assert r.failed is None
    assert {(b.x1, b.y1, b.x2, b.y2) for b in r.boxes} == {(0, 0, 40, 40), (300, 200, 320, 240)}


def test_a_late_detection_fails_its_frame_but_is_kept_so_the_stream_recovers():
    """On a loaded machine a whole-frame detection may be late: its frame fails closed, but
    what it saw stays seen, so the next frame needs only its changes (no timeout spiral)."""
    now = {"t": 0.0}

    class Slow(ScriptedDetector):
        def detect(self, frame):
            now["t"] += 5.0  # every call takes 5 s
            return super().detect(frame)

    det = Slow([Box(100, 100, 140, 140, label="face")])
    p, _ = make(
        RedactionRules(targets={"faces"}, detector_timeout_ms=1000), det, clock=lambda: now["t"]
    )
    still = _frame()
    assert p.process(still).failed == "detector_timeout"
    r = p.process(still)
    assert r.failed is None and det.calls == 1 and r.boxes


def test_a_box_cut_by_a_region_edge_is_detected_again_in_a_grown_region():
    """An object reaching out of the region it was found in is looked at again whole."""
    seen = []

    class BlackObject(ScriptedDetector):
        """Finds the pure black object; in a crop narrower than 120 px it 'sees' it cut by
        the crop's right edge (as a face cut by a region edge is found only in part)."""

        def detect(self, frame):
            h, w = frame.shape[:2]
            seen.append((h, w))
            ys, xs = np.nonzero((frame == 0).all(axis=2))
            if len(xs) == 0:
                return []
            if w < 120:
                return [Box(w - 50, 20, w, 60, label="face")]
            return [Box(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, label="face")]

    p, _ = make(RedactionRules(targets={"faces"}), BlackObject())
    still = _frame(0)
    p.process(still)
    moved = still.copy()
    moved[100:116, 100:116] = 0  # the object appears
    r = p.process(moved)
    assert len(seen) == 3 and seen[2][1] > seen[1][1]  # looked again, wider
    assert p.stats["cut_boxes_redetected"] == 1
    (b,) = [b for b in r.boxes if b.label == "face"]
    assert (b.x1, b.y1, b.x2, b.y2) == (100, 100, 116, 116)  # the object, not the cut box
