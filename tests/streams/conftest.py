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
