"""What the detectors have seen: new cells, rectangles, specks, the seen core, pans."""

from __future__ import annotations

import cv2
import numpy as np

from streams.coverage import Coverage, Rect, merge_rects


def _street(vtest_frames, size=(1280, 720)):
    return cv2.resize(vtest_frames[0], size, interpolation=cv2.INTER_LINEAR)


def _seen(cov: Coverage, frame) -> None:
    h, w = frame.shape[:2]
    cov.mark_seen(cov.grid_of(frame), [Rect(0, 0, w, h)], 32, w, h)


def test_first_frame_is_new_everywhere_then_nothing_until_it_changes(vtest_frames):
    cov = Coverage(16, 10.0, 0.4)
    frame = _street(vtest_frames)
    assert cov.changes(frame).everything
    _seen(cov, frame)
    ch = cov.changes(frame)
    assert not ch.everything and not ch.new.any()
    assert cov.regions(ch, 32, 1280, 720).rects == []


def test_a_new_object_is_one_region_with_context_and_a_speck_is_obscured(vtest_frames):
    cov = Coverage(16, 10.0, 0.4)
    frame = _street(vtest_frames)
    _seen(cov, frame)
    changed = frame.copy()
    changed[300:340, 600:630] = 255  # a 30x40 object
    changed[100:104, 100:104] = 0  # one 4x4 cell
    regions = cov.regions(cov.changes(changed), 32, 1280, 720)
    (r,) = regions.rects
    # the object plus 32 px of context each side (to the 4 px cell)
    assert 600 - 36 <= r.x1 <= 600 - 32 and 300 - 36 <= r.y1 <= 300 - 32
    assert 630 + 32 <= r.x2 <= 630 + 36 and 340 + 32 <= r.y2 <= 340 + 36
    (speck,) = regions.specks
    assert speck.x1 <= 100 and speck.x2 >= 104 and speck.y1 <= 100 and speck.y2 >= 104


def test_covered_cells_need_no_detection_and_stay_new(vtest_frames):
    cov = Coverage(16, 10.0, 0.4)
    frame = _street(vtest_frames)
    _seen(cov, frame)
    changed = frame.copy()
    changed[300:340, 600:630] = 255
    ch = cov.changes(changed)
    assert cov.regions(ch, 32, 1280, 720, [(590, 290, 640, 350)]).rects == []
    assert ch.new[300 // 4 : 340 // 4, 600 // 4 : 630 // 4].all()


def test_only_the_core_of_a_region_counts_as_seen(vtest_frames):
    cov = Coverage(16, 10.0, 0.4)
    frame = _street(vtest_frames)
    _seen(cov, frame)
    changed = frame.copy()
    changed[200:400, 400:800] = 255
    grid = cov.grid_of(changed)
    cov.mark_seen(grid, [Rect(400, 200, 800, 400)], 32, 1280, 720)
    ch = cov.changes(changed)
    assert not ch.new[(200 + 32) // 4 : (400 - 32) // 4, (400 + 32) // 4 : (800 - 32) // 4].any()
    assert ch.new[200 // 4 : 400 // 4, 400 // 4].all()  # the margin band is still new


def test_slow_change_adds_up_against_what_was_seen(vtest_frames):
    cov = Coverage(16, 10.0, 0.4)
    frame = _street(vtest_frames)
    _seen(cov, frame)
    for step in range(1, 4):  # +4 grey levels a frame: below the threshold each time
        f = cv2.add(frame, np.full_like(frame, 4 * step))
        new = cov.changes(f).new
    assert new.mean() > 0.5  # 12 levels since seen


def test_pan_is_followed_and_only_the_entering_band_is_new(vtest_frames):
    cov = Coverage(16, 10.0, 0.4)
    wide = cv2.resize(vtest_frames[0], (1600, 720))
    _seen(cov, np.ascontiguousarray(wide[:, 100:1380]))
    ch = cov.changes(np.ascontiguousarray(wide[:, 88:1368]))  # the camera turned left 12 px
    dx, dy = ch.shift
    assert abs(dx - 12) < 2 and abs(dy) < 1
    cols = np.nonzero(ch.new.any(axis=0))[0]
    # new: the 12 px strip plus the 64 px band seen cut by the left edge (+ a few residues)
    assert ch.new[:, : (12 + 64) // 4].all()
    assert ch.new.mean() < 0.15 and cols.max() * 4 > 0


def test_merge_rects_joins_overlaps_but_not_into_a_large_empty_union():
    a, b = Rect(0, 0, 100, 100), Rect(20, 20, 120, 120)
    assert merge_rects([a, b]) == [Rect(0, 0, 120, 120)]
    thin_h, thin_v = Rect(0, 0, 1000, 20), Rect(0, 0, 20, 1000)
    assert sorted(merge_rects([thin_h, thin_v]), key=lambda r: r.x2) == [thin_v, thin_h]
