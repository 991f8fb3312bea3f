"""``python -m streams redact INPUT OUTPUT [--rules FILE]``: redact an image or a video for release.

Videos keep their frame rate and frame size (a frame of another size inside the input is
scaled to fit with its aspect kept, black bars around, and counted); audio is not copied
(the summary says so). Every output frame went through the redaction pipeline: a frame that
fails detection is written fully pixelated, never as it came in. Default rules obscure faces,
plates and persons (moving person-sized blobs), raised to the deployment's privacy floor.
``.mp4``/``.m4v``/``.mov`` are written as H.264 when the installed OpenCV can encode it
(PyAV's bundled libx264 first, then OpenCV's ``avc1``), otherwise as MPEG-4 part 2; the
summary names the codec used.

The privacy floor is read from the environment the way the web app reads it
(``GRIDSIGHT_PRIVACY_FLOOR_TARGETS``, ``GRIDSIGHT_PRIVACY_FLOOR_DETECTORS``,
``GRIDSIGHT_PRIVACY_FLOOR_LIMITS``): a rules file below it is refused. Offline, detection may take as long as it needs (no per-frame
deadline); a detector that gives no answer for ``--hang-after`` seconds is an error. Motion
detection (persons) reads the video ahead first, so its background is learned from the
clip before the first frame is redacted.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import sys
import threading
from pathlib import Path

from pydantic import ValidationError

from streams import configure_threads
from streams.settings import SettingsError, load_video_settings
from streams.sources import IMAGE_SUFFIXES

log = logging.getLogger("streams")

EXIT_OK, EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_HUNG = 0, 2, 3, 4
EXIT_CODES = f"""exit codes:
  {EXIT_OK}  done: every frame written redacted (or fully pixelated where detection failed)
  {EXIT_BAD_INPUT}  a bad input, output or rules file, a rules file below the privacy floor, or a
     bad GRIDSIGHT_PRIVACY_FLOOR_* setting: one line on stderr naming it, nothing written
  {EXIT_INCOMPLETE}  the input is damaged or truncated: the output holds every frame that could be
     decoded, and stderr says how many of how many
  {EXIT_HUNG}  a detector gave no answer for --hang-after seconds: nothing written"""
#: Seconds of video read ahead to teach motion detection the background (at most).
READ_AHEAD_S = 60.0
#: Frames learned from that window, evenly spread (MOG2's default history).
READ_AHEAD_FRAMES = 200
#: Default --hang-after: offline detection may be slow, but not this slow on one frame.
HANG_AFTER_S = 600.0
#: Codecs tried per output type, best first: (encoder, name in the summary); an encoder is
#: "pyav:<FFmpeg encoder>" or an OpenCV fourcc.
_H264 = (("pyav:libx264", "h264"), ("avc1", "h264"), ("mp4v", "mpeg4-part2"))
CODECS_BY_SUFFIX = {
    ".mp4": _H264,
    ".m4v": _H264,
    ".mov": _H264,
    ".avi": (("MJPG", "mjpeg"),),
    ".mkv": (("MJPG", "mjpeg"),),
}
AUDIO_NOTE = "not copied: the output holds video only"


class CliError(Exception):
    """A problem the user can fix (missing input, bad rules file); printed without traceback."""


class IncompleteInput(Exception):
    """The input ended before the frames it declares: the output was written, but short."""


class DetectorHung(Exception):
    """A frame's redaction gave no answer within the deadline (a hung detector)."""


class DeadlineRunner:
    """One worker thread that runs each call and gives up waiting after ``seconds``.

    A detector stuck in native code cannot be interrupted; the CLI stops waiting for it,
    reports the hang and exits (the thread is a daemon: it does not keep the process alive).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._work, name="redact", daemon=True).start()

    def _work(self) -> None:
        while True:
            fn, args, answer, done = self._jobs.get()
            try:
                answer.append((True, fn(*args)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, re-raised there
                answer.append((False, exc))
            done.set()

    def call(self, fn, *args):
        """Return ``fn(*args)`` run on the worker; raise ``DetectorHung`` after the deadline."""
        answer: list = []
        done = threading.Event()
        self._jobs.put((fn, args, answer, done))
        if not done.wait(self.seconds):
            raise DetectorHung(self.seconds)
        ok, value = answer[0]
        if not ok:
            raise value
        return value


def _load_rules(path: Path | None, detect_every: int | None):
    """Return the rules to redact with: the file's (refused below the privacy floor), or the
    default rules raised to the floor."""
    from streams.floor import FloorError, floor_from_env
    from streams.rules import parse_rules

    try:
        floor = floor_from_env()
    except FloorError as exc:
        raise CliError(f"privacy floor: {exc}") from exc
    try:
        rules = parse_rules(path.read_text(encoding="utf-8") if path else None)
    except OSError as exc:
        raise CliError(f"cannot read rules file {path}: {exc.strerror}") from exc
    except (ValidationError, ValueError) as exc:
        raise CliError(f"rules file {path} is invalid: {_first_error(exc)}") from exc
    if path is None:
        rules, _ = floor.raise_rules(rules)
    else:
        try:
            floor.check(rules)
        except FloorError as exc:
            raise CliError(f"rules file {path} is {exc}") from exc
    updates = {"on_failure": "pixelate_frame"}  # an export keeps every frame slot
    if detect_every is not None:
        updates["detect_every"] = detect_every
    return rules.model_copy(update=updates)


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"{where}: {err['msg']}{more}"
    return str(exc).splitlines()[0]


def redact_image(src: Path, dst: Path, rules, hang_after: float = HANG_AFTER_S) -> dict:
    """Return pipeline counters after writing the redacted image ``src`` to ``dst``."""
    import cv2

    from streams.pipeline import RedactionPipeline, rules_for_still

    if dst.suffix.lower() not in IMAGE_SUFFIXES:
        raise CliError(
            f"output {dst.name}: an image is written as one of {' '.join(sorted(IMAGE_SUFFIXES))}"
        )
    frame = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if frame is None:
        raise CliError(f"{src} is not a readable image")
    pipeline = RedactionPipeline(rules_for_still(rules), name=src.name, enforce_deadline=False)
    result = DeadlineRunner(hang_after).call(pipeline.process, frame)
    out = result.frame if result.frame is not None else frame * 0
    try:
        written = cv2.imwrite(str(dst), out)
    except cv2.error as exc:
        raise CliError(f"cannot write {dst}: {_first_error(exc)}") from exc
    if not written:
        raise CliError(f"cannot write {dst}")
    return dict(pipeline.stats)


def open_writer(dst: Path, fps: float, size: tuple[int, int]):
    """Return (an open ``cv2.VideoWriter``, codec name) for ``dst``, best codec first."""
    import cv2

    choices = CODECS_BY_SUFFIX.get(dst.suffix.lower())
    if choices is None:
        raise CliError(
            f"unsupported output type {dst.suffix or '(none)'}; use one of "
            f"{' '.join(sorted(CODECS_BY_SUFFIX))}"
        )
    for encoder, name in choices:
        if encoder.startswith("pyav:"):
            writer = PyAvWriter.open(dst, encoder.removeprefix("pyav:"), fps, size)
            if writer is not None:
                return writer, name
            continue
        writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*encoder), fps, size)
        if writer.isOpened():
            if name != choices[0][1]:
                name += f" (no {choices[0][1]} encoder installed)"
            return writer, name
        writer.release()
    raise CliError(f"cannot write video {dst}")


class PyAvWriter:
    """A video writer on PyAV (FFmpeg with libx264 in its wheel), with OpenCV's write/release."""

    def __init__(self, container, stream) -> None:
        self.container = container
        self.stream = stream

    @classmethod
    def open(cls, dst: Path, encoder: str, fps: float, size: tuple[int, int]):
        """Return a writer, or None when this encoder cannot write ``size`` here."""
        from fractions import Fraction

        import av

        if size[0] % 2 or size[1] % 2:  # 4:2:0 needs even sizes: let another codec write it
            return None
        try:
            container = av.open(str(dst), "w")
        except (av.FFmpegError, OSError):
            return None
        try:
            stream = container.add_stream(encoder, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "20", "preset": "veryfast"}
            stream.codec_context.open()
        except (av.FFmpegError, ValueError, OSError):
            container.close()
            dst.unlink(missing_ok=True)
            return None
        return cls(container, stream)

    def write(self, frame) -> None:
        """Encode one BGR frame."""
        import av

        picture = av.VideoFrame.from_ndarray(frame, format="bgr24")
        for packet in self.stream.encode(picture):
            self.container.mux(packet)

    def release(self) -> None:
        """Flush the encoder and close the file."""
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def fit_frame(frame, width: int, height: int):
    """Return ``frame`` scaled to fit ``width`` x ``height`` with its aspect kept (black bars)."""
    import cv2
    import numpy as np

    h, w = frame.shape[:2]
    if (h, w) == (height, width):
        return frame
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def read_ahead(src: Path, pipeline, fps: float, total: int | None) -> int:
    """Return how many frames of ``src`` the pipeline's motion detection learned before the
    first frame is redacted: ``READ_AHEAD_FRAMES`` spread over the first ``READ_AHEAD_S``
    seconds (the whole clip when shorter), at the first frame's size.

    Learned from its first frames alone, the background holds whoever is in the picture then:
    a person walking from the start was only partly boxed on the first frames.
    """
    import cv2

    if not pipeline.learns_from_frames:
        return 0
    window = round(READ_AHEAD_S * fps)
    if total:
        window = min(window, total)
    step = max(1, window // READ_AHEAD_FRAMES)
    cap = cv2.VideoCapture(str(src))

    def sampled():
        shape = None
        for i in range(window):
            ok, frame = cap.read()
            if not ok:
                return
            shape = shape or frame.shape
            if i % step == 0 and frame.shape == shape:
                yield frame

    try:
        return pipeline.warm_up(sampled())
    finally:
        cap.release()


def redact_video(
    src: Path, dst: Path, rules, progress: bool = True, hang_after: float = HANG_AFTER_S
) -> dict:
    """Return the summary (counters, codec, frames) after writing the redacted ``src`` to ``dst``.

    Raises ``IncompleteInput`` (after writing) when fewer frames decode than the file declares,
    ``DetectorHung`` (after deleting the partial output) when a frame takes ``hang_after`` s.
    """
    import cv2
    from tqdm import tqdm

    from streams.pipeline import RedactionPipeline

    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise CliError(f"{src} is not a readable video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    if width <= 0 or height <= 0:
        cap.release()
        raise CliError(f"{src} is not a readable video (no frame size)")
    pipeline = RedactionPipeline(rules, name=src.name, enforce_deadline=False)
    runner = DeadlineRunner(hang_after)
    try:
        learned = runner.call(read_ahead, src, pipeline, fps, total)
    except DetectorHung:
        cap.release()
        raise
    writer, codec = open_writer(dst, fps, (width, height))
    written = resized = 0
    hung = False
    try:
        with tqdm(total=total, unit="frame", disable=not progress, desc=src.name) as bar:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                try:
                    result = runner.call(pipeline.process, frame)
                except DetectorHung as exc:
                    hung = True
                    raise DetectorHung(hang_after, written) from exc
                out = result.frame if result.frame is not None else frame * 0
                if out.shape[:2] != (height, width):
                    resized += 1
                out = fit_frame(out, width, height)
                writer.write(out)
                written += 1
                bar.update(1)
    finally:
        cap.release()
        writer.release()
        if hung:
            dst.unlink(missing_ok=True)  # a file cut at a hang is no release copy
    summary = {"frames": written, "declared_frames": total, "codec": codec, "audio": AUDIO_NOTE,
               "resized_frames": resized, "read_ahead_frames": learned,
               **pipeline.stats}  # fmt: skip
    if written == 0:
        dst.unlink(missing_ok=True)
        raise CliError(f"{src} has no decodable frame")
    if total is not None and written < total:
        raise IncompleteInput(summary)
    return summary


def _check_paths(src: Path, dst: Path) -> None:
    if src.is_dir():
        raise CliError(f"input {src} is a directory; give one image or video file")
    if not src.exists():
        raise CliError(f"input {src} does not exist")
    if dst.is_dir():
        raise CliError(f"output {dst} is a directory; give a file name such as {dst / 'out.mp4'}")
    if not dst.parent.is_dir():
        raise CliError(f"output folder {dst.parent} does not exist")
    if src.resolve() == dst.resolve():
        raise CliError("output must differ from input (the original is kept)")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code (0 ok, 2 bad input, 3 damaged input, 4 hung
    detector)."""
    parser = argparse.ArgumentParser(
        prog="python -m streams",
        description=__doc__.splitlines()[0],
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "redact",
        help="redact an image or a video file for release",
        description="Redact an image or a video file for release.\nThe privacy floor comes "
        "from GRIDSIGHT_PRIVACY_FLOOR_TARGETS,\nGRIDSIGHT_PRIVACY_FLOOR_DETECTORS and "
        "GRIDSIGHT_PRIVACY_FLOOR_LIMITS,\nread as the web app reads them.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument(
        "--rules",
        type=Path,
        help="RedactionRules JSON, refused below the privacy floor (default: faces, plates "
        "and persons, raised to the floor)",
    )
    p.add_argument(
        "--detect-every",
        type=int,
        default=1,
        help="accepted for older scripts, no effect: every region that changes is detected "
        "on the frame where it changes",
    )
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--hang-after",
        type=float,
        default=HANG_AFTER_S,
        metavar="SECONDS",
        help=f"a frame whose detection takes longer is a hung detector: exit {EXIT_HUNG}, "
        f"nothing written (default {HANG_AFTER_S:.0f}; no other deadline: offline, "
        "detection may be slow)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        # the deployment's video section, as the web app reads it: a bad value stops here too
        load_video_settings()
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"configuration error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    configure_threads(args.threads)
    try:
        _check_paths(args.input, args.output)
        rules = _load_rules(args.rules, args.detect_every)
        if args.hang_after <= 0:
            raise CliError(
                f"--hang-after must be a positive number of seconds, not {args.hang_after}"
            )
        if args.input.suffix.lower() in IMAGE_SUFFIXES:
            stats = redact_image(args.input, args.output, rules, args.hang_after)
        else:
            stats = redact_video(args.input, args.output, rules, progress=not args.quiet,
                                 hang_after=args.hang_after)  # fmt: skip
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DetectorHung as exc:
        where = f" on frame {exc.args[1] + 1}" if len(exc.args) > 1 else ""
        print(f"error: a detector gave no answer for {args.hang_after:g} s{where} of "
              f"{args.input} (hung); nothing written (exit {EXIT_HUNG})",
              file=sys.stderr)  # fmt: skip
        return EXIT_HUNG
    except IncompleteInput as exc:
        stats = exc.args[0]
        print(f"warning: {args.input} is damaged or truncated: decoded {stats['frames']} of "
              f"{stats['declared_frames']} frames; {args.output} holds those "
              f"(exit {EXIT_INCOMPLETE})", file=sys.stderr)  # fmt: skip
        print(json.dumps({"output": str(args.output), "complete": False, **stats}))
        return EXIT_INCOMPLETE
    print(json.dumps({"output": str(args.output), **stats}, ensure_ascii=False))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
