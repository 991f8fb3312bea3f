"""The heat-map overlay's colours: a relative density image as a transparent PNG."""

from __future__ import annotations

import cv2
import numpy as np

#: density 0..1 (after the percentile scaling and gamma below) -> RGB colour stops
STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
COLOURS = np.array([[40, 90, 255], [0, 210, 255], [60, 255, 120], [255, 210, 0],
                    [255, 40, 40]], dtype=float)  # fmt: skip


def density_png(raster: np.ndarray) -> bytes:
    """Return a relative density image (``geo.density.density_image``) as an RGBA PNG.

    Transparent where there is nothing; low densities stay see-through.
    """
    # scale to a high percentile, not the maximum: one very hot grid would otherwise leave
    # the rest of the city transparent
    nz = raster[raster > 0]
    ref = float(np.percentile(nz, 99.0)) if nz.size else 1.0
    v = np.clip(raster / max(ref, 1e-12), 0, 1) ** 0.6
    rgb = np.stack([np.interp(v, STOPS, COLOURS[:, i]) for i in range(3)], axis=-1)
    alpha = np.clip((v - 0.08) * 1.4, 0, 0.8) * 255  # low density stays see-through
    bgra = np.dstack([rgb[..., 2], rgb[..., 1], rgb[..., 0], alpha]).astype(np.uint8)
    ok, buf = cv2.imencode(".png", bgra, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 BGRA array
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()
