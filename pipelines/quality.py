"""Capture quality gate: can this photo be measured, and if not, what should the clinic redo?

Every check yields a measure (recorded in the result) and, past a threshold, an issue with a
stable code the tablet turns into advice ("retake: too dark"). Thresholds live in
``QualityThresholds``; ``reject`` issues stop the analysis, ``warn`` issues mark it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from skimage.measure import blur_effect

from pipelines.canonical import CanonicalFrame

# Human-readable text per code; the code is the contract, the text may improve.
MESSAGES = {
    "no_face": "no face found: photograph the face from the front, filling most of the frame",
    "face_too_small": "face too small for skin measurement: move closer or use a higher resolution",
    "low_resolution": "resolution limits fine detail: pores and fine lines may not be measured",
    "blurred": "photo blurred: hold the camera still and focus on the face",
    "slightly_blurred": "photo slightly soft: fine texture may read lower than it is",
    "too_dark": "photo too dark: add light on the face",
    "overexposed": "highlights clipped on the skin: reduce light or exposure",
    "shadows_clipped": "shadows clipped on the skin: light the face more evenly",
    "colour_cast": "strong colour cast: use neutral light or set the white balance",
    "head_rolled": "head tilted sideways: keep the eyes level",
    "head_turned": "head turned: face the camera straight on",
    "head_pitched": "head tilted up or down: keep the chin level",
    "region_occluded": "part of the face is hidden (hair, glasses, hand): those regions are not measured",
    "face_occluded": "most of the face is hidden or out of frame: show the whole face",
    "multiple_faces": "several faces in the photo: the largest central one was analysed",
    "low_face_confidence": "the face detector is unsure: check the photo shows a real frontal face",
    "orientation_corrected": "the photo was upside down or sideways and has been turned upright",
}


@dataclass(frozen=True)
class QualityThresholds:
    min_px_per_mm_reject: float = 2.5    # below: spots of 2 mm are < 5 px wide
    min_px_per_mm_warn: float = 6.0      # below: pores (0.1-0.5 mm) cannot be resolved
    blur_warn: float = 0.50              # skimage blur_effect, 0 sharp - 1 blurred, at 4 px/mm
    blur_reject: float = 0.62
    highlight_warn_pct: float = 3.0      # skin pixels with a channel >= 250
    highlight_reject_pct: float = 15.0
    shadow_warn_pct: float = 3.0         # skin pixels with all channels <= 8
    shadow_reject_pct: float = 15.0
    dark_l_reject: float = 12.0          # skin L* median
    dark_l_warn: float = 22.0
    skin_hue_range_deg: tuple[float, float] = (18.0, 88.0)   # CIELAB hue angle of skin
    roll_warn_deg: float = 15.0
    yaw_warn_deg: float = 12.0
    yaw_reject_deg: float = 28.0
    pitch_ratio_range: tuple[float, float] = (0.38, 0.72)   # nose depth / mouth depth below eyes
    min_confidence: float = 0.90
    max_occluded_regions: int = 5


@dataclass(frozen=True)
class QualityIssue:
    code: str
    severity: str   # "warn" | "reject"
    message: str

    def as_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "message": self.message}


@dataclass(frozen=True)
class QualityReport:
    issues: tuple[QualityIssue, ...]
    measures: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        severities = {i.severity for i in self.issues}
        return "reject" if "reject" in severities else "warn" if "warn" in severities else "ok"

    def as_dict(self) -> dict:
        return {"status": self.status, "issues": [i.as_dict() for i in self.issues], **self.measures}


def issue(code: str, severity: str) -> QualityIssue:
    return QualityIssue(code, severity, MESSAGES[code])


def head_pose(frame: CanonicalFrame, photo_rotation_deg: int = 0) -> dict[str, float]:
    """Roll (deg, from the eye line, relative to the photo once turned upright by
    ``photo_rotation_deg`` counter-clockwise), yaw (deg, from the nose tip's sideways offset, assuming
    it stands ~35 mm in front of the eye plane) and pitch ratio (nose depth below the eyes over
    the mouth's depth below the eyes: ~0.55 for a level head)."""
    nose = frame.landmark_mm("nose")
    mouth = (frame.landmark_mm("mouth_left") + frame.landmark_mm("mouth_right")) / 2.0
    yaw = float(np.degrees(np.arcsin(np.clip(nose[0] / 35.0, -1.0, 1.0))))
    pitch_ratio = float(nose[1] / mouth[1]) if mouth[1] > 1e-6 else float("nan")
    roll = (frame.roll_deg - photo_rotation_deg + 180.0) % 360.0 - 180.0
    return {"roll_deg": roll, "yaw_deg": yaw, "pitch_ratio": pitch_ratio}


def sharpness(frame: CanonicalFrame, at_px_per_mm: float = 4.0) -> float:
    """Blur effect (Crete-Roffet; 0 sharp, 1 blurred) of the central face (eyes to mouth),
    judged at ``at_px_per_mm`` or the photo's own resolution if lower, so an upsampled
    low-resolution photo is not mistaken for a blurred one."""
    spec = frame.spec
    target = min(at_px_per_mm, frame.native_px_per_mm)
    x0, y0 = spec.mm_to_px(np.array([[-50.0, -25.0]]))[0].astype(int)
    x1, y1 = spec.mm_to_px(np.array([[50.0, 85.0]]))[0].astype(int)
    crop = cv2.cvtColor(frame.rgb[max(y0, 0):y1, max(x0, 0):x1], cv2.COLOR_RGB2GRAY)
    f = target / spec.px_per_mm
    small = cv2.resize(crop, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    return float(blur_effect(small.astype(np.float32) / 255.0))


def exposure(frame: CanonicalFrame, skin: np.ndarray, step: int = 4) -> dict[str, float]:
    """Clipped highlight/shadow shares (% of skin pixels) and the skin's median L* and hue,
    from every ``step``-th pixel each way (2.5 px/mm at the default frame: plenty for shares)."""
    px = frame.rgb[::step, ::step][skin[::step, ::step]]
    if len(px) == 0:
        return {"highlights_clipped_pct": 0.0, "shadows_clipped_pct": 0.0, "skin_l_median": float("nan"),
                "skin_hue_deg": float("nan")}
    peak = np.maximum(np.maximum(px[:, 0], px[:, 1]), px[:, 2])   # 5x faster than max(axis=1)
    highlights = float((peak >= 250).mean() * 100.0)
    shadows = float((peak <= 8).mean() * 100.0)
    lab = cv2.cvtColor(px[None].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)[0]
    med = np.array([np.median(c) for c in np.ascontiguousarray(lab.T)])
    hue = float(np.degrees(np.arctan2(med[2], med[1])))
    return {"highlights_clipped_pct": highlights, "shadows_clipped_pct": shadows,
            "skin_l_median": float(med[0]), "skin_hue_deg": hue}


def assess(
    frame: CanonicalFrame,
    skin: np.ndarray,
    occluded_regions: list[str],
    *,
    confidence: float,
    other_faces: int = 0,
    photo_rotation_deg: int = 0,
    t: QualityThresholds = QualityThresholds(),
) -> QualityReport:
    """Run every check on a face in its canonical frame. ``skin``: bool (H, W) skin mask."""
    issues: list[QualityIssue] = []
    measures: dict = {"native_px_per_mm": round(frame.native_px_per_mm, 3), "face_confidence": round(confidence, 4)}

    def check(value: float, warn: float | None, reject: float | None, code_warn: str, code_reject: str | None = None):
        if reject is not None and value >= reject:
            issues.append(issue(code_reject or code_warn, "reject"))
        elif warn is not None and value >= warn:
            issues.append(issue(code_warn, "warn"))

    if frame.native_px_per_mm < t.min_px_per_mm_reject:
        issues.append(issue("face_too_small", "reject"))
    elif frame.native_px_per_mm < t.min_px_per_mm_warn:
        issues.append(issue("low_resolution", "warn"))

    blur = sharpness(frame)
    measures["blur_effect"] = round(blur, 4)
    if blur >= t.blur_reject:
        issues.append(issue("blurred", "reject"))
    elif blur >= t.blur_warn:
        issues.append(issue("slightly_blurred", "warn"))

    exp = exposure(frame, skin)
    measures.update({k: round(v, 3) for k, v in exp.items()})
    check(exp["highlights_clipped_pct"], t.highlight_warn_pct, t.highlight_reject_pct, "overexposed")
    check(exp["shadows_clipped_pct"], t.shadow_warn_pct, t.shadow_reject_pct, "shadows_clipped")
    if exp["skin_l_median"] < t.dark_l_reject:
        issues.append(issue("too_dark", "reject"))
    elif exp["skin_l_median"] < t.dark_l_warn:
        issues.append(issue("too_dark", "warn"))
    lo, hi = t.skin_hue_range_deg
    if not lo <= exp["skin_hue_deg"] <= hi:
        issues.append(issue("colour_cast", "warn"))

    pose = head_pose(frame, photo_rotation_deg)
    measures.update({k: round(v, 3) for k, v in pose.items()})
    if abs(pose["roll_deg"]) >= t.roll_warn_deg:
        issues.append(issue("head_rolled", "warn"))
    check(abs(pose["yaw_deg"]), t.yaw_warn_deg, t.yaw_reject_deg, "head_turned")
    plo, phi = t.pitch_ratio_range
    if not plo <= pose["pitch_ratio"] <= phi:
        issues.append(issue("head_pitched", "warn"))

    measures["occluded_regions"] = sorted(occluded_regions)
    if len(occluded_regions) > t.max_occluded_regions:
        issues.append(issue("face_occluded", "reject"))
    elif occluded_regions:
        issues.append(issue("region_occluded", "warn"))
    if confidence < t.min_confidence:
        issues.append(issue("low_face_confidence", "warn"))
    if other_faces:
        issues.append(issue("multiple_faces", "warn"))
    if photo_rotation_deg:
        issues.append(issue("orientation_corrected", "warn"))
    return QualityReport(tuple(issues), measures)
