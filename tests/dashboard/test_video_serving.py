"""Video over real HTTP, served by waitress exactly as ``python -m dashboard`` does.

The app is the real one (``create_app``: login, access control, video routes, ``/healthz``)
on a SQLite file, served by ``dashboard.server.create_waitress_server`` on a free port. What
is checked: abandoned views of a dead camera neither take the page threads nor stay open,
the caps on open views answer 429, and a slow viewer gets the newest frame, not a backlog.
"""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest
import requests

from dashboard.app import create_app
from dashboard.server import create_waitress_server
from layers.models import Camera
from layers.settings import load_settings
from tests.helpers_auth import make_user

DEAD_URL = "rtsp://127.0.0.1:9/never"  # nothing listens: the camera never delivers a frame


def wait_for(pred, timeout: float, what: str):
    """Return pred()'s first truthy value, polling until ``timeout`` (else fail naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class Served:
    """The real app behind waitress in a daemon thread."""

    def __init__(self, tmp_path, vtest: str, **overrides) -> None:
        settings = load_settings(db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}", data_dir=tmp_path,
                                 seed_on_start=False, simulator=False, host="127.0.0.1",
                                 **overrides)  # fmt: skip
        self.app = create_app(settings, start_background=False)
        self.ctx = self.app.server.config["GRIDSIGHT"]
        with self.ctx.db.session() as s:
            s.add_all([
                Camera(id=1, gb_id="53010200001320000001", name="dead", cls=1, lon=102.7,
                       lat=25.0, stream_url=DEAD_URL),
                Camera(id=2, gb_id="53010200001320000002", name="file", cls=1, lon=102.7,
                       lat=25.0, stream_url=vtest),
            ])  # fmt: skip
        self.server = create_waitress_server(self.app.server, settings, port=0)
        self.port = self.server.effective_port
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.server.run()
        except OSError:  # the listening socket closed under the loop: the test is over
            pass

    def login(self, role: str = "operator") -> requests.Session:
        name, password = make_user(self.app, role)
        s = requests.Session()
        page = s.get(f"{self.base}/login", timeout=10).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        r = s.post(f"{self.base}/login", data={"username": name, "password": password,
                   "csrf_token": token}, allow_redirects=False, timeout=30)  # fmt: skip
        assert r.status_code == 302, r.text[:300]
        s.user = name  # type: ignore[attr-defined]
        return s

    def raw_get(self, path: str, cookies: dict[str, str], version: str = "1.1") -> socket.socket:
        """Return a socket on which a GET of ``path`` was sent (the caller reads and closes).

        HTTP/1.0 gets the body unchunked (waitress chunks HTTP/1.1 streams).
        """
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        sock.sendall(f"GET {path} HTTP/{version}\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode())
        return sock

    def close(self) -> None:
        self.ctx.stream_hub.close()
        self.server.close()
        self.ctx.db.dispose()


@pytest.fixture
def vtest(shared_data) -> str:
    return str(shared_data / "vtest.avi")


def _answers(base: str, path: str) -> int:
    """Return the status of GET ``path`` (fails the test if it takes more than 5 s)."""
    return requests.get(base + path, timeout=5).status_code


@pytest.mark.shared
def test_abandoned_views_of_a_dead_camera_never_starve_pages(tmp_path, vtest):
    """100 views of a camera that never delivers: open, read a bit, drop the socket."""
    served = Served(tmp_path, vtest, threads=8, stream_threads=24, video_max_streams=20,
                    video_max_streams_per_user=20)  # fmt: skip
    try:
        users = [served.login() for _ in range(5)]
        limiter = served.ctx.video_streams
        socks, statuses = [], []
        for k in range(100):
            sock = served.raw_get("/video/1.mjpg", users[k % 5].cookies.get_dict())
            first = sock.recv(4096)  # headers, and for an open view the first part follows
            statuses.append(int(first.split(b" ", 2)[1]))
            socks.append(sock)
        # 20 views are open (the cap), the other 80 were refused with 429 at once
        assert statuses.count(200) == 20 and statuses.count(429) == 80, statuses
        # with every stream thread of the cap busy, pages, login and health still answer
        assert _answers(served.base, "/healthz") == 200
        assert _answers(served.base, "/login") == 200
        # an open view of a camera that never delivered gets a part at least every second
        open_sock = socks[statuses.index(200)]
        open_sock.settimeout(5)
        data = b""
        while data.count(b"X-Redacted: placeholder") < 2:
            data += open_sock.recv(65536)
        for sock in socks:  # abandon every view: no goodbye, the socket just goes
            sock.close()
        wait_for(lambda: not limiter.open_streams(), 15, "the abandoned views to be released")
        hub = served.ctx.stream_hub
        wait_for(lambda: hub.streams()[1].viewers == 0, 5, "the hub to count no viewer")
        assert _answers(served.base, "/healthz") == 200
        assert _answers(served.base, "/login") == 200
        r = users[0].get(f"{served.base}/video/2.jpg", timeout=15)  # streams work again
        assert r.status_code == 200 and r.headers["X-Redacted"]
    finally:
        served.close()


@pytest.mark.shared
def test_per_user_cap_answers_429_naming_the_setting(tmp_path, vtest):
    served = Served(tmp_path, vtest, video_max_streams_per_user=2)
    try:
        alice, bob = served.login(), served.login()
        views = [
            alice.get(f"{served.base}/video/2.mjpg", stream=True, timeout=15) for _ in range(2)
        ]
        assert [v.status_code for v in views] == [200, 200]
        refused = alice.get(f"{served.base}/video/2.mjpg", stream=True, timeout=15)
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        assert "GRIDSIGHT_VIDEO_MAX_STREAMS_PER_USER" in refused.json()["error"]
        other = bob.get(f"{served.base}/video/2.mjpg", stream=True, timeout=15)
        assert other.status_code == 200  # the cap is per user
        for v in (*views, other):
            v.close()
        limiter = served.ctx.video_streams
        wait_for(lambda: not limiter.open_streams(), 15, "closed views to be released")
        again = alice.get(f"{served.base}/video/2.mjpg", stream=True, timeout=15)
        assert again.status_code == 200
        again.close()
    finally:
        served.close()


def _read_part(sock_file) -> tuple[dict[str, str], bytes]:
    """Return (headers, jpeg) of the next MJPEG part from a buffered socket file."""
    line = sock_file.readline()
    while line.strip() == b"":
        line = sock_file.readline()
    assert line.startswith(b"--"), line
    headers = {}
    while (line := sock_file.readline().strip()) != b"":
        key, value = line.decode().split(": ", 1)
        headers[key] = value
    body = sock_file.read(int(headers["Content-Length"]))
    return headers, body


@pytest.mark.shared
@pytest.mark.slow
def test_slow_viewer_gets_the_newest_frame_not_a_backlog(tmp_path, vtest):
    """A viewer reading 2 parts a second of a 10 fps camera stays about a second behind."""
    served = Served(tmp_path, vtest)
    try:
        user = served.login()
        sock = served.raw_get("/video/2.mjpg", user.cookies.get_dict(), version="1.0")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        f = sock.makefile("rb")
        assert f.readline().split(b" ")[1] == b"200"
        while f.readline().strip():
            pass  # response headers
        lags = []
        t_end = time.monotonic() + 25
        while time.monotonic() < t_end:
            headers, _ = _read_part(f)
            if headers["X-Redacted"] != "placeholder":
                lags.append(time.time() - float(headers["X-Timestamp"]))
            time.sleep(0.5)  # a slow client: two parts a second
        sock.close()
    finally:
        served.close()
    late = lags[len(lags) // 2 :]
    print(f"lag of the last {len(late)} parts: max {max(late):.2f} s, "
          f"median {sorted(late)[len(late) // 2]:.2f} s")  # fmt: skip
    # a backlog grows by half a second per part read; the newest frame stays ~1 s behind
    assert sorted(late)[len(late) // 2] < 2.0, lags
    assert max(late) < 4.0, lags
