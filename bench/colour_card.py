"""Colour-card search: how large a card must be to be found, and what the search costs.

    python bench/colour_card.py

Synthetic ColorChecker cards (pipelines/synthetic/card.py) under a warm cast are placed into the
sample render at 6 placements (2 positions x 3 turns) for each patch size, measured in px of the
640 px search image; the script prints how many were found and how far the gains are from the
inverse cast. Then the time of one search on one core, on a photo with and without a card, and
the search's share of a full 12 MP analysis (median of 8, timed inside it).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import median_ms, single_core, twelve_mp_jpeg  # noqa: E402

CAST = (1.1, 1.0, 0.85)


def main() -> None:
    single_core()
    import numpy as np

    import pipelines.analysis as analysis
    from pipelines.colour_card import CardSearch, find_colour_card
    from pipelines.decode import decode_image
    from pipelines.face_detection import FaceDetector
    from pipelines.metrics.colour import linear_to_srgb8, srgb_to_linear
    from pipelines.synthetic.card import draw_card, place_card

    search = CardSearch()
    face = decode_image((ROOT / "sample_images" / "astronaut_render.jpg").read_bytes(), reduction=4).rgb
    side = max(face.shape[:2])
    print(f"search image {search.max_side} px; photo {face.shape[1]}x{face.shape[0]}; cast {CAST}")
    print("patch px at search size   found   gain error (max over channels)")
    for patch in (12, 14, 16, 18, 20, 24, 28):
        found, errors = 0, []
        for corner in ((0.62, 0.6), (0.05, 0.65)):
            for angle in (0.0, 4.0, -6.0):
                card_img = draw_card(round(patch * side / search.max_side))
                scene = place_card(face, card_img, corner=corner, angle_deg=angle)
                scene = linear_to_srgb8(srgb_to_linear(scene) * np.asarray(CAST, np.float32))
                card = find_colour_card(scene, search)
                if card is not None:
                    found += 1
                    errors.append(float(np.max(np.abs(card.gains * np.asarray(CAST) - 1.0))))
        err = f"{100 * max(errors):.1f} %" if errors else "-"
        print(f"{patch:>14d}             {found} of 6   {err}")

    with_card = place_card(face, draw_card(round(24 * side / search.max_side)))
    print(f"one search, no card in the photo   {median_ms(lambda: find_colour_card(face, search)):6.1f} ms")
    print(f"one search, card found             {median_ms(lambda: find_colour_card(with_card, search)):6.1f} ms")

    spent = []
    real = analysis.Analyzer._find_card

    def timed(self, decoded):
        t0 = time.perf_counter()
        try:
            return real(self, decoded)
        finally:
            spent.append(time.perf_counter() - t0)

    analysis.Analyzer._find_card = timed
    analyzer = analysis.Analyzer(detector=FaceDetector(threads=1))
    data = twelve_mp_jpeg()
    analyzer.analyze(data)
    spent.clear()
    totals = []
    for _ in range(8):
        t0 = time.perf_counter()
        analyzer.analyze(data)
        totals.append(time.perf_counter() - t0)
    print(f"in a 12 MP analysis                 {1000 * statistics.median(spent):6.1f} ms of "
          f"{1000 * statistics.median(totals):.0f} ms (median of 8)")


if __name__ == "__main__":
    main()
