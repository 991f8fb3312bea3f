"""Obscure boxes and privacy-mask polygons in a frame: pixelate (default), fill, or blur.

Strength is scaled to each object's size (a pixelation block is a fraction of the box), a
margin is added around each box, and masks in 0-1 frame coordinates are rasterised with
``cv2.fillPoly`` per frame size. Blur is downscale-blur-upscale, never a large Gaussian kernel.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import cv2
import numpy as np

from streams.detectors.base import Box
from streams.rules import PrivacyMask, RedactionRules


def expand_box(box: Box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Return (x1, y1, x2, y2) ints of ``box`` grown by ``margin`` per side, clipped to the frame."""
    mx, my = box.width * margin, box.height * margin
    x1 = int(np.floor(max(0.0, box.x1 - mx)))
    y1 = int(np.floor(max(0.0, box.y1 - my)))
    x2 = int(np.ceil(min(float(width), box.x2 + mx)))
    y2 = int(np.ceil(min(float(height), box.y2 + my)))
    return x1, y1, x2, y2


def block_size(w: int, h: int, strength: float) -> int:
    """Return the pixelation block (px) for an object of w x h: 16 blocks across at 0, 4 at 1."""
    blocks_across = 16.0 - 12.0 * strength
    return max(2, int(round(min(w, h) / blocks_across)))


def pixelate(region: np.ndarray, block: int) -> np.ndarray:
    """Return ``region`` replaced by a mosaic of ``block``-pixel squares (area-averaged)."""
    h, w = region.shape[:2]
    sw, sh = max(1, w // block), max(1, h // block)
    small = cv2.resize(region, (sw, sh), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def blur(region: np.ndarray, strength: float) -> np.ndarray:
    """Return ``region`` blurred cheaply: downscale, small stack blur, upscale."""
    h, w = region.shape[:2]
    factor = 4 + int(12 * strength)
    sw, sh = max(1, w // factor), max(1, h // factor)
    small = cv2.resize(region, (sw, sh), interpolation=cv2.INTER_AREA)
    k = 3 if min(sw, sh) < 8 else 5
    small = cv2.stackBlur(small, (k, k)) if hasattr(cv2, "stackBlur") else cv2.blur(small, (k, k))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _obscure(
    region: np.ndarray, method: str, strength: float, color: tuple[int, int, int]
) -> np.ndarray:
    h, w = region.shape[:2]
    if method == "fill":
        out = np.empty_like(region)
        out[:] = color
        return out
    if method == "blur":
        return blur(region, strength)
    return pixelate(region, block_size(w, h, strength))


def obscure_boxes(frame: np.ndarray, boxes: Iterable[Box], rules: RedactionRules) -> None:
    """Obscure every box (plus margin) in ``frame`` in place, as the rules say."""
    h, w = frame.shape[:2]
    for box in boxes:
        x1, y1, x2, y2 = expand_box(box, rules.margin, w, h)
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        region = frame[y1:y2, x1:x2]
        region[:] = _obscure(region, rules.method, rules.strength, rules.fill_color)


@lru_cache(maxsize=64)
def _mask_bitmap(points: tuple[tuple[float, float], ...], width: int, height: int):
    pts = np.array([[x * width, y * height] for x, y in points], dtype=np.float64)
    pts = np.round(pts).astype(np.int32)
    x, y, bw, bh = cv2.boundingRect(pts)
    x2, y2 = min(width, x + bw + 1), min(height, y + bh + 1)
    x, y = max(0, x), max(0, y)
    bitmap = np.zeros((y2 - y, x2 - x), np.uint8)
    cv2.fillPoly(bitmap, [pts - np.array([x, y], np.int32)], 255)
    inside = bitmap.astype(bool)
    inside.setflags(write=False)  # shared through the cache
    return (x, y, x2, y2), inside


def rasterise_mask(
    mask: PrivacyMask, width: int, height: int
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Return the mask's pixel rect (x1, y1, x2, y2) and a boolean bitmap of that rect."""
    return _mask_bitmap(tuple(mask.points), width, height)


def apply_masks(frame: np.ndarray, masks: Iterable[PrivacyMask], rules: RedactionRules) -> None:
    """Burn privacy-mask polygons into ``frame`` in place."""
    h, w = frame.shape[:2]
    for mask in masks:
        (x1, y1, x2, y2), bitmap = rasterise_mask(mask, w, h)
        if x2 <= x1 or y2 <= y1:
            continue
        region = frame[y1:y2, x1:x2]
        obscured = _obscure(region, mask.method, max(rules.strength, 0.5), rules.fill_color)
        region[bitmap] = obscured[bitmap]


def redact_frame(
    frame: np.ndarray, boxes: Iterable[Box], rules: RedactionRules, *, lift: bool = False
) -> np.ndarray:
    """Return a redacted copy of ``frame``.

    ``lift=True`` is the unmask-grant path: detections and liftable masks are not
    applied, permanent masks always are.
    """
    out = frame.copy()
    if not lift:
        obscure_boxes(out, boxes, rules)
    masks = [m for m in rules.masks if m.permanent or not lift]
    apply_masks(out, masks, rules)
    return out


def fail_closed_frame(frame: np.ndarray, blocks_across: int = 12) -> np.ndarray:
    """Return ``frame`` pixelated as a whole so coarsely that no face or plate is readable."""
    h, w = frame.shape[:2]
    return pixelate(frame, max(2, w // blocks_across))
