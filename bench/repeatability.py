"""Repeatability harness: how much each metric moves under capture wobble, against how much a
real change moves it.

    python bench/repeatability.py [--dev N] [--seeds 3] [--no-clinic] [--no-severe] [--write] [--verbose]

For each base photo (the sample render; the sample render taken to a clinic camera's
resolution, with pores of its own, unless ``--no-clinic``; N development faces from ../shared
when present) the photo is analysed as is, under each capture wobble (exposure +-15 %,
white-balance shift, rotation +-5 deg, scale 0.8x and 1.25x, JPEG quality 70 and 95, slight
blur, a sub-pixel shift off the JPEG grid, and three combinations of them) and with a real
change planted into it (more brown spots; deeper lines; more pores). Each photo is also measured
under the wobbles with every change planted at once (twice the spots), for the noise only
(unless ``--no-severe``): faces with more features are noisier. Per metric it prints:

  sd       within-subject SD under wobble (pooled over photos), in the metric's units
  cv%      that SD over the mean
  wobble   the largest change any single wobble caused
  effect   the change the family's real planted effect caused (mean over photos; per photo the
           mean over ``--seeds`` random placements of the planted features)
  ratio    effect / wobble (target >= 5: a real change stands well clear of capture noise)
  photo    per photo, its own effect / its own largest wobble: the lowest and the median
           over photos (the pooled ratio above sets one face's effect against any face's noise)

``--verbose`` also prints, per photo, the change every wobble and every planted change caused in
the face scores and the key metrics (one row per measure), to see which wobble moves what.

``--write`` stores the SDs and the minimal detectable changes (mdc95 = 1.96 sqrt(2) sd) in
pipelines/calibration/repeatability.json, which progress tracking reads.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines import PIPELINE_VERSION  # noqa: E402
from pipelines.analysis import Analyzer  # noqa: E402
from pipelines.calibration import REPEATABILITY_FILE, mdc95_from_sd  # noqa: E402
from pipelines.errors import ImageRejected  # noqa: E402
from pipelines.synthetic.face import Planting, face_at_resolution, plant_on_photo  # noqa: E402

DEV = ROOT.parent / "shared" / "datasets" / "london-dev"


def png_bytes(rgb: np.ndarray) -> bytes:
    """Lossless PNG bytes of sRGB uint8 (H, W, 3) pixels: a wobble or a planted change with no
    compression of its own."""
    return cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()


def _jpeg(rgb: np.ndarray, q: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=q)
    return buf.getvalue()


def _linear_gain(rgb: np.ndarray, gains) -> np.ndarray:
    lin = (rgb.astype(np.float32) / 255.0) ** 2.2 * np.asarray(gains, np.float32)
    return np.clip(np.rint(lin ** (1 / 2.2) * 255.0), 0, 255).astype(np.uint8)


def _rotate(rgb: np.ndarray, deg: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), deg, 1.0)
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _shift(rgb: np.ndarray, dx: float, dy: float, deg: float = 0.0) -> np.ndarray:
    """The face moved in the frame (and turned by ``deg``): a new sampling of it, off the JPEG
    grid (Lanczos, as a camera's own resampling)."""
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), deg, 1.0)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT)


def _scale(rgb: np.ndarray, f: float) -> np.ndarray:
    return cv2.resize(rgb, None, fx=f, fy=f, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)


# name -> bytes from the base photo's pixels
WOBBLES = {
    "exposure -15%": lambda im: png_bytes(_linear_gain(im, (0.85, 0.85, 0.85))),
    "exposure +15%": lambda im: png_bytes(_linear_gain(im, (1.15, 1.15, 1.15))),
    "white balance": lambda im: png_bytes(_linear_gain(im, (1.08, 1.0, 0.92))),
    "rotation -5": lambda im: png_bytes(_rotate(im, -5.0)),
    "rotation +5": lambda im: png_bytes(_rotate(im, 5.0)),
    "scale 0.8x": lambda im: png_bytes(_scale(im, 0.8)),
    "scale 1.25x": lambda im: png_bytes(_scale(im, 1.25)),
    "jpeg q70": lambda im: _jpeg(im, 70),
    "jpeg q95": lambda im: _jpeg(im, 95),
    "blur 0.8px": lambda im: png_bytes(cv2.GaussianBlur(im, (0, 0), 0.8)),
    # two visits rarely differ in one way only: these combine several, for an honest noise floor
    "combined A": lambda im: _jpeg(_rotate(_linear_gain(im, (1.10, 1.10, 1.10)), 2.0), 80),
    "combined B": lambda im: _jpeg(_scale(_rotate(_linear_gain(im, (0.95, 0.90, 0.86)), -3.0), 0.9), 75),
    "shift": lambda im: png_bytes(_shift(im, 13.5, -7.25)),
    "combined C": lambda im: _jpeg(_shift(_linear_gain(im, (0.9, 0.9, 0.9)), -10.0, 6.0, -2.0), 70),
}

# family -> the real change that should move it
CHANGES = {
    "pigmentation": Planting(spots={"cheek_left": 8, "cheek_right": 8, "forehead": 5, "chin": 3},
                             spot_diameter_mm=(3.0, 4.5), spot_delta_l=(9.0, 12.0), seed=11),
    "wrinkles": Planting(lines={"forehead": 5, "crows_feet_left": 3, "crows_feet_right": 3, "glabella": 2},
                         line_depth=(9.0, 12.0), line_width_mm=(0.8, 1.2), seed=12),
    "texture": Planting(pores_per_cm2={"cheek_left": 60.0, "cheek_right": 60.0, "forehead": 40.0},
                        pore_diameter_mm=(0.3, 0.45), seed=13),
}


# Pores are measured from 8 px/mm; the sample photos show faces at 3-4 px/mm, where texture is
# roughness alone. One base photo is therefore also taken to a clinic camera's resolution: the
# face's part of the sample, upscaled, with pores of its own planted, so the pore metrics have
# something to keep under wobble and the planted "more pores" something to add to.
CLINIC_PX_PER_MM = 10.5
OWN_PORES = Planting(pores_per_cm2={"cheek_left": 30.0, "cheek_right": 30.0, "forehead": 20.0, "chin": 20.0},
                     pore_diameter_mm=(0.2, 0.35), seed=7)


def at_clinic_resolution(analyzer: Analyzer, data: bytes) -> bytes:
    """The photo's face (the canonical frame's extent) upscaled (Lanczos) to
    ``CLINIC_PX_PER_MM`` with ``OWN_PORES`` planted, as a JPEG of quality 95."""
    base = analyzer.analyze(data)
    big = face_at_resolution(base.decoded.rgb, base.frame, CLINIC_PX_PER_MM)
    upscaled = analyzer.analyze(png_bytes(big))
    planted, _ = plant_on_photo(big, upscaled.frame, upscaled.regions, OWN_PORES)
    return _jpeg(planted, 95)


def numeric_leaves(doc: dict) -> dict[str, float]:
    """Face metrics and scores, and region scores, as flat numeric columns."""
    out = {}
    for fam, values in (doc.get("metrics") or {}).items():
        for name, v in (values or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"metrics.{fam}.{name}"] = float(v)
    for fam, v in (doc.get("scores") or {}).items():
        if v is not None:
            out[f"scores.{fam}"] = float(v)
    for region, r in doc.get("regions", {}).items():
        for fam, v in (r.get("scores") or {}).items():
            if v is not None:
                out[f"regions.{region}.scores.{fam}"] = float(v)
    return out


def family_of(key: str) -> str | None:
    for fam in CHANGES:
        if f".{fam}" in key:
            return fam
    return None


def wobble_runs(analyzer: Analyzer, rgb: np.ndarray) -> dict[str, dict[str, float]]:
    """The photo's measures as is and under every wobble (a rejected wobble is left out)."""
    runs = {"base": numeric_leaves(analyzer.analyze(png_bytes(rgb)).document)}
    for name, make in WOBBLES.items():
        try:
            runs[name] = numeric_leaves(analyzer.analyze(make(rgb)).document)
        except ImageRejected as exc:
            print(f"  {name}: rejected ({exc.code})", file=sys.stderr)
    return runs


def severe_noise(analyzer: Analyzer, data: bytes) -> dict | None:
    """The wobbles' noise on the photo with every family's change planted at once, with twice the
    spots (once where twice do not fit): a face with more spots and lines has more features at
    the edge of detection, and is noisier, and the patients who are treated are such faces (the
    progress tests' synthetic visits plant 38 spots on the render). Noise only: no effect is
    measured on it."""
    base = analyzer.analyze(data)
    rgb = np.ascontiguousarray(base.decoded.rgb)
    for spot_factor in (2, 1):
        every = Planting(
            spots={n: spot_factor * v for n, v in CHANGES["pigmentation"].spots.items()},
            lines=CHANGES["wrinkles"].lines, pores_per_cm2=CHANGES["texture"].pores_per_cm2,
            spot_diameter_mm=CHANGES["pigmentation"].spot_diameter_mm,
            spot_delta_l=CHANGES["pigmentation"].spot_delta_l,
            line_depth=CHANGES["wrinkles"].line_depth, line_width_mm=CHANGES["wrinkles"].line_width_mm,
            pore_diameter_mm=CHANGES["texture"].pore_diameter_mm, seed=17)
        try:
            planted, _ = plant_on_photo(rgb, base.frame, base.regions, every.in_measurable(base.regions))
        except ValueError as exc:
            print(f"  severe variant with {spot_factor}x the spots not planted: {exc}", file=sys.stderr)
            continue
        return {"runs": wobble_runs(analyzer, planted), "changed": None}
    return None


def measure_photo(analyzer: Analyzer, data: bytes, seeds: int = 3) -> dict | None:
    base = analyzer.analyze(data)
    rgb = np.ascontiguousarray(base.decoded.rgb)
    if base.decoded.reduction != 1:
        raise SystemExit("base photos must decode at full resolution")
    runs = wobble_runs(analyzer, rgb)
    changed = {}
    for fam, planting in CHANGES.items():
        planting = planting.in_measurable(base.regions)
        # the features land at seeded random places in the regions: one placement is one draw of
        # the effect, so it is averaged over several (keys measured in every draw)
        draws = []
        try:
            for k in range(seeds):
                planted, _ = plant_on_photo(rgb, base.frame, base.regions,
                                            replace(planting, seed=planting.seed + 1000 * k))
                draws.append(numeric_leaves(analyzer.analyze(png_bytes(planted)).document))
        except ValueError as exc:    # a region too small or too hidden for the features
            print(f"  {fam} change not planted: {exc}", file=sys.stderr)
            changed[fam] = {}
            continue
        keys = set.intersection(*(set(d) for d in draws))
        changed[fam] = {key: float(np.mean([d[key] for d in draws])) for key in keys}
    return {"runs": runs, "changed": changed}


VERBOSE_KEYS = (
    "scores.pigmentation", "scores.texture", "scores.wrinkles", "scores.overall",
    "metrics.pigmentation.ita_deg", "metrics.pigmentation.spot_area_pct", "metrics.pigmentation.red_area_pct",
    "metrics.pigmentation.tone_unevenness", "metrics.texture.roughness",
    "metrics.wrinkles.wrinkle_length_mm_per_cm2", "metrics.wrinkles.wrinkle_depth_index",
)


def print_rows(name: str, photo: dict) -> None:
    """Per-wobble and per-planted-change differences from the base, for one photo."""
    runs, changed = photo["runs"], photo["changed"]
    wobbles = [w for w in runs if w != "base"]
    heads = [w.replace("exposure ", "exp").replace("rotation ", "rot").replace("white balance", "wb")
             .replace("scale ", "x").replace("jpeg ", "").replace("blur ", "blur").replace("combined ", "comb") for w in wobbles]
    print(f"\n{name}: change from base under each wobble | under each planted change")
    print(f"{'measure':38s} {'base':>7s} " + " ".join(f"{h[:7]:>7s}" for h in heads) + " | "
          + " ".join(f"{c[:7]:>7s}" for c in changed))
    for key in VERBOSE_KEYS:
        if key not in runs["base"]:
            continue
        b = runs["base"][key]

        def d(r):
            return f"{r[key] - b:+7.2f}" if key in r else f"{'-':>7s}"
        print(f"{key[-38:]:38s} {b:7.2f} " + " ".join(d(runs[w]) for w in wobbles) + " | "
              + " ".join(d(changed[c]) for c in changed))


def summarise(photos: list[dict]) -> dict[str, dict]:
    keys = sorted({k for p in photos for k in p["runs"]["base"]})
    table = {}
    for key in keys:
        variances, means, wobble, effects, per_photo = [], [], 0.0, [], []
        worst = ""
        for p in photos:
            vals = [r[key] for r in p["runs"].values() if key in r]
            if len(vals) < 3 or key not in p["runs"]["base"]:
                continue
            variances.append(np.var(vals, ddof=1))
            means.append(np.mean(vals))
            base = p["runs"]["base"][key]
            moved = {w: abs(r[key] - base) for w, r in p["runs"].items() if key in r}
            photo_wobble = max(moved.values())
            if photo_wobble > wobble:
                worst = f"{p.get('name', '?')}, {max(moved, key=moved.get)}"
            wobble = max(wobble, photo_wobble)
            fam = family_of(key) if not key.endswith(".overall") else None
            fams = [fam] if fam else list(CHANGES)
            eff = [abs(p["changed"][f].get(key, base) - base) for f in fams
                   if p["changed"] is not None and key in p["changed"][f]]
            if eff:
                effects.append(max(eff))
                per_photo.append(max(eff) / photo_wobble if photo_wobble > 1e-9 else float("inf"))
        if not variances:
            continue
        sd = math.sqrt(float(np.mean(variances)))
        sd_max = math.sqrt(float(np.max(variances)))   # the noisiest face
        mean = float(np.mean(means))
        effect = float(np.mean(effects)) if effects else float("nan")
        table[key] = {
            "mean": mean, "sd": sd, "sd_max": sd_max, "cv_pct": 100.0 * sd / abs(mean) if abs(mean) > 1e-9 else float("nan"),
            "wobble": wobble, "effect": effect,
            "ratio": effect / wobble if wobble > 1e-9 else float("inf"),
            "photo_min": min(per_photo) if per_photo else float("nan"),
            "photo_median": float(np.median(per_photo)) if per_photo else float("nan"),
            "worst": worst,
        }
    return table


def calibration(table: dict[str, dict], n_photos: int, n_severe: int = 0) -> dict:
    def noise(sd: float, cv: float | None = None) -> dict:
        out = {"sd": round(sd, 4), "mdc95": round(mdc95_from_sd(sd), 4)}
        if cv is not None and math.isfinite(cv):
            out["cv_pct"] = round(cv, 2)
        return out

    # The noisiest face decides (not the pooled SD): progress must not call one patient's capture
    # noise a real change because other faces are steadier.
    scores = {k.split(".")[1]: noise(v["sd_max"]) for k, v in table.items() if k.startswith("scores.")}
    pooled = defaultdict(list)
    for k, v in table.items():
        if k.startswith("regions."):
            pooled[k.rsplit(".", 1)[1]].append(v["sd_max"] ** 2)
    region_scores = {fam: noise(math.sqrt(float(np.mean(v)))) for fam, v in pooled.items()}
    metrics = {k[len("metrics."):]: noise(v["sd_max"], v["cv_pct"]) for k, v in table.items()
               if k.startswith("metrics.")}
    return {
        "version": 1, "pipeline_version": PIPELINE_VERSION, "provisional": False,
        "method": (f"bench/repeatability.py on {n_photos} photo(s), {n_severe} of them also with every planted "
                   "change at once (noise only): within-subject SD over the photo and "
                   f"{len(WOBBLES)} capture wobbles ({', '.join(WOBBLES)}); sd of the noisiest photo per measure; "
                   "region scores pooled over regions; mdc95 = 1.96 * sqrt(2) * sd."),
        "scores": scores, "region_scores": region_scores, "metrics": metrics,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", type=int, default=0, help="also use N development faces from ../shared")
    ap.add_argument("--write", action="store_true", help="write pipelines/calibration/repeatability.json")
    ap.add_argument("--verbose", action="store_true", help="per-photo rows: the change each wobble caused")
    ap.add_argument("--seeds", type=int, default=3, help="random placements of each planted change, averaged")
    ap.add_argument("--no-clinic", dest="clinic", action="store_false",
                    help="leave out the sample taken to clinic resolution (pores measured)")
    ap.add_argument("--no-severe", dest="severe", action="store_false",
                    help="leave out the noise of each photo with every change planted")
    args = ap.parse_args()
    sample = ROOT / "sample_images" / "astronaut_render.jpg"
    paths = [sample]
    if args.dev and DEV.is_dir():
        paths += sorted(DEV.glob("*.jpg"))[: args.dev]
    analyzer = Analyzer()
    bases = [(path.name, path.read_bytes()) for path in paths]
    if args.clinic:
        bases.insert(1, (f"{sample.name} at {CLINIC_PX_PER_MM:g} px/mm", at_clinic_resolution(analyzer, sample.read_bytes())))
    photos = []
    for name, data in bases:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        photos.append({**measure_photo(analyzer, data, args.seeds), "name": name})
        if args.verbose:
            print_rows(name, photos[-1])
        if args.severe:
            print(f"measuring {name} with every change planted (noise only) ...", file=sys.stderr, flush=True)
            severe = severe_noise(analyzer, data)
            if severe is not None:
                photos.append({**severe, "name": f"{name} with every change"})
    table = summarise(photos)
    n_severe = sum(p["changed"] is None for p in photos)
    print(f"{len(photos) - n_severe} photo(s) and {n_severe} with every change planted (noise only), "
          f"{len(WOBBLES)} wobbles each; effect = change caused by the family's planted change")
    print(f"{'measure':52s} {'mean':>9s} {'sd':>8s} {'cv%':>7s} {'wobble':>8s} {'effect':>8s} {'ratio':>7s} "
          f"{'photo min':>9s} {'median':>7s}")
    for key, v in table.items():
        if key.startswith("regions.") and not key.endswith((".pigmentation", ".wrinkles")):
            continue
        print(f"{key:52s} {v['mean']:9.2f} {v['sd']:8.3f} {v['cv_pct']:7.1f} {v['wobble']:8.3f} {v['effect']:8.3f} "
              f"{v['ratio']:7.1f} {v['photo_min']:9.1f} {v['photo_median']:7.1f}")
    print("largest wobble of each face score: photo, wobble")
    for key, v in table.items():
        if key.startswith("scores."):
            print(f"  {key:22s} {v['wobble']:5.1f}  {v['worst']}")
    if args.write:
        REPEATABILITY_FILE.write_text(json.dumps(calibration(table, len(photos) - n_severe, n_severe), indent=2) + "\n")
        print(f"wrote {REPEATABILITY_FILE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
