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


# -- every bad input: one clear line and a documented exit code --------------------------------


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err and "cv2.error" not in err
    return err


@pytest.mark.parametrize("suffix", [".txt", ".mp4", ""])
def test_image_with_a_non_image_output_is_one_clear_line(tmp_path, astronaut_bgr, capsys, suffix):
    src = tmp_path / "a.png"
    cv2.imwrite(str(src), astronaut_bgr)
    dst = tmp_path / f"out{suffix}"
    assert main(["redact", str(src), str(dst)]) == 2
    assert "an image is written as one of" in _one_error_line(capsys)
    assert not dst.exists()


def test_directory_input_is_called_a_directory(tmp_path, capsys):
    assert main(["redact", str(tmp_path), str(tmp_path / "o.png")]) == 2
    assert "is a directory" in _one_error_line(capsys)
    assert main(["redact", str(tmp_path / "nope.png"), str(tmp_path / "o.png")]) == 2
    assert "does not exist" in _one_error_line(capsys)


def test_missing_output_folder_and_bad_rules_are_one_line(tmp_path, astronaut_bgr, capsys):
    src = tmp_path / "a.png"
    cv2.imwrite(str(src), astronaut_bgr)
    assert main(["redact", str(src), str(tmp_path / "no" / "o.png")]) == 2
    assert "output folder" in _one_error_line(capsys)
    rules = tmp_path / "rules.json"
    rules.write_text('{"method": "swirl", "targets": ["elephants"]}')
    assert main(["redact", str(src), str(tmp_path / "o.png"), "--rules", str(rules)]) == 2
    assert "is invalid" in _one_error_line(capsys)


NO_TARGETS = {"targets": []}  # decoding and writing are what these tests are about


@pytest.mark.shared
def test_truncated_video_exits_3_and_says_how_many_frames(tmp_path, vtest_path, capsys):
    data = vtest_path.read_bytes()
    src = tmp_path / "cut.avi"
    src.write_bytes(data[: len(data) // 20])  # the first 5 %: the index says 795 frames
    rules = tmp_path / "r.json"
    rules.write_text(json.dumps(NO_TARGETS))
    dst = tmp_path / "cut_redacted.avi"
    code = main(["redact", str(src), str(dst), "--rules", str(rules), "--quiet"])
    captured = capsys.readouterr()
    assert code == 3
    summary = json.loads(captured.out)
    assert summary["complete"] is False and summary["declared_frames"] == 795
    assert 0 < summary["frames"] < 795
    warn = [ln for ln in captured.err.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and f"decoded {summary['frames']} of 795 frames" in warn[0]
    cap = cv2.VideoCapture(str(dst))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == summary["frames"]  # every decodable frame was kept


def test_mp4_output_names_its_codec_and_the_audio_drop(tmp_path, vtest_frames, capsys):
    src = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (768, 576))
    for f in vtest_frames[:5]:
        w.write(f)
    w.release()
    rules = tmp_path / "r.json"
    rules.write_text(json.dumps(NO_TARGETS))
    dst = tmp_path / "clip.mp4"
    assert main(["redact", str(src), str(dst), "--rules", str(rules), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["audio"].startswith("not copied")
    import av

    with av.open(str(dst)) as container:  # what the file really holds, not what we say
        codec = container.streams.video[0].codec_context.name
        n = sum(1 for _ in container.decode(video=0))
    assert n == 5
    # PyAV's wheel carries libx264: the output must be H.264 (it was MPEG-4 part 2 before)
    assert "libx264" in av.codecs_available
    assert codec == "h264" and summary["codec"] == "h264"


def test_frames_of_another_size_keep_their_aspect():
    """A 16:9 frame written into a 4:3 video is fitted with bars, not squashed."""
    import numpy as np

    from streams.__main__ import fit_frame

    wide = np.full((360, 640, 3), 200, np.uint8)
    out = fit_frame(wide, 640, 480)
    assert out.shape == (480, 640, 3)
    assert out[:60].max() == 0 and out[-60:].max() == 0  # bars above and below
    assert (out[60:420] == 200).all()  # the picture itself keeps 640x360
