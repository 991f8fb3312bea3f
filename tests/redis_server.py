"""Real Redis servers for the tests: the shared one CI starts, or private ones we start.

``GRIDSIGHT_TEST_REDIS_URL`` (exported by ``.ci/services.sh``) names a running server; without
it a private ``redis-server`` (Debian's ``redis-server`` package) is started on a free port.
Where neither exists the Redis tests skip, except in CI (``CI`` set), where they fail: a
skipped Redis test would hide a broken fan-out.

``RedisServer`` is a private server a test may stop, kill and restart (with or without
persistence) to exercise reconnects.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.absent import missing, require_executable


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ping(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def require_redis_server() -> str:
    """Return the path of the ``redis-server`` binary; skip (fail in CI) where it is absent."""
    return require_executable("redis-server", "apt-get install redis-server")


class RedisServer:
    """A private redis-server on 127.0.0.1 that a test can stop, kill and restart.

    Parameters
    ----------
    workdir : Path
        Its working directory (AOF/RDB files, log).
    persistent : bool
        With an append-only file (fsync always): a restart keeps every acknowledged entry.
    """

    def __init__(self, workdir: Path, *, persistent: bool = True, port: int | None = None):
        self.binary = require_redis_server()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persistent = persistent
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Return the server's URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING; return self."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.workdir), "--save", "", "--daemonize", "no",
                "--logfile", str(self.workdir / "redis.log")]  # fmt: skip
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.workdir / 'redis.log'}")
            if _ping(self.port):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """Stop the server (SIGTERM: it finishes writing its append-only file)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def wipe(self) -> None:
        """Delete the server's persisted data (it must be stopped)."""
        for p in self.workdir.glob("appendonly*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        for p in self.workdir.glob("*.rdb"):
            p.unlink()


def shared_redis_url(tmp_root: Path) -> tuple[str, RedisServer | None]:
    """Return (URL, private server or None) of the Redis the tests use (see module docstring)."""
    url = os.environ.get("GRIDSIGHT_TEST_REDIS_URL")
    if url:
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            missing(f"the Redis at GRIDSIGHT_TEST_REDIS_URL={url}", f"it does not answer: {exc}")
        return url, None
    server = RedisServer(tmp_root / "redis-shared", persistent=False).start()
    return server.url, server
