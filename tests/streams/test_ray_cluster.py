"""Cluster-mode video on a real local Ray cluster (``ray.init(num_cpus=2)``).

Real parts only: Ray actors in their own processes, a real video file decoded inside them
(vtest.avi frames with a real LFW face moving across, written once per module), a real SQLite
database with cameras and redaction rules, the real face detector as the leak oracle. Every
camera has a permanent privacy mask over the bottom-left quadrant (filled black), so a raw
frame reaching a viewer would show picture where black must be.

Camera ``c`` runs in worker ``c % 2``; each test uses its own camera, so tests sharing the
module's worker pool do not disturb each other's counters.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from layers.db import Database
from layers.models import Camera
from layers.services import cameras as camera_service
from layers.services import rules as rule_service
from layers.services import video as video_service
from streams import cluster
from streams.floor import PrivacyFloor
from streams.hub import HubSettings
from streams.rules import RuleScope
from tests.absent import missing
from tests.streams.conftest import lfw_face_canvas

# These tests watch the first frames of each stream; a persons detector (MOG2) would make them
# fully pixelated while it warms up, so this deployment's privacy floor is faces and plates.
TEST_FLOOR = PrivacyFloor(targets={"faces", "plates"})
FLOOR = sorted(TEST_FLOOR.targets)

pytestmark = pytest.mark.shared

REPO = Path(__file__).resolve().parents[2]
W, H, N_FRAMES = 640, 360, 50
FACE_Y = 10  # the face canvas (225 px) moves along the top-right, away from the mask
BOTTOM_LEFT = [[0, 0.5], [0.5, 0.5], [0.5, 1], [0, 1]]
TOP_LEFT = [[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]]
FULL = [[0, 0], [1, 0], [1, 1], [0, 1]]
# stall_after_s: a busy test machine may take seconds per detection; that is no hang
HUB = HubSettings(idle_stop_s=1.5, stale_after_s=1, offline_after_s=2, backoff_max_s=1,
                  stall_after_s=120)  # fmt: skip
LEASE_S = 1.0


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_address():
    """Return the GCS address of a local Ray cluster with 2 CPUs (started for this module)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
    try:
        import ray
    except ImportError:
        missing("the ray package", "pip install -r requirements-cluster.txt")
    cluster.connect("local", num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def face_x(i: int) -> int:
    """Return the canvas's left edge in frame ``i``: a triangle wave, continuous over the loop."""
    return 330 + round(80 * abs((i % N_FRAMES) / (N_FRAMES / 2) - 1))


@pytest.fixture(scope="module")
def face_video(tmp_path_factory, shared_data, lfw_faces):
    """Return (path, decoded raw frames, face box per frame) of a 640x360 10 fps MJPG clip.

    vtest.avi scaled down, with a real LFW face (75 px, in a 225 px grey canvas) moving
    smoothly along the top-right; the clip loops without a jump.
    """
    cap = cv2.VideoCapture(str(shared_data / "vtest.avi"))
    canvas = lfw_face_canvas(lfw_faces[3], scale=3)
    side = canvas.shape[0] // 3
    path = tmp_path_factory.mktemp("video") / "faces.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    truth = []
    for i in range(N_FRAMES):
        ok, bg = cap.read()
        assert ok
        frame = cv2.resize(bg, (W, H), interpolation=cv2.INTER_AREA)
        x = face_x(i)
        frame[FACE_Y : FACE_Y + canvas.shape[0], x : x + canvas.shape[1]] = canvas
        truth.append((x + side, FACE_Y + side, x + 2 * side, FACE_Y + 2 * side))
        out.write(frame)
    out.release()
    cap.release()
    raw = []
    cap = cv2.VideoCapture(str(path))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        raw.append(frame)
    cap.release()
    assert len(raw) == N_FRAMES
    return path, raw, truth


@pytest.fixture(scope="module")
def city_db(tmp_path_factory, face_video):
    """Return a migrated SQLite database with cameras 1-8 on the face clip and a masked default."""
    path = face_video[0]
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('db') / 'cluster.sqlite'}")
    db.migrate()
    with db.session() as s:
        s.add_all(
            Camera(id=i, gb_id=f"530102000013200000{i:02d}", name=f"cam {i}", cls=1,
                   lon=102.7, lat=25.0, stream_url=str(path))
            for i in range(1, 9)
        )  # fmt: skip
    rule_service.save_rule(
        db,
        RuleScope(kind="default"),
        {"targets": FLOOR, "masks": [{"points": BOTTOM_LEFT}], "fill_color": [0, 0, 0]},
        created_by="tests",
        floor=TEST_FLOOR,
    )
    yield db
    db.dispose()


@pytest.fixture(scope="module")
def pool(ray_address, city_db):
    """Return the module's pool of 2 redaction workers (own namespace; killed at the end)."""
    db_url = video_service.portable_db_url(city_db.url)
    floor = TEST_FLOOR  # the create_app test below sets the same floor (it shares the workers)
    pool = cluster.RedactionCluster(
        ray_address,
        functools.partial(
            video_service.hub_bindings_for_url, db_url, None, floor.model_dump(mode="json")
        ),
        deployment_key=cluster.deployment_key(db_url, None, floor.fingerprint()),
        workers=2,
        namespace=f"test-{uuid.uuid4().hex[:8]}",
        hub_settings=HUB,
        lease_s=LEASE_S,
    )
    yield pool
    pool.kill_workers()


@pytest.fixture
def relay(pool):
    r = cluster.RayStreamRelay(pool, linger_s=0.2)
    yield r
    r.close()


@pytest.fixture(scope="module")
def face_detector():
    from streams.detectors import DETECTORS
    from streams.detectors.faces import SlimefaceConfig

    return DETECTORS.create(SlimefaceConfig())


# -- helpers ---------------------------------------------------------------------------------


def decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def is_placeholder(img: np.ndarray) -> bool:
    """Return True for a placeholder: the relay's "stream restarting" (grey 128) or the hub's
    "waiting" / stall frame (grey 96 with its text), both drawn from nothing."""
    for level, share in ((128, 0.9), (96, 0.8)):
        if (np.abs(img.astype(int) - level) <= 8).all(axis=2).mean() > share:
            return True
    return False


def bottom_left(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return img[int(h * 0.53) :, : int(w * 0.47)]  # inside the mask (JPEG blurs its edge)


def top_left(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: int(h * 0.47), : int(w * 0.47)]


def collect(relay, camera_id: int, n: int, watermark: str | None = None, timeout: float = 120):
    """Return ``n`` consecutive JPEGs one viewer of ``camera_id`` receives after its first real
    frame (the placeholders of a stream still starting, slow on a busy machine, are skipped)."""
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    with relay.subscribe(camera_id, watermark) as wait:
        seq = 0
        while len(out) < n:
            assert time.monotonic() < deadline, f"only {len(out)} frames in {timeout} s"
            got = wait(seq, 5)
            if got is not None:
                seq = got[0]
                if out or not is_placeholder(decode(got[1])):
                    out.append(got[1])
    return out


def assert_never_raw(images: list[np.ndarray], raw: list[np.ndarray]) -> None:
    """Fail unless each image is a placeholder or has the mask burned in, unlike every raw frame."""
    for k, img in enumerate(images):
        if is_placeholder(img):
            continue
        assert bottom_left(img).max() < 40, f"frame {k}: the permanent mask is not burned in"
        diff = min(np.abs(img.astype(np.int16) - r).mean() for r in raw)
        assert diff > 8, f"frame {k} is (nearly) a raw frame: mean difference {diff:.1f}"


def frame_index(img: np.ndarray, raw: list[np.ndarray]) -> int:
    """Return which raw frame ``img`` was made from (by its bottom-right, neither masked nor
    covered by the face)."""
    region = (slice(240, H), slice(330, W))
    diffs = [np.abs(img[region].astype(np.int16) - r[region]).mean() for r in raw]
    return int(np.argmin(diffs))


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(interval)


# -- pure helpers (no Ray) -------------------------------------------------------------------


def test_worker_index_is_deterministic_and_balanced():
    assert [cluster.worker_index(c, 2) for c in range(1, 9)] == [1, 0, 1, 0, 1, 0, 1, 0]
    counts = np.bincount([cluster.worker_index(c, 4) for c in range(64)], minlength=4)
    assert counts.tolist() == [16, 16, 16, 16]
    with pytest.raises(ValueError):
        cluster.worker_index(1, 0)


def test_placeholder_is_grey_and_sized_like_the_stream():
    data = cluster.placeholder_jpeg(640, 360)
    img = decode(data)
    assert img.shape == (360, 640, 3) and is_placeholder(img)
    assert cluster.jpeg_size(data) == (640, 360)
    ok, buf = cv2.imencode(".jpg", np.zeros((97, 211, 3), np.uint8))
    assert ok and cluster.jpeg_size(buf.tobytes()) == (211, 97)
    assert cluster.jpeg_size(b"not a jpeg at all") is None


def test_deployment_key_tells_databases_apart():
    a = cluster.deployment_key("sqlite:////srv/a.sqlite", None)
    assert a == cluster.deployment_key("sqlite:////srv/a.sqlite", None)
    assert a != cluster.deployment_key("sqlite:////srv/b.sqlite", None)
    assert video_service.portable_db_url("sqlite:///data/x.sqlite").startswith("sqlite:////")


CLAIM_SCRIPT = """
import json, sys, threading, time
from pathlib import Path
from streams import cluster
claim = cluster.claim_cpus(int(sys.argv[2]), Path(sys.argv[1]))
threading.Thread(target=time.sleep, args=(30,), daemon=True).start()  # a thread from before
cluster.hold_to_cpus(claim.cpus) if claim.cpus else None
late = threading.Thread(target=time.sleep, args=(30,), daemon=True)  # started after: inherits
late.start()
print(json.dumps(sorted(claim.cpus)), flush=True)
sys.stdin.read()  # hold the claim until the test closes our stdin
"""


def allowed_cpus(pid: int) -> dict[int, set[int]]:
    """Return the allowed CPUs of every thread of process ``pid`` (from /proc)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        line = next(ln for ln in status.splitlines() if ln.startswith("Cpus_allowed_list:"))
        cpus: set[int] = set()
        for part in line.split(":", 1)[1].strip().split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
        out[int(tid)] = cpus
    return out


def test_workers_of_one_machine_claim_disjoint_cores_and_hold_every_thread_to_them(tmp_path):
    """Each claim takes free cores only; a dead holder's cores are free again; threads stay."""
    cores = sorted(os.sched_getaffinity(0))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = []

    def start(count: int):
        p = subprocess.Popen(
            [sys.executable, "-c", CLAIM_SCRIPT, str(tmp_path), str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(REPO),
        )  # fmt: skip
        procs.append(p)
        return p, set(json.loads(p.stdout.readline()))

    try:
        holders = [start(1) for _ in cores]
        claimed = [c for _, c in holders]
        assert all(len(c) == 1 for c in claimed)
        assert set().union(*claimed) == set(cores)  # disjoint, every core once
        for p, mine in holders:
            threads = allowed_cpus(p.pid)
            assert len(threads) >= 3 and all(t == mine for t in threads.values()), threads
        _, none_left = start(1)
        assert none_left == set()  # more workers than cores: the caller runs unbound
        first, first_cpus = holders[0]
        first.stdin.close()
        first.wait(10)  # the kernel drops a dead process's locks
        _, again = start(1)
        assert again == first_cpus
    finally:
        for p in procs:
            p.kill()
            p.wait()


# -- on the Ray cluster ----------------------------------------------------------------------


def test_relay_serves_only_redacted_frames_and_status_is_written_back(
    relay, pool, city_db, face_video, face_detector
):
    _, raw, truth = face_video

    def planted_face(img, box):
        return [b for b in face_detector.detect(img) if iou((b.x1, b.y1, b.x2, b.y2), box) > 0.3]

    # the oracle works: the detector finds the planted face in (nearly) every raw frame
    assert sum(bool(planted_face(f, t)) for f, t in zip(raw, truth, strict=True)) >= 0.9 * N_FRAMES
    assert min(bottom_left(f).mean() for f in raw) > 40  # the mask region has picture in raw
    images = [decode(b) for b in collect(relay, 1, 25)]
    assert not any(is_placeholder(i) for i in images), "a healthy worker sent a placeholder"
    assert all(i.shape == (H, W, 3) for i in images)
    assert_never_raw(images, raw)
    leaked = [k for k, img in enumerate(images) if planted_face(img, truth[frame_index(img, raw)])]
    assert leaked == [], f"the planted face is still detectable in served frames {leaked}"
    wait_for(lambda: camera_service.get_camera(city_db, 1).status == "online", 5, "status online")
    with relay.subscribe(1) as wait:
        assert wait(0, 5) is not None
        info = relay.streams()[1]
    assert info.worker == cluster.worker_index(1, 2) and info.counters["served"] > 0
    assert info.viewers == 1 and info.counters["relay_frames"] >= 1


def _real_frame(wait) -> bool:
    """Return True when the next frame ``wait`` gives is a redacted frame, not the placeholder."""
    got = wait(0, 5)
    return got is not None and not is_placeholder(decode(got[1]))


def test_each_worker_is_held_to_its_own_core(relay, pool):
    """The pool's 2 workers hold different cores; every thread (the streams' too) stays on it."""
    with relay.subscribe(3) as w3, relay.subscribe(4) as w4:  # one stream in each worker
        for wait in (w3, w4):  # a real frame: the worker is up and its stream runs
            wait_for(lambda w=wait: _real_frame(w), 120, "a redacted frame from each worker")
        stats = pool.process_stats(timeout=60)
    assert len(stats) == 2
    held = [set(s["cpus"]) for s in stats]
    assert all(len(h) == 1 for h in held) and held[0] != held[1], held
    for st, mine in zip(stats, held, strict=True):
        threads = allowed_cpus(st["pid"])
        assert all(t == mine for t in threads.values()), (st["index"], threads)
        assert st["streams"] >= 1


@pytest.mark.slow
def test_two_web_processes_watching_one_camera_share_one_pipeline(
    relay, pool, ray_address, city_db, face_video
):
    """A second Python process (its own Ray driver, its own relay) watches camera 2 too."""
    raw = face_video[1]
    script = textwrap.dedent(
        """
        import functools, json, os, sys, time
        import cv2, numpy as np
        from layers.services import video as video_service
        from streams import cluster
        from streams.floor import PrivacyFloor
        address, namespace, db_url = sys.argv[1:4]
        floor = PrivacyFloor(targets={"faces", "plates"})  # the module's TEST_FLOOR
        pool = cluster.RedactionCluster(
            address, functools.partial(video_service.hub_bindings_for_url, db_url, None,
                                       floor.model_dump(mode="json")),
            deployment_key=cluster.deployment_key(db_url, None, floor.fingerprint()),
            workers=2, namespace=namespace)
        relay = cluster.RayStreamRelay(pool)
        dark, n, seq = [], 0, 0
        with relay.subscribe(2) as wait:
            deadline = time.monotonic() + 40
            while n < 20 and time.monotonic() < deadline:
                got = wait(seq, 5)
                if got is None:
                    continue
                seq = got[0]
                img = cv2.imdecode(np.frombuffer(got[1], np.uint8), cv2.IMREAD_COLOR)
                h, w = img.shape[:2]
                dark.append(int(img[int(h * 0.53):, :int(w * 0.47)].max()))
                n += 1
        import ray
        print(json.dumps({"frames": n, "mask_max": dark, "pid": os.getpid(),
                          "job": ray.get_runtime_context().get_job_id()}))
        sys.stdout.flush()
        os._exit(0)
        """
    )
    db_url = video_service.portable_db_url(city_db.url)
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0")
    images: list[bytes] = []
    with relay.subscribe(2) as wait:
        got = wait(0, 30)
        assert got is not None
        seq = got[0]
        other = subprocess.Popen(
            [sys.executable, "-c", script, ray_address, pool.namespace, db_url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 90
            while other.poll() is None:
                assert time.monotonic() < deadline, "the second web process did not finish"
                got = wait(seq, 2)
                if got is not None:
                    seq = got[0]
                    images.append(got[1])
            out, err = other.communicate(timeout=5)
        finally:
            if other.poll() is None:
                other.kill()
        assert other.returncode == 0, err[-2000:]
        report = json.loads(out.strip().splitlines()[-1])
        import ray

        assert report["job"] != ray.get_runtime_context().get_job_id()  # two drivers
        assert report["frames"] == 20 and max(report["mask_max"]) < 40
        infos = pool.streams_info()
        index, info = infos[2]
    assert index == cluster.worker_index(2, 2)
    assert info["started"] == 1, "camera 2 was started more than once"
    assert info["counters"]["connects"] == 1, "more than one reader opened the source"
    holders = [i for i, h in pool.existing_workers().items()
               if 2 in ray.get(h.streams_info.remote())]  # fmt: skip
    assert holders == [index], f"camera 2 runs in workers {holders}"
    assert len(images) >= 10
    assert_never_raw([decode(b) for b in images[::3]], raw)


def test_rule_change_reaches_the_running_worker_stream(relay, pool, city_db):
    with relay.subscribe(3) as wait:
        got = wait(0, 30)
        assert got is not None and bottom_left(decode(got[1])).max() < 40
        assert decode(got[1]).mean() > 30  # the rest of the picture is visible
        seq = got[0]
        # written straight to the database, no notify: the worker polls the rules revision
        rule_service.save_rule(
            city_db,
            RuleScope(kind="camera", value="3"),
            {"targets": FLOOR, "masks": [{"points": FULL}], "fill_color": [0, 0, 0]},
            created_by="tests",
            floor=TEST_FLOOR,
        )
        deadline = time.monotonic() + 60  # the revision poll; generous for a busy machine
        while True:
            got = wait(seq, 2)
            assert got is not None
            seq = got[0]
            if decode(got[1]).max() < 40:
                break
            assert time.monotonic() < deadline, "the new rule never reached the worker"
    assert pool.streams_info()[3][1]["counters"]["rules_reloads"] >= 1


def test_idle_stream_stops_in_its_worker_after_the_grace_period(relay, pool):
    collect(relay, 4, 3)
    left = time.monotonic()
    time.sleep(0.8)
    running = 4 in pool.streams_info()
    if time.monotonic() - left < LEASE_S + HUB.idle_stop_s - 0.5:
        assert running  # lease + grace have not passed yet (a slow call proves nothing here)
    wait_for(lambda: 4 not in pool.streams_info(), 60, "idle stop in the worker", 0.25)
    assert time.monotonic() - left >= LEASE_S + HUB.idle_stop_s - 0.5


@pytest.mark.slow
def test_killed_worker_is_recreated_viewers_see_placeholder_never_raw(relay, pool, face_video):
    import ray

    raw = face_video[1]
    received: list[tuple[float, bytes]] = []
    stop = threading.Event()

    def viewer():
        with relay.subscribe(5) as wait:
            seq = 0
            while not stop.is_set():
                got = wait(seq, 1)
                if got is not None:
                    seq = got[0]
                    received.append((time.monotonic(), got[1]))

    t = threading.Thread(target=viewer, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(received) >= 3, 30, "first frames")
        handle = pool.worker(5)
        for how in ("ray.kill", "SIGKILL"):
            pid = ray.get(handle.identity.remote())["pid"]
            killed_at = time.monotonic()
            if how == "ray.kill":
                ray.kill(handle, no_restart=False)
            else:
                os.kill(pid, signal.SIGKILL)

            def resumed(since=killed_at):
                after = [(ts, decode(b)) for ts, b in received if ts > since]
                marks = [is_placeholder(img) for _, img in after]
                if True in marks and False in marks[marks.index(True) :]:
                    first_real = marks.index(True) + marks[marks.index(True) :].index(False)
                    return after[first_real][0]
                return None

            # generous: Ray restarts the actor and the stream reopens, on a busy machine too
            back_at = wait_for(resumed, 120, f"frames again after {how}", 0.2)
            print(f"worker killed ({how}): frames again after {back_at - killed_at:.1f} s")
            new_pid = ray.get(handle.identity.remote(), timeout=60)["pid"]
            assert new_pid != pid, f"{how}: the worker process was not replaced"
    finally:
        stop.set()
        t.join(5)
    images = [decode(b) for _, b in received]
    assert any(is_placeholder(i) for i in images)
    assert_never_raw(images, raw)


def test_unmask_watermark_is_made_only_for_the_requested_grant(relay, pool, city_db):
    rule_service.save_rule(
        city_db,
        RuleScope(kind="camera", value="6"),
        {
            "targets": FLOOR,
            "masks": [
                {"points": BOTTOM_LEFT, "permanent": False},  # lifted by a grant
                {"points": TOP_LEFT, "permanent": True},  # never lifted
            ],
            "fill_color": [0, 0, 0],
        },
        created_by="tests",
        floor=TEST_FLOOR,
    )
    mark = "UNMASKED alice 2026-12-01T08:00Z grant#41"
    with relay.subscribe(6) as red:
        redacted = [decode(b) for b in collect(relay, 6, 3)]
        lifted = [decode(b) for b in collect(relay, 6, 3, watermark=mark)]
        assert red(0, 5) is not None
    for img in redacted:
        assert bottom_left(img).max() < 40 and top_left(img).max() < 40
    for img in lifted:
        assert bottom_left(img).mean() > 40  # the liftable mask is off
        assert np.median(top_left(img)) < 12  # the permanent one stays (text crosses it)
        yellow = (img[:, :, 0] < 90) & (img[:, :, 1] > 170) & (img[:, :, 2] > 170)
        assert yellow.sum() > 200, "no watermark text burned in"
    # the redacted frames carry no watermark
    assert all(((i[:, :, 0] < 90) & (i[:, :, 1] > 170) & (i[:, :, 2] > 170)).sum() < 50
               for i in redacted)  # fmt: skip
    # while the grant is watched the worker makes lifted frames for exactly that watermark
    with relay.subscribe(6, watermark=mark) as wait:
        assert wait(0, 10) is not None
        assert pool.streams_info()[6][1]["watermarks"] == [mark]
    # once nobody watches it, the relay releases it: no lifted frames are made any more
    wait_for(
        lambda: pool.streams_info().get(6, (0, {"watermarks": []}))[1]["watermarks"] == [],
        60,  # a lease ends LEASE_S after the last poll; generous for a busy machine
        "lifted frames stop after the grant's viewer left",
    )


def test_video_routes_through_create_app_in_cluster_mode(ray_address, pool, city_db, tmp_path):
    from dashboard.app import create_app
    from layers.settings import load_settings
    from tests.helpers_auth import login

    settings = load_settings(
        db_url=city_db.url, data_dir=tmp_path, seed_on_start=False, simulator=False,
        ray_address=ray_address, ray_workers=2, ray_namespace=pool.namespace,
        privacy_floor_targets=FLOOR,
    )  # fmt: skip
    app = create_app(settings, start_background=False)
    hub = app.server.config["GRIDSIGHT"].stream_hub
    assert isinstance(hub, cluster.RayStreamRelay)
    try:
        client = app.server.test_client()
        login(client, app, "operator")
        r = client.get("/video/7.jpg?wait=15")
        assert r.status_code == 200 and r.mimetype == "image/jpeg"
        assert r.headers["X-Redacted"] == "faces,plates,masks"  # what the worker applied
        img = decode(r.data)
        assert img.shape == (H, W, 3) and not is_placeholder(img)
        assert bottom_left(img).max() < 40
        r = client.get("/video/7.mjpg", buffered=False)
        assert r.status_code == 200
        parts = (c for c in r.response if c != b"\r\n")
        for _ in range(3):
            head, body = next(parts).split(b"\r\n\r\n", 1)
            assert head.startswith(b"--gridsightframe")
            assert b"X-Redacted: faces,plates,masks" in head
            assert bottom_left(decode(body)).max() < 40
        r.close()
        index, info = pool.streams_info()[7]
        assert index == cluster.worker_index(7, 2) and info["started"] == 1
        assert client.get("/video/99.jpg").status_code == 404
    finally:
        hub.close()


@pytest.mark.slow
def test_unreachable_cluster_fails_closed():
    """Ray down: MJPEG viewers get the placeholder, snapshots nothing (503), never video."""
    script = textwrap.dedent(
        """
        import json, os, sys, time
        import cv2, numpy as np
        from streams import cluster
        pool = cluster.RedactionCluster("127.0.0.1:9", dict, deployment_key="k", workers=1)
        relay = cluster.RayStreamRelay(pool)
        t0 = time.monotonic()
        with relay.subscribe(1) as wait:
            got = wait(0, 15)
        waited = time.monotonic() - t0
        img = cv2.imdecode(np.frombuffer(got[1], np.uint8), cv2.IMREAD_COLOR) if got else None
        grey = float((np.abs(img.astype(int) - 128) <= 8).all(axis=2).mean()) if got else 0.0
        snap = relay.snapshot(1, timeout=2)
        info = relay.streams().get(1)
        print(json.dumps({"waited": waited, "grey": grey, "snapshot": snap is not None,
                          "last_error": info.last_error if info else None}))
        sys.stdout.flush()
        os._exit(0)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0")
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env,
        cwd=str(REPO), timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["grey"] > 0.9  # a placeholder (within the view's 15 s wait)
    assert report["snapshot"] is False
    assert "Ray" in report["last_error"]


def test_worker_that_cannot_be_scheduled_fails_closed(ray_address, city_db):
    """More workers than the cluster has CPUs for: placeholder and an actionable error."""
    db_url = video_service.portable_db_url(city_db.url)
    pool = cluster.RedactionCluster(
        ray_address,
        functools.partial(video_service.hub_bindings_for_url, db_url, None),
        deployment_key=cluster.deployment_key(db_url, None),
        workers=1,
        namespace=f"test-{uuid.uuid4().hex[:8]}",
        num_cpus=3,  # the cluster has 2: the worker can never start
    )
    relay = cluster.RayStreamRelay(pool)
    try:
        with relay.subscribe(1) as wait:
            got = wait(0, 15)
            assert got is not None and is_placeholder(decode(got[1]))
            assert wait.stream.latest_jpeg() is None  # nothing real to snapshot
            assert "fewer free CPUs than GRIDSIGHT_RAY_WORKERS" in relay.streams()[1].last_error
        assert relay.snapshot(1, timeout=1) is None
    finally:
        relay.close()
        pool.kill_workers()
