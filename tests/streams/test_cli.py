"""``python -m streams redact``: images and videos, same size and fps, faces gone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from streams.__main__ import main
from streams.detectors import DETECTORS
from streams.detectors.faces import SlimefaceConfig

REPO = Path(__file__).resolve().parents[2]


def test_redact_image_removes_the_face(tmp_path, astronaut_bgr, capsys):
    src, dst = tmp_path / "astronaut.png", tmp_path / "out.png"
    cv2.imwrite(str(src), astronaut_bgr)
    assert main(["redact", str(src), str(dst)]) == 0
    out = cv2.imread(str(dst))
    assert out.shape == astronaut_bgr.shape
    det = DETECTORS.create(SlimefaceConfig())
    assert det.detect(astronaut_bgr) and not det.detect(out)
    assert json.loads(capsys.readouterr().out)["redacted"] == 1


@pytest.mark.slow
def test_redact_video_keeps_size_fps_and_frame_count(tmp_path, vtest_frames):
    src, dst = tmp_path / "clip.avi", tmp_path / "clip_redacted.mp4"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (768, 576))
    for f in vtest_frames[:12]:
        w.write(f)
    w.release()
    res = subprocess.run(
        [sys.executable, "-m", "streams", "redact", str(src), str(dst), "--detect-every", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "frame" in res.stderr  # tqdm progress bar
    cap = cv2.VideoCapture(str(dst))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (768, 576)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12


def test_bad_rules_file_and_missing_input_exit_2(tmp_path, astronaut_bgr, capsys):
    src = tmp_path / "a.png"
    cv2.imwrite(str(src), astronaut_bgr)
    rules = tmp_path / "rules.json"
    rules.write_text('{"method": "swirl"}')
    assert main(["redact", str(src), str(tmp_path / "o.png"), "--rules", str(rules)]) == 2
    assert "invalid" in capsys.readouterr().err
    assert main(["redact", str(tmp_path / "missing.png"), str(tmp_path / "o.png")]) == 2


def test_rules_file_is_used(tmp_path, astronaut_bgr):
    src, dst = tmp_path / "a.png", tmp_path / "o.png"
    cv2.imwrite(str(src), astronaut_bgr)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"targets": [], "masks": [{"points": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
                                 "fill_color": [0, 0, 0]}))  # fmt: skip
    assert main(["redact", str(src), str(dst), "--rules", str(rules)]) == 0
    assert cv2.imread(str(dst)).max() == 0
