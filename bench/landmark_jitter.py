"""How far the face's landmarks, and so its regions, move under capture wobble.

    python bench/landmark_jitter.py [--dev N]

Region polygons are placed in millimetres from the five landmarks (pipelines/regions.py), and
the canonical frame's scale comes from the eye distance. For each base photo (the sample render,
plus N development faces from ../shared when present) the photo is analysed as is and under each
capture wobble of bench/repeatability.py. Printed per photo, as the spread (max - min) over the
base and its wobbles:

  px/mm     the photo's native scale from the eye distance, scaled photos taken back to full
            size (%, of the median)
  nose, mouth_left, mouth_right
            position in the canonical frame (mm, x and y; the eyes are fixed there by definition)
  chin cm2  the chin region's measured area, the region that moves most when the mouth or the
            scale moves (%, of the median)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.repeatability import DEV, WOBBLES  # noqa: E402
from pipelines.analysis import Analyzer  # noqa: E402
from pipelines.errors import ImageRejected  # noqa: E402

# wobbles that rescale the photo, and by how much (the native scale is compared at full size)
SCALES = {"scale 0.8x": 0.8, "scale 1.25x": 1.25, "combined B": 0.9}
POINTS = ("nose", "mouth_left", "mouth_right")


def spread_pct(values: list[float]) -> float:
    return 100.0 * (max(values) - min(values)) / float(np.median(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", type=int, default=0, help="also use N development faces from ../shared")
    args = ap.parse_args()
    photos = [ROOT / "sample_images" / "astronaut_render.jpg"] + sorted(DEV.glob("*.jpg"))[:args.dev]
    analyzer = Analyzer()
    print(f"{'photo':22s} {'px/mm %':>8s} " + " ".join(f"{p + ' x/y mm':>18s}" for p in POINTS) + f" {'chin cm2 %':>11s}")
    for path in photos:
        data = path.read_bytes()
        rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].copy()
        scale, points, chin = [], {p: [] for p in POINTS}, []
        for name, make in [("base", None), *WOBBLES.items()]:
            try:
                analysis = analyzer.analyze(data if make is None else make(rgb))
            except ImageRejected:
                continue
            frame = analysis.frame
            scale.append(frame.native_px_per_mm / SCALES.get(name, 1.0))
            for p in POINTS:
                points[p].append(frame.landmark_mm(p))
            chin.append(analysis.document["regions"]["chin"]["area_cm2"])
        spreads = [np.ptp(np.array(points[p]), axis=0) for p in POINTS]
        print(f"{path.name:22s} {spread_pct(scale):8.1f} "
              + " ".join(f"{s[0]:8.1f} /{s[1]:7.1f}  " for s in spreads) + f" {spread_pct(chin):11.1f}")


if __name__ == "__main__":
    main()
