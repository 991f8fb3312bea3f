"""Drawing privacy masks on a camera snapshot: Plotly shapes <-> 0-1 mask polygons.

Pure functions used by the privacy console (``dashboard/pages/privacy.py``). Masks are
image-space polygons in relative 0-1 frame coordinates (x right, y down), never map
coordinates; the canvas is the camera's *redacted* snapshot under 0-1 axes.
"""

from __future__ import annotations

import re
import time

_NUM = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_POINT = re.compile(rf"({_NUM})\s*,\s*({_NUM})")


def path_to_points(path: str) -> list[tuple[float, float]]:
    """Return the vertices of a Plotly closed SVG path ("M x,y L x,y ... Z"), clipped to 0-1."""
    pts = [(float(x), float(y)) for x, y in _POINT.findall(path or "")]
    clipped = [(min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)) for x, y in pts]
    out: list[tuple[float, float]] = []
    for p in clipped:
        if not out or p != out[-1]:
            out.append(p)
    if len(out) > 1 and out[0] == out[-1]:
        out.pop()
    return out


def shape_to_points(shape: dict) -> list[tuple[float, float]]:
    """Return the 0-1 polygon of a Plotly shape (``path`` or ``rect``); [] if unusable."""
    if shape.get("type") == "rect":
        x0, x1 = sorted((float(shape["x0"]), float(shape["x1"])))
        y0, y1 = sorted((float(shape["y0"]), float(shape["y1"])))
        pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        return [(min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)) for x, y in pts]
    if shape.get("type") == "path":
        return path_to_points(shape.get("path", ""))
    return []


def shapes_from_relayout(relayout: dict | None, shapes: list[dict]) -> list[dict]:
    """Return the figure's shapes after a ``relayoutData`` event (new list or edited items)."""
    if not relayout:
        return shapes
    if "shapes" in relayout:
        return list(relayout["shapes"] or [])
    shapes = [dict(s) for s in shapes]
    for key, value in relayout.items():
        m = re.match(r"shapes\[(\d+)\]\.(\w+)$", key)
        if m and int(m.group(1)) < len(shapes):
            shapes[int(m.group(1))][m.group(2)] = value
    return shapes


def masks_from_shapes(shapes: list[dict], *, permanent: bool) -> list[dict]:
    """Return ``PrivacyMask`` dicts (≥ 3 points each) for the drawn shapes."""
    masks = []
    for i, shape in enumerate(shapes):
        pts = shape_to_points(shape)
        if len(pts) >= 3:
            masks.append(
                {
                    "name": f"mask {i + 1}",
                    "points": [[round(x, 4), round(y, 4)] for x, y in pts],
                    "permanent": permanent,
                    "method": "fill",
                }
            )
    return masks


def shapes_from_masks(masks: list[dict]) -> list[dict]:
    """Return Plotly path shapes drawing ``masks`` (0-1 coordinates)."""
    out = []
    for m in masks:
        pts = m["points"]
        path = "M" + "L".join(f"{x},{y}" for x, y in pts) + "Z"
        out.append(
            {
                "type": "path",
                "path": path,
                "line": {"color": "#ff5a5a", "width": 2},
                "fillcolor": "rgba(255,90,90,0.25)",
                "editable": True,
            }
        )
    return out


def canvas_figure(camera_id: int | None, shapes: list[dict]) -> dict:
    """Return the drawing canvas: the camera's redacted snapshot under 0-1 axes."""
    images = []
    if camera_id is not None:
        images.append(
            {
                "source": f"/video/{int(camera_id)}.jpg?wait=5&t={int(time.time())}",
                "xref": "x",
                "yref": "y",
                "x": 0,
                "y": 0,
                "sizex": 1,
                "sizey": 1,
                "sizing": "stretch",
                "layer": "below",
            }
        )
    return {
        "data": [],
        "layout": {
            "images": images,
            "shapes": shapes,
            "dragmode": "drawclosedpath",
            "newshape": {"line": {"color": "#ff5a5a"}, "fillcolor": "rgba(255,90,90,0.25)"},
            "xaxis": {"range": [0, 1], "visible": False, "fixedrange": True},
            "yaxis": {"range": [1, 0], "visible": False, "fixedrange": True},
            "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
            "height": 360,
            "paper_bgcolor": "#0f1c2e",
            "plot_bgcolor": "#0f1c2e",
        },
    }
