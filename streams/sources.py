"""Frame sources (RTSP, HTTP MJPEG, looping video file, still image) and URL scrubbing.

Every source yields decoded BGR frames through ``read()``; a connection failure raises
``SourceError`` (the hub reconnects with backoff), a single undecodable frame raises
``FrameDecodeError`` (counted, skipped). Credentials in a URL never reach a log line, an
exception message or the UI: use ``redact_url`` / ``scrub_text``.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import cv2
import numpy as np
from pydantic import Field

from streams.registry import Registry, StrictModel

log = logging.getLogger(__name__)

#: parameter names (lower case, letters and digits only) whose values are secrets; a name that
#: ends with one of them (``api_key``, ``X-Amz-Signature``, ``streamToken``) is one too
_SECRET_QUERY_KEYS = (
    "password",
    "passwd",
    "pwd",
    "pass",
    "token",
    "key",
    "secret",
    "auth",
    "sig",
    "signature",
    "credential",
    "credentials",
)
_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]*@")
_PARAM_RE = re.compile(r"([?&;#])([^=&;#\s]+)=([^&;#\s]*)")
VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".m4v", ".ts", ".webm", ".flv", ".mpg", ".mpeg"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def _secret_key(name: str) -> bool:
    """Return True if a URL parameter called ``name`` carries a secret (fails closed)."""
    norm = re.sub(r"[^a-z0-9]", "", unquote(name).lower())
    return norm.startswith(("auth", "token", "pass", "secret")) or norm.endswith(_SECRET_QUERY_KEYS)


def _scrub_params(text: str) -> str:
    """Return ``text`` with the value of every secret ``name=value`` parameter as ``***``."""
    return _PARAM_RE.sub(lambda m: f"{m[1]}{m[2]}=***" if _secret_key(m[2]) else m[0], text)


def redact_url(url: str | None) -> str:
    """Return ``url`` safe to log or display: user:password and secret parameters -> ``***``.

    The one credential scrubber of GridSight (logs, errors, camera listings, exports): the
    userinfo goes whatever it holds, and so does the value of every query or fragment
    parameter whose name says secret (``password``, ``pwd``, ``token``, ``api_key``, ``sig``...).
    """
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if not parts.scheme or not parts.netloc:
        return scrub_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        host = netloc.rsplit("@", 1)[1]
        netloc = f"***@{host}"
    # query and fragment as written (& or ; between parameters), only secret values replaced
    query = _scrub_params("?" + parts.query)[1:] if parts.query else ""
    fragment = _scrub_params("#" + parts.fragment)[1:] if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def scrub_text(text: str) -> str:
    """Return ``text`` with credentials of every URL inside it replaced by ``***``."""
    return _scrub_params(_USERINFO_RE.sub(r"\1***@", text))


class SourceError(RuntimeError):
    """The source cannot deliver frames (unreachable, closed, timed out); message is scrubbed."""

    def __init__(self, message: str) -> None:
        super().__init__(scrub_text(message))


class FrameDecodeError(SourceError):
    """One frame could not be decoded; the connection may still be good."""


class FrameSource(Protocol):
    """What the hub needs from a source."""

    display_url: str
    #: Seconds between frames the source is expected to deliver (for staleness).
    expected_interval: float
    #: Optional (default False): True = read the next frame only once the last one was taken.
    #: paced_by_consumer: bool

    def open(self) -> None: ...

    def read(self) -> np.ndarray: ...

    def close(self) -> None: ...


# -- configs -------------------------------------------------------------------------------


class RtspSourceConfig(StrictModel):
    """An RTSP camera or NVR channel, decoded by PyAV (default) or OpenCV's FFmpeg backend.

    PyAV hands over every picture at its own size, so a camera that changes resolution
    inside one session (a 16:9 profile after a 4:3 one) is seen as it is; OpenCV's backend
    scales every picture to the size the stream had when it was opened (16:9 squashed into
    4:3, with no sign of it), so ``decoder="opencv"`` is kept only as a fallback.
    """

    type: Literal["rtsp"] = "rtsp"
    url: str = Field(pattern=r"(?i)^rtsps?://", repr=False)  # may hold credentials
    transport: Literal["tcp", "udp"] = "tcp"
    open_timeout_s: float = Field(5.0, gt=0, le=60)
    read_timeout_s: float = Field(4.0, gt=0, le=60)
    decoder: Literal["pyav", "opencv"] = "pyav"


class MjpegSourceConfig(StrictModel):
    """An HTTP multipart MJPEG stream (many IP cameras, encoders, our own ``/video/*.mjpg``)."""

    type: Literal["mjpeg"] = "mjpeg"
    url: str = Field(pattern=r"(?i)^https?://", repr=False)  # may hold credentials
    timeout_s: float = Field(5.0, gt=0, le=60)


class FileSourceConfig(StrictModel):
    """A local video file, looped, paced to its own frame rate (demo walls, tests)."""

    type: Literal["file"] = "file"
    path: str
    loop: bool = True
    #: False: no pacing; a ``CameraStream`` then reads the next frame only when the previous
    #: one was taken for redaction (measures redaction capacity; nothing decoded is skipped).
    realtime: bool = True
    #: Used when the container reports no frame rate.
    fallback_fps: float = Field(10.0, gt=0, le=240)


class StillSourceConfig(StrictModel):
    """A still image from a URL (snapshot-only cameras) or a file, refetched periodically."""

    type: Literal["still"] = "still"
    url: str = Field(repr=False)  # may hold credentials
    refresh_s: float = Field(1.0, gt=0, le=3600)
    timeout_s: float = Field(5.0, gt=0, le=60)


SOURCES: Registry[FrameSource] = Registry("source")


def source_config_for(url: str) -> StrictModel:
    """Return the source config a camera's ``stream_url`` implies (rtsp, mjpeg, file, still)."""
    if not url:
        raise SourceError("camera has no stream_url")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    suffix = Path(unquote(parts.path)).suffix.lower()
    if scheme in ("rtsp", "rtsps"):
        transport = "udp" if "transport=udp" in parts.query.lower() else "tcp"
        return RtspSourceConfig(url=url, transport=transport)
    if scheme in ("http", "https"):
        if suffix in IMAGE_SUFFIXES:
            return StillSourceConfig(url=url)
        return MjpegSourceConfig(url=url)
    path = unquote(parts.path) if scheme == "file" else url
    if Path(path).suffix.lower() in IMAGE_SUFFIXES:
        return StillSourceConfig(url=path)
    return FileSourceConfig(path=path)


def create_source(config: StrictModel | dict | str) -> FrameSource:
    """Return a source for a config, a config dict, or a camera's ``stream_url``."""
    if isinstance(config, str):
        config = source_config_for(config)
    return SOURCES.create(config)


# -- OpenCV/FFmpeg captures ------------------------------------------------------------------

# OPENCV_FFMPEG_CAPTURE_OPTIONS is read when a capture opens; the lock keeps two cameras with
# different transports from racing on it.
_FFMPEG_ENV_LOCK = threading.Lock()


#: FFmpeg decoder threads per capture; 0 = FFmpeg's default (one per core). Set through
#: ``streams.configure_threads`` (a redaction worker decodes on one thread per stream: its
#: streams already run in parallel, and one thread costs less CPU per frame).
_decode_threads = 0


def set_decode_threads(n: int) -> None:
    """Use ``n`` FFmpeg decoder threads for captures opened from now on (0 = FFmpeg default)."""
    global _decode_threads
    _decode_threads = max(0, int(n))


def _thread_params() -> list[int]:
    return [cv2.CAP_PROP_N_THREADS, _decode_threads] if _decode_threads else []


class _CaptureSource:
    display_url = ""
    expected_interval = 0.1

    def __init__(self) -> None:
        self._cap: cv2.VideoCapture | None = None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _grab(self) -> np.ndarray:
        if self._cap is None:
            raise SourceError(f"{self.display_url} is not open")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise SourceError(f"no frame from {self.display_url} (stream ended or timed out)")
        return frame


class RtspSource(_CaptureSource):
    """A frame source reading an RTSP URL over TCP or UDP, with open/read timeouts.

    ``resolution_changes`` counts pictures whose size differs from the one before.
    """

    def __init__(self, config: RtspSourceConfig) -> None:
        super().__init__()
        self.config = config
        self.display_url = redact_url(config.url)
        self.resolution_changes = 0
        self._container = None
        self._stream = None
        self._frames = None
        self._size: tuple[int, int] | None = None

    def open(self) -> None:
        if self.config.decoder == "pyav":
            self._open_pyav()
        else:
            self._open_opencv()

    def close(self) -> None:
        super().close()
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too
                log.debug("closing %s failed", self.display_url)
            self._container = self._stream = self._frames = None

    def read(self) -> np.ndarray:
        frame = self._read_pyav() if self.config.decoder == "pyav" else self._grab()
        size = (frame.shape[1], frame.shape[0])
        if self._size is not None and size != self._size:
            self.resolution_changes += 1
            log.info("%s: resolution changed %sx%s -> %sx%s", self.display_url, *self._size, *size)
        self._size = size
        return frame

    def _open_pyav(self) -> None:
        import av

        c = self.config
        try:
            container = av.open(c.url, options={"rtsp_transport": c.transport},
                                timeout=(c.open_timeout_s, c.read_timeout_s))  # fmt: skip
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {self.display_url} over {c.transport}: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.display_url} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if _decode_threads:
            stream.codec_context.thread_count = _decode_threads
        rate = stream.average_rate or stream.guessed_rate
        if rate and 0 < float(rate) < 240:
            self.expected_interval = 1.0 / float(rate)
        self._container, self._stream = container, stream
        self._frames = container.decode(stream)

    def _read_pyav(self) -> np.ndarray:
        import av

        if self._frames is None:
            raise SourceError(f"{self.display_url} is not open")
        try:
            picture = next(self._frames)
        except StopIteration as exc:
            raise SourceError(f"{self.display_url} ended the stream") from exc
        except av.InvalidDataError as exc:
            self._frames = self._container.decode(self._stream)  # go on after the bad packet
            raise FrameDecodeError(f"undecodable frame from {self.display_url}: {exc}") from exc
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"no frame from {self.display_url}: {exc}") from exc
        return picture.to_ndarray(format="bgr24")

    def _open_opencv(self) -> None:
        c = self.config
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(c.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(c.read_timeout_s * 1000),
            *_thread_params(),
        ]
        with _FFMPEG_ENV_LOCK:
            old = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{c.transport}"
            try:
                cap = cv2.VideoCapture(c.url, cv2.CAP_FFMPEG, params)
            finally:
                if old is None:
                    os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
                else:
                    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = old
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.display_url} over {c.transport}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        if fps and 0 < fps < 240:
            self.expected_interval = 1.0 / fps
        self._cap = cap


class FileSource(_CaptureSource):
    """A frame source playing a local video, looping at the end, paced to the file's frame rate."""

    def __init__(self, config: FileSourceConfig) -> None:
        super().__init__()
        self.config = config
        self.display_url = Path(config.path).name
        self._next_t = 0.0
        self.paced_by_consumer = not config.realtime

    def open(self) -> None:
        if not Path(self.config.path).is_file():
            raise SourceError(f"video file {self.display_url} does not exist")
        cap = cv2.VideoCapture(self.config.path, cv2.CAP_ANY, _thread_params())
        if not cap.isOpened():
            raise SourceError(f"cannot decode video file {self.display_url}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.expected_interval = 1.0 / (fps if fps and 0 < fps < 240 else self.config.fallback_fps)
        self._cap = cap
        self._next_t = time.monotonic()

    def read(self) -> np.ndarray:
        if self._cap is None:
            raise SourceError(f"{self.display_url} is not open")
        ok, frame = self._cap.read()
        if not ok and self.config.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
        if not ok or frame is None:
            raise SourceError(f"video file {self.display_url} ended")
        if self.config.realtime:
            self._next_t += self.expected_interval
            delay = self._next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:
                self._next_t = time.monotonic()  # fell far behind: do not burst to catch up
        return frame


# -- HTTP -----------------------------------------------------------------------------------


def _open_http(url: str, timeout: float):
    """Return an open urllib response; credentials in the URL become a Basic auth header."""
    parts = urlsplit(url)
    headers = {"User-Agent": "GridSight-streams/1"}
    if parts.username is not None:
        user = unquote(parts.username)
        password = unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    req = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) checked by config
    try:
        return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SourceError(f"cannot open {redact_url(url)}: {exc}") from exc


def _decode_jpeg(data: bytes, where: str) -> np.ndarray:
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise FrameDecodeError(f"undecodable image ({len(data)} bytes) from {where}")
    return frame


class MjpegSource:
    """A frame source reading a multipart MJPEG HTTP stream (parts found by JPEG SOI/EOI marks)."""

    expected_interval = 0.1
    _MAX_BUFFER = 16 * 1024 * 1024

    def __init__(self, config: MjpegSourceConfig) -> None:
        self.config = config
        self.display_url = redact_url(config.url)
        self._resp = None
        self._buf = bytearray()

    def open(self) -> None:
        self._resp = _open_http(self.config.url, self.config.timeout_s)
        self._buf.clear()

    def close(self) -> None:
        if self._resp is not None:
            try:
                self._resp.close()
            except OSError:
                log.debug("closing %s failed", self.display_url)
            self._resp = None

    def read(self) -> np.ndarray:
        if self._resp is None:
            raise SourceError(f"{self.display_url} is not open")
        while True:
            start = self._buf.find(b"\xff\xd8")
            if start >= 0:
                end = self._buf.find(b"\xff\xd9", start + 2)
                if end >= 0:
                    data = bytes(self._buf[start : end + 2])
                    del self._buf[: end + 2]
                    return _decode_jpeg(data, self.display_url)
            elif len(self._buf) > 2:
                del self._buf[:-1]
            if len(self._buf) > self._MAX_BUFFER:
                self._buf.clear()
                raise FrameDecodeError(f"no JPEG end marker in 16 MB from {self.display_url}")
            try:
                chunk = self._resp.read1(65536)
            except (OSError, ValueError) as exc:
                raise SourceError(f"read from {self.display_url} failed: {exc}") from exc
            if not chunk:
                raise SourceError(f"{self.display_url} closed the stream")
            self._buf.extend(chunk)


class StillSource:
    """A frame source serving the same still image, refetched every ``refresh_s`` seconds."""

    def __init__(self, config: StillSourceConfig) -> None:
        self.config = config
        self.display_url = redact_url(config.url) if "://" in config.url else Path(config.url).name
        self.expected_interval = config.refresh_s
        self._next_t = 0.0

    def open(self) -> None:
        self._next_t = time.monotonic()
        self._fetch()  # fail at open when the image is not there at all

    def close(self) -> None:
        pass

    def _fetch(self) -> np.ndarray:
        url = self.config.url
        if url.lower().startswith(("http://", "https://")):
            resp = _open_http(url, self.config.timeout_s)
            try:
                data = resp.read()
            except OSError as exc:
                raise SourceError(f"read from {self.display_url} failed: {exc}") from exc
            finally:
                resp.close()
        else:
            path = Path(unquote(urlsplit(url).path) if url.startswith("file:") else url)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise SourceError(f"cannot read image {self.display_url}: {exc.strerror}") from exc
        return _decode_jpeg(data, self.display_url)

    def read(self) -> np.ndarray:
        delay = self._next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next_t = max(self._next_t + self.config.refresh_s, time.monotonic())
        return self._fetch()


SOURCES.register(RtspSourceConfig)(RtspSource)
SOURCES.register(MjpegSourceConfig)(MjpegSource)
SOURCES.register(FileSourceConfig)(FileSource)
SOURCES.register(StillSourceConfig)(StillSource)
