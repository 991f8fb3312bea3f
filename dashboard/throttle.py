"""Sign-in throttling (Flask-Limiter) and the bound on concurrent password verifications.

Every password check (the login form, and HTTP Basic on ``/ogc`` when its cache misses) first
asks ``LoginThrottle.check``; three moving-window limits, kept in Flask-Limiter's storage
(memory in one process, Redis when ``GRIDSIGHT_REDIS_URL`` is set, so all workers count
together):

- per (account name, client) (``login_limit_per_client``): five wrong guesses lock that
  pair, not the account. The client is the browser's device cookie when it signed in to
  that account before, else the address;
- per account name, from browsers that never signed in to it (``login_limit_per_account``):
  slows guessing spread over many addresses without locking out the account's owner, whose
  browser holds the device cookie;
- per client address (``login_limit_per_address``): every failure there, and every attempt
  for a name that is not an active account (it cannot succeed: counted before its dummy
  argon2 check, so a flood of unknown names is refused after the limit's worth of them).
  Once an address is over it, only names of active accounts are still verified there; any
  other name is refused at once, costing no argon2 work. So a command centre's operators
  behind one NAT address keep signing in while someone at that address floods it with
  unknown names: the limit never refuses a correct password of an active, unlocked account.

Every refusal answers alike (429, the same message, ``Retry-After`` the length of the
per-client window), whether the name is unknown, disabled or locked. The difference that
remains is deliberate: at an address over its limit, a wrong password for an active account
is still verified (401, and counted on that pair's lock) while an unknown name is refused.
``VerifySlots`` lets at most ``login_concurrency`` argon2 verifications run at once in a
process and only a few more wait; the rest are told to retry, so a login flood cannot take the
threads that serve the API.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import flask
import limits
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from itsdangerous import BadSignature, URLSafeSerializer
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from layers.settings import Settings

log = logging.getLogger(__name__)

DEVICE_COOKIE = "gridsight_device"
DEVICE_DAYS = 90
DEVICE_NAMES_MAX = 8  # accounts remembered per browser
WAITING_PER_SLOT = 4  # verifications that may queue behind each running one
WAIT_S = 10.0


@dataclass(frozen=True)
class Refusal:
    """A refused sign-in attempt (``LoginThrottle.check``): wait this long."""

    retry_after_s: int
    reason: str  # "address", "client", "account", "busy"

    @property
    def minutes(self) -> int:
        """Return the wait rounded up to whole minutes (for the message)."""
        return max(1, math.ceil(self.retry_after_s / 60))


class VerifySlots:
    """At most ``slots`` password verifications at once, ``slots * WAITING_PER_SLOT`` queued."""

    def __init__(self, slots: int, wait_s: float = WAIT_S) -> None:
        self._sem = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._waiting = 0
        self._max_waiting = slots * WAITING_PER_SLOT
        self._wait_s = wait_s

    @contextlib.contextmanager
    def hold(self) -> Iterator[bool]:
        """Yield True while holding a slot, False at once if too many already wait."""
        with self._lock:
            if self._waiting >= self._max_waiting:
                got = None
            else:
                self._waiting += 1
                got = False
        if got is None:
            yield False
            return
        try:
            got = self._sem.acquire(timeout=self._wait_s)
        finally:
            with self._lock:
                self._waiting -= 1
        try:
            yield got
        finally:
            if got:
                self._sem.release()


class LoginThrottle:
    """The three sign-in limits of one app, on Flask-Limiter's storage (see module doc)."""

    def __init__(self, server: flask.Flask, settings: Settings) -> None:
        url = settings.events.redis_url
        if url and url.startswith("unix://"):
            url = "redis+unix://" + url[len("unix://") :]
        self.limiter = Limiter(
            get_remote_address,
            app=server,
            storage_uri=url or "memory://",
            strategy="moving-window",
            key_prefix=f"{settings.events.redis_stream}:login",
            default_limits=[],
        )
        self._prefix = f"{settings.events.redis_stream}:login"
        self._fallback = MovingWindowRateLimiter(MemoryStorage())
        self.per_address = limits.parse(settings.web.login_limit_per_address)
        self.per_client = limits.parse(settings.web.login_limit_per_client)
        self.per_account = limits.parse(settings.web.login_limit_per_account)
        self.slots = VerifySlots(settings.web.login_concurrency)
        self._devices = URLSafeSerializer(server.secret_key, salt="gridsight-device")

    # -- storage, failing over to this process's memory when Redis is unreachable --------
    def _call(self, method: str, item, *keys: str):
        try:
            return getattr(self.limiter.limiter, method)(item, self._prefix, *keys)
        except Exception:  # noqa: BLE001 - storage down: count in this process instead
            log.warning("sign-in limit storage failed; counting in this process", exc_info=True)
            return getattr(self._fallback, method)(item, self._prefix, *keys)

    def _wait(self, item, *keys: str) -> int:
        stats = self._call("get_window_stats", item, *keys)
        return max(1, math.ceil(stats.reset_time - time.time()))

    # -- the checks ---------------------------------------------------------------------
    def check(
        self, username: str, address: str, device: str | None, known: Callable[[], bool]
    ) -> Refusal | None:
        """Return a Refusal if this attempt may not be verified now, else None.

        ``known()`` says whether the name is an active account (a database read, asked once
        the per-client and per-account limits let the attempt through). An attempt for any
        other name cannot succeed and counts against its address at once, before its dummy
        argon2 check; an active account's attempt only if it fails (``failed``).
        """
        name = username[:64]
        client = f"d:{device}" if device else f"a:{address}"
        if not self._call("test", self.per_client, "client", name, client):
            return self._refusal("client")
        if device is None and not self._call("test", self.per_account, "account", name):
            return self._refusal("account")
        if known():
            return None  # the address limit never refuses an active account's attempt
        if not self._call("hit", self.per_address, "address", address):
            return self._refusal("address")
        return None

    def _refusal(self, reason: str) -> Refusal:
        # one wait for every reason: the answer must not tell an unknown name from a locked one
        return Refusal(self.per_client.get_expiry(), reason)

    def failed(self, username: str, address: str, device: str | None, known: bool) -> None:
        """Count a failed verification against its limits (an unknown name's address hit was
        counted by ``check`` already)."""
        name = username[:64]
        client = f"d:{device}" if device else f"a:{address}"
        self._call("hit", self.per_client, "client", name, client)
        if device is None:
            self._call("hit", self.per_account, "account", name)
        if known:
            self._call("hit", self.per_address, "address", address)

    def succeeded(self, username: str, address: str, device: str | None) -> None:
        """Forget the failures of this (account, client) pair after a successful sign-in."""
        client = f"d:{device}" if device else f"a:{address}"
        with contextlib.suppress(Exception):
            self.limiter.limiter.clear(self.per_client, self._prefix, "client", username, client)
        self._fallback.clear(self.per_client, self._prefix, "client", username, client)

    # -- the device cookie ----------------------------------------------------------------
    def device_for(self, username: str) -> str | None:
        """Return the request's device id if this browser signed in as ``username`` before."""
        raw = flask.request.cookies.get(DEVICE_COOKIE)
        if not raw:
            return None
        try:
            data = self._devices.loads(raw)
        except BadSignature:
            return None
        if not isinstance(data, dict) or username not in (data.get("u") or []):
            return None
        return str(data.get("n") or "") or None

    def remember_device(self, resp: flask.Response, username: str, secure: bool) -> None:
        """Set the device cookie on ``resp``: this browser signed in as ``username``."""
        data: dict = {}
        raw = flask.request.cookies.get(DEVICE_COOKIE)
        if raw:
            with contextlib.suppress(BadSignature):
                data = self._devices.loads(raw)
        if not isinstance(data, dict):
            data = {}
        names = [n for n in (data.get("u") or []) if isinstance(n, str) and n != username]
        value = {"n": str(data.get("n") or secrets.token_urlsafe(16)),
                 "u": [username, *names][:DEVICE_NAMES_MAX]}  # fmt: skip
        resp.set_cookie(
            DEVICE_COOKIE,
            self._devices.dumps(value),
            max_age=DEVICE_DAYS * 86400,
            httponly=True,
            samesite="Lax",
            secure=secure,
        )
