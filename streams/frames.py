"""What a viewer is served: one JPEG with the truthful redaction marker, or a placeholder.

``ServedFrame`` is what ``StreamHub`` (and the cluster relay) hand to the video routes: the
JPEG bytes, the ``X-Redacted`` marker saying what was applied to *that* frame, and when it
was captured. ``redaction_marker`` builds the marker; ``placeholder_jpeg`` draws the frame a
viewer gets while a camera delivers nothing fresh ("画面中断 HH:MM:SS"), from nothing: it holds
no pixel of any camera frame.

Marker format (``X-Redacted`` header of a snapshot and of each MJPEG part)::

    faces,persons,plates[,masks]   targets whose detection covered this frame, and privacy
                                   masks when the rule has any, redacted
    none                           the rule in force redacts nothing on this frame
    failed-closed                  detection or redaction failed: the frame is fully obscured
    placeholder                    no camera pixel at all (stall, dead camera, restarting)
    <any of the above>; grant=12   an audited unmask grant (id 12) lifted the redaction:
                                   "none; grant=12", or "masks; grant=12" when permanent
                                   masks stayed
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

import cv2
import numpy as np

log = logging.getLogger(__name__)

FAILED_CLOSED = "failed-closed"
PLACEHOLDER = "placeholder"
NOTHING = "none"

#: Fonts that can draw Chinese, most preferred first (Debian's fonts-noto-cjk, then others).
CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)
_GRANT_RE = re.compile(r"grant#(\d+)")


class ServedFrame(NamedTuple):
    """One frame as served: ``(seq, jpeg, marker, captured_utc, placeholder)``.

    ``seq`` grows by one per frame published to a viewer slot; ``marker`` is the
    ``X-Redacted`` value; ``captured_utc`` is when the source delivered the frame (for a
    placeholder: when the last good frame did, or None).
    """

    seq: int
    jpeg: bytes
    marker: str
    captured_utc: dt.datetime | None = None
    placeholder: bool = False


def grant_label(watermark: str) -> str:
    """Return the grant id named in an unmask watermark ("... grant#12" -> "12"), else "yes"."""
    m = _GRANT_RE.search(watermark or "")
    return m.group(1) if m else "yes"


def redaction_marker(
    applied: frozenset[str] | set[str],
    *,
    failed: bool = False,
    masks: bool = False,
    grant: str | None = None,
) -> str:
    """Return the ``X-Redacted`` value for one frame (format in the module docstring).

    ``applied`` are the targets whose detection covered the frame; ``masks`` says privacy
    masks were burned in; ``grant`` is the watermark of an unmask grant that lifted the
    redaction (the targets are then not redacted, whatever ``applied`` says).
    """
    if failed:
        base = FAILED_CLOSED
    elif grant is not None:
        base = "masks" if masks else NOTHING
    else:
        parts = sorted(applied) + (["masks"] if masks else [])
        base = ",".join(parts) if parts else NOTHING
    return base if grant is None else f"{base}; grant={grant_label(grant)}"


def placeholder_text(last_good_utc: dt.datetime | None, tz: str, *, cjk: bool = True) -> str:
    """Return the placeholder caption: "画面中断 HH:MM:SS" (last good frame, local time) or
    "等待画面" when the camera never delivered one; English when no CJK font is installed."""
    if last_good_utc is None:
        return "等待画面" if cjk else "waiting for video"
    local = last_good_utc.astimezone(ZoneInfo(tz)).strftime("%H:%M:%S")
    return f"画面中断 {local}" if cjk else f"video interrupted {local}"


@functools.cache
def cjk_font_path() -> str | None:
    """Return the path of an installed font that draws Chinese, or None."""
    for path in CJK_FONTS:
        if Path(path).is_file():
            return path
    log.warning("no CJK font installed (apt-get install fonts-noto-cjk): placeholders in English")
    return None


@functools.lru_cache(maxsize=64)
def placeholder_jpeg(width: int, height: int, text: str) -> bytes:
    """Return a mid-grey JPEG of ``width`` x ``height`` with ``text`` centred, drawn from nothing.

    Chinese needs a CJK font (Pillow draws it; OpenCV's Hershey fonts cannot): without one,
    pass English text (``placeholder_text(..., cjk=False)``).
    """
    width, height = max(64, int(width)), max(48, int(height))
    font_path = cjk_font_path()
    if font_path is not None or not text.isascii():
        img = _draw_with_pillow(width, height, text, font_path)
    else:
        img = np.full((height, width, 3), 96, np.uint8)
        scale = max(0.6, width / 900)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
        org = (max(0, (width - tw) // 2), (height + th) // 2)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 2,
                    cv2.LINE_AA)  # fmt: skip
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 70])
    if not ok:  # pragma: no cover - encoding a plain grey image does not fail
        raise RuntimeError("cannot encode the placeholder frame")
    return buf.tobytes()


def _draw_with_pillow(width: int, height: int, text: str, font_path: str | None) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (width, height), (96, 96, 96))
    draw = ImageDraw.Draw(img)
    size = max(14, width // 18)
    font = ImageFont.truetype(font_path, size) if font_path else ImageFont.load_default(size=size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    org = ((width - (right - left)) // 2 - left, (height - (bottom - top)) // 2 - top)
    draw.text(org, text, fill=(235, 235, 235), font=font)
    return np.ascontiguousarray(np.asarray(img)[:, :, ::-1])
