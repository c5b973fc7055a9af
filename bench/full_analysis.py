"""Full analysis vs decode on a 12 MP JPEG, one core, and the peak memory of one analysis.

    python bench/full_analysis.py

Targets (issue 3): full analysis (decode included) at most 5x the full decode time; peak memory
under 600 MB. The decode is Pillow's (bench.common.pillow_decode: the yardstick the target was
set against); the pipeline's own decode, twice as fast since it takes simplejpeg, is printed
too. Timings are medians measured in one run; memory is the peak resident set of a fresh
process that loads the model and analyses the photo once.

The ratio depends on glibc's malloc: with its defaults, every 12 MP decode faults fresh zeroed
pages in (a third to half of the decode's time), with the settings the service and the batch
workers use (service/malloc.py) freed memory is reused. Both are printed, each measured in its
own process; the service's is the one that counts.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import single_core, twelve_mp_jpeg  # noqa: E402

_TIMING = """
import sys
sys.path.insert(0, {root!r})
import cv2
cv2.setNumThreads(1)
from bench.common import median_ms, pillow_decode
from pipelines.analysis import Analyzer
from pipelines.decode import decode_image
from pipelines.face_detection import FaceDetector
if {tuned!r}:
    from service.malloc import keep_freed_memory
    keep_freed_memory()
data = open({path!r}, 'rb').read()
a = Analyzer(detector=FaceDetector(threads=1))
print(median_ms(lambda: pillow_decode(data), repeat=5), median_ms(lambda: decode_image(data), repeat=5),
      median_ms(lambda: a.analyze(data), repeat=5))
"""

_CHILD = """
import resource, sys
sys.path.insert(0, {root!r})
from bench.common import single_core
single_core()
from pipelines.analysis import Analyzer
from pipelines.face_detection import FaceDetector
a = Analyzer(detector=FaceDetector(threads=1))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
a.analyze(open({path!r}, 'rb').read())
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main() -> None:
    single_core()
    from pipelines.analysis import Analyzer
    from pipelines.face_detection import FaceDetector

    data = twelve_mp_jpeg()
    analyzer = Analyzer(detector=FaceDetector(threads=1))
    doc = analyzer.analyze(data).document
    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        f.write(data)
        f.flush()
        timings = {}
        for tuned in (True, False):
            code = _TIMING.format(root=str(ROOT), path=f.name, tuned=tuned)
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env=dict(os.environ, OMP_NUM_THREADS="1"))
            timings[tuned] = tuple(float(v) for v in res.stdout.split())
        out = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT), path=f.name)],
                             capture_output=True, text=True, check=True).stdout.split()
    before_mb, peak_mb = int(out[0]) / 1024, int(out[1]) / 1024
    print(f"photo: 4000x3000 JPEG, face at {doc['face']['px_per_mm']:.1f} px/mm, "
          f"decoded at 1/{doc['image']['decode_reduction']}, quality {doc['quality']['status']}")
    for tuned, label in ((True, "service malloc (service/malloc.py)"), (False, "glibc malloc defaults")):
        yardstick, decode, analysis = timings[tuned]
        print(f"{label}:")
        print(f"  full decode, Pillow (yardstick) {yardstick:8.1f} ms")
        print(f"  full decode, pipeline           {decode:8.1f} ms")
        print(f"  full analysis (incl. decode)    {analysis:8.1f} ms  = {analysis / yardstick:.2f}x the yardstick "
              f"(target <= 5x); {analysis / decode:.2f}x the pipeline's decode")
    print(f"peak memory of one analysis   {peak_mb:8.0f} MB  (process with model loaded: {before_mb:.0f} MB; "
          f"target < 600 MB)")


if __name__ == "__main__":
    main()
