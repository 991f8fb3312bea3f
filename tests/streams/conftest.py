"""Fixtures for the streams tests: real images (scikit-image, bundled) and vtest.avi frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest


def lfw_face_canvas(face: np.ndarray, scale: int = 4) -> np.ndarray:
    """Return a 25x25 float LFW crop upscaled and centred on a grey canvas, as BGR uint8.

    LFW crops are tight, so a detector needs some context around them: the canvas is three
    face-widths wide.
    """
    img = cv2.resize(
        (face * 255).astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC
    )
    s = img.shape[0]
    canvas = np.full((3 * s, 3 * s), 128, np.uint8)
    canvas[s : 2 * s, s : 2 * s] = img
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """Return scikit-image's bundled astronaut photo (one face) as BGR."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


@pytest.fixture(scope="session")
def lfw_faces() -> np.ndarray:
    """Return the 100 face crops of scikit-image's bundled ``lfw_subset`` (25x25 floats)."""
    from skimage import data

    return data.lfw_subset()[:100]


@pytest.fixture(scope="session")
def lfw_nonfaces() -> np.ndarray:
    """Return the 100 non-face crops of ``lfw_subset``."""
    from skimage import data

    return data.lfw_subset()[100:]


@pytest.fixture(scope="session")
def vtest_path(shared_data):
    """Return the path of ../shared/data/vtest.avi (768x576, 10 fps, pedestrians)."""
    path = shared_data / "vtest.avi"
    if not path.is_file():
        pytest.fail(f"{path} is missing from the shared data set")
    return path


@pytest.fixture(scope="session")
def vtest_frames(vtest_path) -> list[np.ndarray]:
    """Return the first 120 frames of vtest.avi."""
    cap = cv2.VideoCapture(str(vtest_path))
    frames = []
    while len(frames) < 120:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    assert len(frames) == 120
    return frames


#: The astronaut's face box in scikit-image's 512x512 photo (CenterFace's box, rounded).
ASTRONAUT_FACE = (182, 58, 270, 178)


def astronaut_head(astronaut: np.ndarray, face_w: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Return the astronaut's head (face, hair, neck) scaled to a ``face_w`` px wide face.

    Also returns the face box inside the crop as (x, y, w, h). The head keeps the context a
    real face has around it in a street scene (a bare face square does not).
    """
    fx1, fy1, fx2, fy2 = ASTRONAUT_FACE
    fw = fx2 - fx1
    m = fw // 2
    x1, y1, x2, y2 = fx1 - m, max(0, fy1 - m), fx2 + m, fy2 + m
    s = face_w / fw
    head = cv2.resize(astronaut[y1:y2, x1:x2], None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    box = (round((fx1 - x1) * s), round((fy1 - y1) * s), face_w, round((fy2 - fy1) * s))
    return head, box


def paste_head(frame: np.ndarray, head_and_box, x: int, y: int) -> tuple[int, int, int, int]:
    """Paste a head from ``astronaut_head`` with its top-left at (x, y); return the face box."""
    head, (ox, oy, fw, fh) = head_and_box
    h, w = head.shape[:2]
    frame[y : y + h, x : x + w] = head
    return x + ox, y + oy, x + ox + fw, y + oy + fh


def face_recognisable(served: np.ndarray | None, raw: np.ndarray, box) -> bool:
    """Return True when the served face crop still matches the raw one (SSIM > 0.6 at 64x64)."""
    from skimage.metrics import structural_similarity

    if served is None:
        return False
    x1, y1, x2, y2 = (int(v) for v in box)

    def crop(img):
        g = cv2.cvtColor(img[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
        return cv2.resize(g, (64, 64), interpolation=cv2.INTER_AREA)

    return structural_similarity(crop(served), crop(raw), data_range=255) > 0.6


@pytest.fixture(scope="session")
def street_720p(vtest_frames) -> np.ndarray:
    """Return vtest.avi's first frame scaled to 1280x720 (a real street background)."""
    return cv2.resize(vtest_frames[0], (1280, 720), interpolation=cv2.INTER_LINEAR)
