"""Obscuring: pixelation scaled to size, fill, cheap blur, masks rasterised from 0-1 coords."""

from __future__ import annotations

import numpy as np

from streams.detectors import Box
from streams.redact import (
    block_size,
    blur,
    expand_box,
    fail_closed_frame,
    rasterise_mask,
    redact_frame,
)
from streams.rules import PrivacyMask, RedactionRules


def _noise(h=240, w=320, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_block_size_scales_with_object_size_and_strength():
    assert block_size(40, 40, 1.0) == 10  # 4 blocks across at full strength
    assert block_size(160, 160, 1.0) == 40
    assert block_size(160, 160, 0.0) == 10  # 16 blocks at the lightest
    assert block_size(4, 4, 0.0) >= 2


def test_expand_box_adds_margin_and_clips():
    assert expand_box(Box(10, 10, 30, 50), 0.5, 100, 100) == (0, 0, 40, 70)
    assert expand_box(Box(90, 90, 110, 110), 0.0, 100, 100) == (90, 90, 100, 100)


def test_pixelate_changes_only_the_box_plus_margin():
    frame = _noise()
    out = redact_frame(frame, [Box(100, 100, 140, 140)], RedactionRules(margin=0.25))
    diff = np.any(out != frame, axis=2)
    ys, xs = np.nonzero(diff)
    assert ys.min() >= 90 and ys.max() < 150 and xs.min() >= 90 and xs.max() < 150
    region = out[90:150, 90:150]
    # at strength 0.6 a 60 px region gets ~8 blocks: far fewer distinct values than noise
    assert len(np.unique(region.reshape(-1, 3), axis=0)) <= 100
    assert frame is not out


def test_fill_is_solid():
    frame = _noise()
    rules = RedactionRules(method="fill", margin=0.0, fill_color=(1, 2, 3))
    out = redact_frame(frame, [Box(10, 20, 50, 60)], rules)
    assert (out[20:60, 10:50] == (1, 2, 3)).all()


def test_blur_is_cheap_and_smooths():
    region = _noise(200, 200)
    out = blur(region, 0.5)
    assert out.shape == region.shape
    assert out.std() < region.std() / 3


def test_mask_rasterised_in_relative_coordinates_for_any_frame_size():
    mask = PrivacyMask(points=[(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)])
    for w, h in [(320, 240), (1920, 1080)]:
        (x1, y1, x2, y2), bitmap = rasterise_mask(mask, w, h)
        assert (x1, y1) == (0, 0)
        assert abs(x2 - w / 2) <= 2 and abs(y2 - h / 2) <= 2
        assert bitmap.mean() > 0.95


def test_permanent_masks_survive_lift_and_liftable_ones_do_not():
    frame = _noise()
    rules = RedactionRules(
        masks=[
            PrivacyMask(name="door", points=[(0, 0), (0.2, 0), (0.2, 0.2)], method="fill"),
            PrivacyMask(name="shop", points=[(0.8, 0.8), (1, 0.8), (1, 1)], permanent=False),
        ],
        fill_color=(0, 0, 0),
    )
    boxes = [Box(140, 100, 180, 140)]
    normal = redact_frame(frame, boxes, rules)
    lifted = redact_frame(frame, boxes, rules, lift=True)
    assert (normal[2, 20] == 0).all() and (lifted[2, 20] == 0).all()
    assert (lifted[235, 315] == frame[235, 315]).all()
    assert not (normal[225:240, 300:320] == frame[225:240, 300:320]).all()
    assert (lifted[100:140, 140:180] == frame[100:140, 140:180]).all()
    assert not (normal[100:140, 140:180] == frame[100:140, 140:180]).all()


def test_fail_closed_frame_is_coarse():
    frame = _noise(480, 640)
    out = fail_closed_frame(frame)
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 12 * 9 + 5
