"""Shared helpers for the benchmark scripts: single-core settings, a 12 MP test photo, timing."""
from __future__ import annotations

import io
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def single_core() -> None:
    """Pin OpenCV (and BLAS through the environment) to one thread: targets are per core.
    malloc is set up as the service and batch workers set it (service/malloc.py), so a
    reference rate is the best one process reaches."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    from service.malloc import keep_freed_memory

    cv2.setNumThreads(1)
    keep_freed_memory()


def twelve_mp_jpeg(quality: int = 90) -> bytes:
    """A 4000 x 3000 JPEG: the sample face render placed on a studio-grey canvas at the size
    a 12 MP clinic photo shows a face (face about 45 % of the frame height)."""
    import cv2
    import numpy as np
    from PIL import Image

    face = cv2.imread(str(ROOT / "sample_images" / "astronaut_render.jpg"))[..., ::-1]
    face = cv2.resize(face, (2800, 2800), interpolation=cv2.INTER_AREA)
    canvas = np.full((3000, 4000, 3), 170, np.uint8)
    canvas[100:2900, 600:3400] = face[:2800, :2800]
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def median_ms(fn, repeat: int = 7, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def pillow_decode(data: bytes):
    """Pillow's full decode of a JPEG into a numpy array: the yardstick of the "x decode" targets.

    The pipeline's own decode (pipelines/decode.py, simplejpeg) is twice as fast; measured against
    it, every ratio would double with no change in the analysis. The yardstick stays the decode
    the targets were set against (it was the pipeline's until pipeline 0.3.0 took simplejpeg)."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))
