"""Stream starts, dropped frames and boxes that spare pixels: no face leaves unseen.

Real decoding of vtest.avi, the real default detectors (CenterFace, MOG2), real faces (the
astronaut's head) pasted onto the street. A face counts as leaked when the served crop's
SSIM to the raw crop is above 0.6 at 64x64, or when more than 5 % of its pixels are served
exactly as they came in.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from streams.pipeline import RedactionPipeline
from streams.rules import RedactionRules
from tests.streams.conftest import astronaut_head, face_recognisable, paste_head

pytestmark = pytest.mark.shared

#: Default rules; the deadline is the longest allowed (a loaded test machine must not turn
#: frames into fail-closed ones, which would hide what these tests look for).
DEFAULT = RedactionRules(detector_timeout_ms=60_000)


def _raw_share(out: np.ndarray, raw: np.ndarray, box) -> float:
    """Return the share of the box's pixels served exactly as they came in."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return float(np.all(out[y1:y2, x1:x2] == raw[y1:y2, x1:x2], axis=2).mean())


def _leaked(out: np.ndarray | None, raw: np.ndarray, box) -> bool:
    if out is None:
        return False
    return face_recognisable(out, raw, box) or _raw_share(out, raw, box) > 0.05


@pytest.mark.parametrize(
    "face_w, step, vertical", [(40, 4, False), (30, 4, False), (24, 4, True), (40, 8, True)]
)
def test_a_person_who_stops_is_seen_by_the_face_detector_before_the_motion_box_lets_go(
    street_720p, astronaut_bgr, face_w, step, vertical
):
    """A person walks in (the motion detector boxes them, so the face detector is spared
    those pixels) and stops: early in a stream the background model absorbs them within a
    few frames and the motion box shrinks. The spared face used to be served raw on that
    frame (53-78 % of its pixels, SSIM above 0.6), before the face detector ever saw it."""
    head = astronaut_head(astronaut_bgr, face_w)
    pipeline = RedactionPipeline(DEFAULT)
    x, y = 100, 300
    leaks = []
    for i in range(80):
        frame = street_720p.copy()
        if 10 <= i < 40:  # walks for 30 frames, then stands still
            if vertical:
                y += step
            else:
                x += step
        faces = [paste_head(frame, head, x, y)] if i >= 10 else []
        result = pipeline.process(frame)
        assert result.failed is None or result.failed == "warmup", result.failed
        leaks += [i for box in faces if _leaked(result.frame, frame, box)]
    assert leaks == []


# -- frame numbers: gaps, new runs -----------------------------------------------------------


def _clip_frames(tmp_path, frames, fps=25.0):
    """Return ``frames`` as decoded from an MJPG file (what a file camera delivers)."""
    h, w = frames[0].shape[:2]
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    assert len(out) == len(frames)
    return out


@pytest.mark.parametrize("keep_every", [2, 3, 7])
def test_faces_that_appear_and_move_while_frames_are_dropped_are_never_served(
    tmp_path, street_720p, astronaut_bgr, keep_every
):
    """A reader that keeps every k-th frame (slow consumer): faces appear and move in frames
    the pipeline never sees; each frame it does see is checked against what was analysed."""
    heads = [astronaut_head(astronaut_bgr, w) for w in (20, 32, 48)]
    frames, truth = [], []
    for i in range(60):
        f = street_720p.copy()
        faces = []
        for k, head in enumerate(heads):
            start = 5 + 13 * k  # each appears at once, on a frame that may be dropped
            if i >= start:
                faces.append(paste_head(f, head, 150 + 350 * k + 5 * (i - start), 200 + 2 * k * i))
        frames.append(f)
        truth.append(faces)
    decoded = _clip_frames(tmp_path, frames)
    pipeline = RedactionPipeline(RedactionRules(targets={"faces"}, detector_timeout_ms=60_000))
    leaks = []
    kept = list(range(0, 60, keep_every))
    for i in kept:
        result = pipeline.process(decoded[i], seq=i)
        leaks += [i for box in truth[i] if _leaked(result.frame, decoded[i], box)]
    assert leaks == []
    assert pipeline.stats["frames_skipped"] == kept[-1] + 1 - len(kept)


def test_a_frame_number_that_goes_back_starts_a_new_run_detected_whole(vtest_frames):
    pipeline = RedactionPipeline(RedactionRules(targets={"faces"}, detector_timeout_ms=60_000))
    frame = vtest_frames[0]
    h, w = frame.shape[:2]
    first = pipeline.process(frame, seq=100)
    assert [(r.x1, r.y1, r.x2, r.y2) for r in first.regions] == [(0, 0, w, h)]
    assert pipeline.process(frame, seq=101).regions == []  # nothing changed, nothing detected
    again = pipeline.process(frame, seq=3)  # the source was reopened and counts from the start
    assert [(r.x1, r.y1, r.x2, r.y2) for r in again.regions] == [(0, 0, w, h)]
    assert pipeline.stats["restarts"] == 1


class StillSource:
    """One real street frame, over and over; ``plan["down"]`` drops the connection."""

    display_url = "still://cam"
    expected_interval = 0.02

    def __init__(self, plan, frame):
        self.plan, self.frame = plan, frame

    def open(self):
        from streams.sources import SourceError

        if self.plan.get("down"):
            raise SourceError("refused")

    def read(self):
        from streams.sources import SourceError

        time.sleep(0.02)
        if self.plan.get("down"):
            raise SourceError("connection lost")
        return self.frame.copy()

    def close(self):
        pass


def test_a_reconnected_camera_detects_its_first_frame_whole(monkeypatch, vtest_frames):
    """After a reconnect the picture may be another (a PTZ preset, another stream on the same
    URL): its first frame was compared with what was seen before the outage."""
    import streams.hub as hub_mod
    from streams.hub import HubSettings, StreamHub

    plan = {}
    frame = cv2.resize(vtest_frames[0], (320, 240), interpolation=cv2.INTER_AREA)
    monkeypatch.setattr(hub_mod, "create_source", lambda cfg: StillSource(plan, frame))
    rules = RedactionRules(targets={"faces"}, detector_timeout_ms=60_000, refresh_every=100_000)
    settings = HubSettings(backoff_initial_s=0.05, backoff_max_s=0.2, idle_stop_s=60)
    hub = StreamHub(lambda cid: {"type": "file", "path": "unused"}, lambda cid: rules,
                    settings=settings)  # fmt: skip
    try:
        with hub.subscribe(1) as wait:
            assert wait(0, 10) is not None
            stream = hub.streams()[1]
            _wait_for(lambda: stream.counters["processed"] >= 5, 20)
            assert stream.pipeline.stats["whole_frame_detections"] == 1
            plan["down"] = True
            _wait_for(lambda: stream.counters["disconnects"] >= 1, 20)
            plan["down"] = False
            _wait_for(lambda: stream.counters["connects"] >= 2, 20)
            done = stream.counters["processed"]
            _wait_for(lambda: stream.counters["processed"] >= done + 5, 20)
            assert stream.pipeline.stats["whole_frame_detections"] == 2
            assert stream.pipeline.stats["restarts"] == 1
    finally:
        hub.close()


def _wait_for(pred, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
