"""A stall never looks live; snapshots and markers tell the truth about every frame.

Real pipeline, real decoding (vtest.avi, scikit-image's astronaut), a real SQLite database
for the status write-back; only the detector that hangs and the source that stops after a
scene cut are written here (registered the way an extension registers one).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Literal

import cv2
import numpy as np
import pytest

from layers.db import Database
from layers.models import Camera
from layers.services import cameras as camera_service
from layers.services import video as video_service
from streams.detectors import DETECTORS
from streams.frames import PLACEHOLDER, cjk_font_path, placeholder_jpeg, placeholder_text
from streams.hub import CameraStream, HubSettings, StreamHub
from streams.registry import StrictModel
from streams.rules import RedactionRules
from streams.sources import FileSourceConfig, SourceError

RELEASE = threading.Event()  # set at the end of a test: a hung detector call returns


class HangingDetectorConfig(StrictModel):
    """A detector that answers ``calls`` times and then blocks until the test ends."""

    type: Literal["test_hang"] = "test_hang"
    calls: int = 5


class HangingDetector:
    def __init__(self, config):
        self.config = config
        self.n = 0

    def detect(self, frame):
        self.n += 1
        if self.n > self.config.calls:
            RELEASE.wait()
        return []


DETECTORS.register(HangingDetectorConfig)(HangingDetector)


class AlwaysFailingConfig(StrictModel):
    type: Literal["test_fail"] = "test_fail"


class AlwaysFailing:
    def __init__(self, config):
        self.config = config

    def detect(self, frame):
        raise RuntimeError("injected failure")


DETECTORS.register(AlwaysFailingConfig)(AlwaysFailing)


def decode(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def db_with_camera(tmp_path, vtest_path):
    db = Database(f"sqlite:///{tmp_path / 'cams.sqlite'}")
    db.migrate()
    with db.session() as s:
        s.add(Camera(id=1, gb_id="53010200001320000001", name="cam", cls=1, lon=102.7, lat=25.0,
                     stream_url=str(vtest_path)))  # fmt: skip
    yield db
    db.dispose()


@pytest.mark.shared
def test_hung_detector_marks_stalled_in_hub_and_database_and_viewers_see_the_placeholder(
    db_with_camera,
):
    RELEASE.clear()
    rules = RedactionRules(targets={"faces"}, detect_every=1,
                           detectors={"faces": {"type": "test_hang", "calls": 8}})  # fmt: skip
    bindings = video_service.hub_bindings(db_with_camera)
    settings = HubSettings(stall_after_s=1.5, idle_stop_s=60, timezone="Asia/Shanghai")
    hub = StreamHub(bindings.source_for, lambda cid: rules, on_status=bindings.on_status,
                    settings=settings)  # fmt: skip
    try:
        with hub.subscribe(1) as wait:
            stream = wait.stream
            frames = []
            while not frames or not frames[-1].placeholder:
                got = wait(frames[-1].seq if frames else 0, 10)
                assert got is not None, "nothing published: neither frames nor the placeholder"
                frames.append(got)
            real = [f for f in frames if not f.placeholder]
            assert len(real) >= 5 and all(f.marker == "faces" for f in real)
            wait_for(lambda: stream.status == "stalled", 60, "the hub to say stalled")
            wait_for(lambda: camera_service.get_camera(db_with_camera, 1).status == "stalled",
                     60, "the database to say stalled")  # fmt: skip
            # the viewer now gets placeholders (the watchdog sends one at least every
            # placeholder_every_s), never the last frame
            last_good = real[-1]
            placeholders = [frames[-1]]
            while len(placeholders) < 3:
                got = wait(placeholders[-1].seq, 30)
                assert got is not None, "the watchdog sent no further placeholder"
                placeholders.append(got)
            for p in placeholders:
                assert p.placeholder and p.marker == PLACEHOLDER
                assert p.captured_utc == last_good.captured_utc
                img = decode(p.jpeg)
                assert img.shape == decode(last_good.jpeg).shape
                assert np.abs(img.astype(int) - decode(last_good.jpeg).astype(int)).mean() > 20
            snap = hub.snapshot(1, timeout=1)
            assert snap is not None and snap.placeholder  # snapshots do not look live either
    finally:
        RELEASE.set()
        hub.close()
    # what the placeholder says: 画面中断 and the last good frame's time in Beijing time
    local = last_good.captured_utc.astimezone(dt.timezone(dt.timedelta(hours=8)))
    text = placeholder_text(last_good.captured_utc, "Asia/Shanghai", cjk=True)
    assert text == f"画面中断 {local:%H:%M:%S}"
    if cjk_font_path() is not None:
        assert placeholders[-1].jpeg == placeholder_jpeg(*decode(last_good.jpeg).shape[1::-1],
                                                         text)  # fmt: skip


def test_placeholder_draws_chinese_with_the_cjk_font():
    """The CJK font is a CI dependency (fonts-noto-cjk): the caption must not be tofu boxes."""
    assert cjk_font_path() is not None, "apt-get install fonts-noto-cjk"
    a = decode(placeholder_jpeg(640, 360, "画面中断 12:00:00"))
    b = decode(placeholder_jpeg(640, 360, "画面停止 12:00:00"))  # one character differs
    assert np.abs(a.astype(int) - b.astype(int)).max() > 100  # glyphs, not one tofu box each


class DeadSource:
    display_url = "dead://cam"
    expected_interval = 0.1

    def open(self):
        raise SourceError("connection refused")

    def read(self):  # pragma: no cover - never opened
        raise SourceError("not open")

    def close(self):
        pass


def test_dead_camera_viewer_gets_a_placeholder_every_second():
    stream = CameraStream(9, DeadSource, lambda cid: RedactionRules(),
                          settings=HubSettings(backoff_max_s=0.5))  # fmt: skip
    stream.start()
    try:
        with stream.viewer() as wait:
            got, times = None, []
            while len(times) < 4:
                got = wait(got.seq if got else 0, 2.0)
                assert got is not None, "a viewer of a dead camera got nothing for 2 s"
                times.append(time.monotonic())
                assert got.placeholder and got.marker == PLACEHOLDER and got.captured_utc is None
        gaps = np.diff(times)
        assert gaps.max() < 2.0, gaps  # one a second (generous on a busy machine)
        wait_for(lambda: stream.status == "offline", 15, "offline")
    finally:
        stream.stop()


class SceneCutSource:
    """Blank frames, then a cut to a face, then nothing more (the camera froze on the face)."""

    display_url = "scripted://cut"
    expected_interval = 0.04
    paced_by_consumer = True  # every frame reaches the pipeline: none is skipped

    def __init__(self, face: np.ndarray, blanks: int = 4, faces: int = 2) -> None:
        blank = np.full_like(face, 90)
        self.frames = [blank] * blanks + [face] * faces
        self.closed = threading.Event()

    def open(self):
        pass

    def read(self):
        if self.frames:
            return self.frames.pop(0).copy()
        self.closed.wait(30)  # frozen: the stream's newest frame stays the face
        raise SourceError("closed")

    def close(self):
        self.closed.set()


def test_snapshot_is_never_a_frame_redacted_from_tracked_boxes_alone(astronaut_bgr):
    """Detection every 3rd frame; a cut to a face lands between detections.

    The MJPEG frames right after the cut are the pipeline's business (it must cover every
    frame); a snapshot must in any case be a frame whose detection saw it.
    """
    face_box = DETECTORS.create(RedactionRules().detector_config("faces")).detect(astronaut_bgr)
    assert face_box, "the face detector finds the astronaut"
    b = max(face_box, key=lambda x: (x.x2 - x.x1) * (x.y2 - x.y1))
    y1, y2, x1, x2 = int(b.y1), int(b.y2), int(b.x1), int(b.x2)
    raw_face = astronaut_bgr[y1:y2, x1:x2].astype(int)
    # 4 blank frames: detections on frames 1 and 4; the cut comes at frame 5 (tracked only)
    source = SceneCutSource(astronaut_bgr, blanks=4, faces=2)
    rules = RedactionRules(targets={"faces"}, detect_every=3, max_track_ms=10_000)
    stream = CameraStream(3, lambda: source, lambda cid: rules,
                          settings=HubSettings(stall_after_s=60))  # fmt: skip
    stream.start()
    try:
        wait_for(lambda: stream.counters["processed"] >= 6, 20, "6 processed frames")
        snap = stream.wait_snapshot(5)
    finally:
        stream.stop()
    assert snap is not None and not snap.placeholder
    crop = decode(snap.jpeg)[y1:y2, x1:x2].astype(int)
    assert np.abs(crop - raw_face).mean() > 20, "the snapshot shows the raw face"
    assert snap.marker == "faces"


def test_failed_closed_frames_say_so(vtest_path):
    rules = RedactionRules(targets={"faces"}, detectors={"faces": {"type": "test_fail"}})
    hub = StreamHub(lambda cid: FileSourceConfig(path=str(vtest_path)), lambda cid: rules)
    try:
        with hub.subscribe(4) as wait:
            got = wait(0, 10)
            assert got is not None and got.marker == "failed-closed"
        snap = hub.snapshot(4, timeout=5)
        assert snap is not None and snap.marker == "failed-closed"
    finally:
        hub.close()
