"""Caps on the long-lived responses of one web process (MJPEG views, live event streams).

Each open stream holds a server thread for as long as it runs, so each kind has two caps,
both from settings: per user (one account or token cannot take every thread) and in total.
A request over a cap answers 429 with ``Retry-After`` and a message naming the setting.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable


class StreamLimiter:
    """Counts the open streams of one kind in one web process, in total and per user, within caps.

    ``what`` names the streams in messages ("video streams"); ``total_setting`` and
    ``per_user_setting`` are the environment variables of the two caps.
    """

    def __init__(
        self,
        total: int,
        per_user: int,
        *,
        what: str = "video streams",
        total_setting: str = "GRIDSIGHT_VIDEO_MAX_STREAMS",
        per_user_setting: str = "GRIDSIGHT_VIDEO_MAX_STREAMS_PER_USER",
    ) -> None:
        self.total = total
        self.per_user = per_user
        self.what = what
        self.total_setting = total_setting
        self.per_user_setting = per_user_setting
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, user: str) -> str | None:
        """Return None and count one more stream of ``user``, or the reason it is refused."""
        with self._lock:
            if self._open[user] >= self.per_user:
                return (
                    f"{user} already has {self._open[user]} open {self.what} (the limit, "
                    f"{self.per_user_setting}); close one and retry"
                )
            if sum(self._open.values()) >= self.total:
                return (
                    f"the server already serves {self.total} {self.what} (the limit, "
                    f"{self.total_setting}); retry later"
                )
            self._open[user] += 1
            return None

    def release(self, user: str) -> None:
        """Count one stream of ``user`` less."""
        with self._lock:
            self._open[user] -= 1
            if self._open[user] <= 0:
                del self._open[user]

    def releaser(self, user: str) -> Callable[[], None]:
        """Return a function that releases one stream of ``user`` the first time it is called.

        A response is closed by the server (``call_on_close``) and its generator ends on its
        own; whichever comes first frees the slot, the other does nothing.
        """
        done = threading.Event()
        lock = threading.Lock()

        def release() -> None:
            with lock:
                if done.is_set():
                    return
                done.set()
            self.release(user)

        return release

    def open_streams(self) -> dict[str, int]:
        """Return the open streams per user."""
        with self._lock:
            return dict(self._open)
