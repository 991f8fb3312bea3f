"""A viewer that reads slowly stays near live: MJPEG over real HTTP (waitress, real video).

The app is served by ``dashboard.server.create_waitress_server`` (the ``Served`` helper of
``test_video_serving``) with a file camera on ``../shared/data/vtest.avi``. The client is a
raw socket with a small receive buffer that takes one part a second; the lag of a part is
its ``X-Timestamp`` against the moment the client received it. Nothing here times the
server's own code: the condition is on the data the client got.
"""

from __future__ import annotations

import socket
import statistics
import time

import pytest

from tests.dashboard.test_video_serving import Served, _read_part


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.xfail(
    reason="a slow reader's parts queue in the server, kernel and client buffers: "
    "measured median 6.3 s behind live for one part a second",
    strict=False,
)
def test_viewer_reading_one_part_a_second_stays_near_live(tmp_path, shared_data):
    served = Served(tmp_path, str(shared_data / "vtest.avi"))
    try:
        user = served.login()
        sock = served.raw_get("/video/2.mjpg", user.cookies.get_dict(), version="1.0")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.settimeout(15)
        f = sock.makefile("rb")
        assert f.readline().split(b" ")[1] == b"200"
        while f.readline().strip():
            pass  # response headers
        started = time.monotonic()
        lags = []  # (seconds since start, lag) of every camera frame received
        while time.monotonic() < started + 22:
            headers, _ = _read_part(f)
            if headers["X-Redacted"] != "placeholder":
                lag = time.time() - float(headers["X-Timestamp"])
                lags.append((time.monotonic() - started, lag))
            time.sleep(1.0)  # a slow client: one part a second
        sock.close()
    finally:
        served.close()
    late = [lag for at, lag in lags if at >= 5]
    assert len(late) >= 5, lags  # the camera delivered: enough frames to judge
    median = statistics.median(late)
    print(f"lag of {len(late)} parts after 5 s: median {median:.2f} s, max {max(late):.2f} s")
    # queued parts would grow the lag by up to several seconds; the newest frame is < 1.5 s old
    assert median <= 1.5, [round(lag, 2) for _, lag in lags]
