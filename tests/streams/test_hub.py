"""The camera hub: one reader shared by viewers, status callbacks, reconnects, rule reloads."""

from __future__ import annotations

import threading
import time
from typing import Literal

import cv2
import numpy as np
import pytest

from streams.detectors import DETECTORS, Box
from streams.hub import HubSettings, StreamHub
from streams.registry import StrictModel
from streams.rules import PrivacyMask, RedactionRules
from streams.sources import FileSourceConfig, SourceError

FAST = HubSettings(
    stale_after_s=0.6,
    offline_after_s=1.5,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    idle_stop_s=60,
    rules_poll_s=0.2,
    status_heartbeat_s=60,
)


class FlakyDetectorConfig(StrictModel):
    """Test-only detector registered the way an extension would register one."""

    type: Literal["test_flaky"] = "test_flaky"
    fail_every: int = 2


class FlakyDetector:
    def __init__(self, config):
        self.config = config
        self.n = 0

    def detect(self, frame):
        self.n += 1
        if self.n % self.config.fail_every == 0:
            raise RuntimeError("injected detector failure")
        return [Box(0, 0, frame.shape[1] / 2, frame.shape[0] / 2, label="face")]


DETECTORS.register(FlakyDetectorConfig)(FlakyDetector)


class ScriptedSource:
    """Noise frames; a shared ``plan`` says whether opens succeed and how fast frames come."""

    display_url = "scripted://cam"

    def __init__(self, plan):
        self.plan = plan
        self.expected_interval = plan.get("interval", 0.02)

    def open(self):
        self.plan["opens"] = self.plan.get("opens", 0) + 1
        if self.plan.get("down"):
            raise SourceError("rtsp://admin:hunter2@10.1.1.1/x refused")

    def read(self):
        time.sleep(self.plan.get("interval", 0.02))
        if self.plan.get("down"):
            raise SourceError("connection lost")
        rng = np.random.default_rng(self.plan.setdefault("n", 0))
        self.plan["n"] += 1
        frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        self.plan.setdefault("raw", []).append(frame)
        return frame

    def close(self):
        pass


def _hub(plan, rules, statuses, **kw):
    import streams.hub as hub_mod

    hub = StreamHub(
        lambda cid: {"type": "file", "path": "unused"},
        lambda cid: rules(),
        on_status=lambda *a: statuses.append((time.monotonic(), a[1])),
        settings=kw.pop("settings", FAST),
        **kw,
    )
    # swap the factory for the scripted source (a test seam: same CameraStream code path)
    orig = hub_mod.create_source
    hub_mod.create_source = lambda cfg: ScriptedSource(plan)
    return hub, lambda: setattr(hub_mod, "create_source", orig)


@pytest.fixture
def scripted_hub():
    made = []

    def factory(plan, rules=RedactionRules, statuses=None, **kw):
        statuses = statuses if statuses is not None else []
        hub, restore = _hub(plan, rules, statuses, **kw)
        made.append((hub, restore))
        return hub, statuses

    yield factory
    for hub, restore in made:
        hub.close()
        restore()


def _wait_status(statuses, want, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if statuses and statuses[-1][1] == want:
            return statuses[-1][0]
        time.sleep(0.02)
    raise AssertionError(f"status never became {want}: {[s for _, s in statuses]}")


def test_file_source_shared_by_viewers(vtest_path):
    statuses = []
    hub = StreamHub(
        lambda cid: FileSourceConfig(path=str(vtest_path)),
        lambda cid: RedactionRules(targets=set()),
        on_status=lambda cid, st, t: statuses.append((cid, st, t)),
        settings=FAST,
    )
    try:
        got = {1: [], 2: []}

        def view(k):
            with hub.subscribe(7) as wait:
                seq = 0
                while len(got[k]) < 5:
                    r = wait(seq, 5)
                    assert r is not None
                    seq = r[0]
                    got[k].append(r[1])

        threads = [threading.Thread(target=view, args=(k,)) for k in got]
        [t.start() for t in threads]
        [t.join(30) for t in threads]
        assert len(got[1]) == len(got[2]) == 5
        stream = hub.streams()[7]
        assert stream.counters["connects"] == 1  # one reader for both viewers
        assert cv2.imdecode(np.frombuffer(got[1][0], np.uint8), cv2.IMREAD_COLOR).shape == (
            576,
            768,
            3,
        )
        # the first status that says anything is online, with the time of a frame (a status
        # of "unknown" may be reported while the reader is still opening on a busy machine)
        known = [s for s in statuses if s[1] != "unknown"]
        assert known[0][:2] == (7, "online") and known[0][2] is not None, statuses
        assert hub.snapshot(7).jpeg[:2] == b"\xff\xd8"
    finally:
        hub.close()


def test_unpaced_file_is_read_as_fast_as_it_is_redacted_and_nothing_is_skipped(
    vtest_path, monkeypatch
):
    from types import SimpleNamespace

    from streams import sources

    # the source's own clock: every wait it makes for the file's frame rate is counted
    waits: list[float] = []
    clock = SimpleNamespace(monotonic=time.monotonic, sleep=waits.append)
    monkeypatch.setattr(sources, "time", clock)
    hub = StreamHub(
        lambda cid: FileSourceConfig(path=str(vtest_path), realtime=False),
        lambda cid: RedactionRules(targets=set()),
        settings=FAST,
    )
    try:
        with hub.subscribe(8) as wait:
            seq = 0
            while seq < 40:
                r = wait(seq, 30)
                assert r is not None
                seq = r[0]
        counters = hub.streams()[8].counters
        # vtest.avi is 10 fps; unpaced, the source never waits for it: the redaction sets the
        # pace (how fast that is: bench/bench_redact.py)
        assert waits == [], f"the unpaced source waited {len(waits)} times for the file's clock"
        assert counters["dropped"] == 0 and counters["served"] >= 40
    finally:
        hub.close()


def test_goes_offline_then_recovers_and_never_serves_raw(scripted_hub):
    plan = {}
    rules = RedactionRules(
        targets={"faces"}, detect_every=1, detectors={"faces": {"type": "test_flaky"}}
    )
    hub, statuses = scripted_hub(plan, lambda: rules)
    served = []
    with hub.subscribe(1) as wait:
        seq = 0
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            r = wait(seq, 1)
            if r:
                seq = r[0]
                served.append(r[1])
        _wait_status(statuses, "online", 30)
        plan["down"] = True
        _wait_status(statuses, "offline", 30)  # offline_after_s is 1.5 s; generous for a busy box
        plan["down"] = False
        _wait_status(statuses, "online", 30)
        r = wait(seq, 3)
        assert r is not None  # frames flow again after the reconnect
        served.append(r[1])
    stream = hub.streams()[1]
    assert stream.counters["connects"] >= 2
    assert "hunter2" not in stream.last_error
    raw = plan["raw"]
    for jpg in served:
        out = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR).astype(int)
        # each served frame must be far from every raw frame (JPEG noise is ~ a few levels)
        assert min(np.abs(out - r_).mean() for r_ in raw) > 20
    assert stream.pipeline.stats["detector_error"] > 0  # fail-closed path was exercised


def test_slow_source_goes_stale(scripted_hub):
    plan = {"interval": 0.02}
    hub, statuses = scripted_hub(plan, lambda: RedactionRules(targets=set()))
    with hub.subscribe(2):
        _wait_status(statuses, "online", 30)
        plan["interval"] = 1.2  # slower than real time; the source still claims 50 fps
        _wait_status(statuses, "stale", 30)


def test_rule_change_reaches_running_stream_at_its_next_poll(scripted_hub):
    current = {"rules": RedactionRules(targets=set())}
    hub, _ = scripted_hub({}, lambda: current["rules"])
    full = PrivacyMask(points=[(0, 0), (1, 0), (1, 1), (0, 1)])
    with hub.subscribe(3) as wait:
        r = wait(0, 3)
        assert r is not None
        seq = r[0]
        current["rules"] = RedactionRules(targets=set(), masks=[full], fill_color=(0, 0, 0))
        # the rules are polled every FAST.rules_poll_s (0.2 s); a busy machine may take
        # longer, so wait on the condition with a generous deadline
        deadline = time.monotonic() + 30
        while True:
            r = wait(seq, 2)
            assert r is not None
            seq = r[0]
            img = cv2.imdecode(np.frombuffer(r[1], np.uint8), cv2.IMREAD_COLOR)
            if img.max() < 10:
                break
            assert time.monotonic() < deadline, "the rule change never reached the stream"
    assert hub.streams()[3].counters["rules_reloads"] == 1


def test_rules_revision_and_notify(scripted_hub):
    current = {"rules": RedactionRules(targets=set()), "rev": 1}
    hub, _ = scripted_hub({}, lambda: current["rules"], rules_revision=lambda: current["rev"])
    with hub.subscribe(4) as wait:
        seq = wait(0, 3)[0]
        current["rules"] = RedactionRules(
            targets=set(),
            masks=[PrivacyMask(points=[(0, 0), (1, 0), (1, 1), (0, 1)])],
            fill_color=(0, 0, 0),
        )
        current["rev"] = 2
        deadline = time.monotonic() + 30
        while True:
            r = wait(seq, 2)
            assert r is not None
            seq = r[0]
            if cv2.imdecode(np.frombuffer(r[1], np.uint8), cv2.IMREAD_COLOR).max() < 10:
                break
            assert time.monotonic() < deadline, "the new revision never reached the stream"


def test_idle_stream_is_stopped(scripted_hub):
    settings = FAST.model_copy(update={"idle_stop_s": 0.3})
    hub, _ = scripted_hub({}, lambda: RedactionRules(targets=set()), settings=settings)
    with hub.subscribe(5) as wait:
        assert wait(0, 3) is not None
    time.sleep(1.5)
    assert 5 not in hub.streams()


def test_unmask_variant_keeps_permanent_masks_and_is_watermarked(scripted_hub):
    rules = RedactionRules(
        targets={"faces"},
        detect_every=1,
        detectors={"faces": {"type": "test_flaky", "fail_every": 10**6}},
        masks=[PrivacyMask(points=[(0.5, 0.5), (1, 0.5), (1, 1), (0.5, 1)])],
        fill_color=(0, 0, 0),
    )
    plan = {}
    hub, _ = scripted_hub(plan, lambda: rules)
    with hub.subscribe(6) as red, hub.subscribe(6, watermark="UNMASKED bob grant#1") as lifted:
        a = wait_img(red)
        b = wait_img(lifted)
    # permanent mask in both (the watermark text crosses it in the lifted one)
    assert a[64:, 88:].max() < 12 and np.median(b[64:, 88:]) < 12
    assert a[:60, :80].std() < b[:60, :80].std()  # face box pixelated only in the redacted one


def wait_img(wait):
    seq, img = 0, None
    for _ in range(3):
        r = wait(seq, 3)
        seq = r[0]
        img = cv2.imdecode(np.frombuffer(r[1], np.uint8), cv2.IMREAD_COLOR)
    return img
