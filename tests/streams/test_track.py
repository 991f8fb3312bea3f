"""Tracking between detections: boxes persist, move with the object, and expire."""

from __future__ import annotations

from streams.detectors import Box
from streams.track import BoxTracker, iou


def test_iou():
    assert iou(Box(0, 0, 10, 10), Box(0, 0, 10, 10)) == 1.0
    assert iou(Box(0, 0, 10, 10), Box(20, 20, 30, 30)) == 0.0


def test_box_held_between_detections_and_for_missed_detections():
    t = BoxTracker(hold_frames=4)
    t.update([Box(10, 10, 20, 20, label="face")])
    assert len(t.predict()) == 1 and len(t.predict()) == 1
    assert len(t.update([])) == 1  # detector missed it: still covered
    assert len(t.predict()) == 1
    assert t.predict() == []  # 5 frames without a hit > hold_frames


def test_prediction_follows_constant_motion_and_covers_the_object():
    t = BoxTracker(hold_frames=10)
    for step in range(4):
        t.update([Box(10 + 9 * step, 10, 30 + 9 * step, 30, label="face")])
        if step < 3:
            t.predict()
            t.predict()
    # two frames later the object is at x=10+9*3+6 (3 px/frame)
    t.predict()
    (b,) = t.predict()
    true = Box(43, 10, 63, 30)
    assert b.x1 <= true.x1 + 2 and b.x2 >= true.x2 - 2
    assert iou(b, true) > 0.6


def test_labels_do_not_mix():
    t = BoxTracker()
    t.update([Box(0, 0, 10, 10, label="face")])
    boxes = t.update([Box(0, 0, 10, 10, label="plate")])
    assert sorted(b.label for b in boxes) == ["face", "plate"]
