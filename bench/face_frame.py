"""Decode vs face detection + canonical frame on a 12 MP JPEG, one core.

    python bench/face_frame.py

Target (issue 2): face detection plus canonical frame under 1.5x the full decode time, the
decode being Pillow's (bench.common.pillow_decode: the yardstick the target was set against; the
pipeline's own decode is faster and is printed too). Prints medians of several repetitions
measured in one run (ratios are what count here).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import median_ms, pillow_decode, single_core, twelve_mp_jpeg  # noqa: E402


def main() -> None:
    single_core()
    from pipelines.analysis import AnalysisConfig, Analyzer
    from pipelines.canonical import build_frame, eye_geometry
    from pipelines.decode import choose_reduction, decode_image
    from pipelines.face_detection import FaceDetector

    data = twelve_mp_jpeg()
    analyzer = Analyzer(AnalysisConfig(), FaceDetector(threads=1))
    spec = analyzer.config.frame

    full = decode_image(data)
    decode_full = median_ms(lambda: decode_image(data))
    yardstick = median_ms(lambda: pillow_decode(data))
    r_detect = 4
    small = decode_image(data, reduction=r_detect)
    decode_small = median_ms(lambda: decode_image(data, reduction=r_detect))
    detect = median_ms(lambda: analyzer.locate_face(small))
    located = analyzer.locate_face(small)
    _, ipd, _ = eye_geometry(located.face.landmarks)
    r_frame = choose_reduction(ipd / spec.ipd_mm, spec.px_per_mm)
    frame_src = decode_image(data, reduction=r_frame) if r_frame != 1 else full
    decode_frame = median_ms(lambda: decode_image(data, reduction=r_frame)) if r_frame != 1 else decode_full
    frame = median_ms(lambda: build_frame(frame_src.rgb, located.face.landmarks, spec, image_scale=1 / r_frame))
    pipeline = decode_small + detect + (decode_frame if r_frame < r_detect else 0.0) + frame

    print(f"photo: 4000x3000 JPEG, {len(data) / 1e6:.1f} MB, face at {ipd / spec.ipd_mm:.1f} px/mm, "
          f"canonical {spec.px_per_mm:g} px/mm")
    print(f"full decode, Pillow (yardstick)  {yardstick:7.1f} ms")
    print(f"full decode, pipeline            {decode_full:7.1f} ms")
    print(f"decode at 1/{r_detect} for detection       {decode_small:7.1f} ms")
    print(f"face detection + orientation     {detect:7.1f} ms")
    print(f"decode at 1/{r_frame} for the frame        {decode_frame:7.1f} ms")
    print(f"canonical frame (warp)           {frame:7.1f} ms")
    print(f"detection + canonical frame      {detect + frame:7.1f} ms  = {(detect + frame) / yardstick:.2f}x the yardstick "
          f"(target < 1.5x); {(detect + frame) / decode_full:.2f}x the pipeline's decode")
    print(f"whole step incl. its decodes     {pipeline:7.1f} ms  = {pipeline / yardstick:.2f}x the yardstick")


if __name__ == "__main__":
    main()
