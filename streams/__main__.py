"""``python -m streams redact INPUT OUTPUT [--rules FILE]``: redact an image or a video for release.

Videos keep their size and frame rate; audio is dropped (OpenCV writes video only). Every
output frame went through the redaction pipeline: a frame that fails detection is written
fully pixelated, never as it came in. Default rules obscure faces and plates.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from streams import configure_threads
from streams.sources import IMAGE_SUFFIXES

log = logging.getLogger("streams")

FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class CliError(Exception):
    """A problem the user can fix (missing input, bad rules file); printed without traceback."""


def _load_rules(path: Path | None, detect_every: int | None):
    from streams.rules import parse_rules

    try:
        rules = parse_rules(path.read_text(encoding="utf-8") if path else None)
    except OSError as exc:
        raise CliError(f"cannot read rules file {path}: {exc.strerror}") from exc
    except ValidationError as exc:
        raise CliError(f"rules file {path} is invalid:\n{exc}") from exc
    updates = {"on_failure": "pixelate_frame"}  # an export keeps every frame slot
    if detect_every is not None:
        updates["detect_every"] = detect_every
    return rules.model_copy(update=updates)


def redact_image(src: Path, dst: Path, rules) -> dict:
    """Return pipeline counters after writing the redacted image ``src`` to ``dst``."""
    import cv2

    from streams.pipeline import RedactionPipeline, rules_for_still

    frame = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if frame is None:
        raise CliError(f"{src} is not a readable image")
    pipeline = RedactionPipeline(rules_for_still(rules), name=src.name)
    result = pipeline.process(frame)
    out = result.frame if result.frame is not None else frame * 0
    if not cv2.imwrite(str(dst), out):
        raise CliError(f"cannot write {dst} (is the extension an image type?)")
    return dict(pipeline.stats)


def redact_video(src: Path, dst: Path, rules, progress: bool = True) -> dict:
    """Return pipeline counters after writing the redacted video ``src`` to ``dst``."""
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
    fourcc = FOURCC_BY_SUFFIX.get(dst.suffix.lower())
    if fourcc is None:
        raise CliError(
            f"unsupported output type {dst.suffix}; use one of {sorted(FOURCC_BY_SUFFIX)}"
        )
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise CliError(f"cannot write video {dst}")
    pipeline = RedactionPipeline(rules, name=src.name)
    try:
        with tqdm(total=total, unit="frame", disable=not progress, desc=src.name) as bar:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                result = pipeline.process(frame)
                out = result.frame if result.frame is not None else frame * 0
                if out.shape[:2] != (height, width):
                    out = cv2.resize(out, (width, height))
                writer.write(out)
                bar.update(1)
    finally:
        cap.release()
        writer.release()
    return dict(pipeline.stats)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code (0 ok, 2 usage or input error)."""
    parser = argparse.ArgumentParser(prog="python -m streams", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("redact", help="redact an image or a video file for release")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--rules", type=Path, help="RedactionRules JSON (default: faces + plates)")
    p.add_argument(
        "--detect-every",
        type=int,
        default=1,
        help="run detectors every N frames (default 1: exports favour recall over speed)",
    )
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    configure_threads(args.threads)
    try:
        if not args.input.is_file():
            raise CliError(f"input {args.input} does not exist")
        if args.input.resolve() == args.output.resolve():
            raise CliError("output must differ from input (the original is kept)")
        rules = _load_rules(args.rules, args.detect_every)
        if args.input.suffix.lower() in IMAGE_SUFFIXES:
            stats = redact_image(args.input, args.output, rules)
        else:
            stats = redact_video(args.input, args.output, rules, progress=not args.quiet)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"output": str(args.output), **stats}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
