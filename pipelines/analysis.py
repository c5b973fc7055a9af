"""The flow of one photo: bytes -> decoded image -> face -> canonical frame -> regions ->
quality gate -> metrics and scores -> the result document (schema ``mesoscan.analysis/1``).

``Analyzer`` holds what is costly to set up (the face model) and is reused across photos.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from pipelines import PIPELINE_VERSION
from pipelines.canonical import CanonicalFrame, FrameSpec, LANDMARK_NAMES, build_frame, eye_geometry
from pipelines.colour_card import CardSearch, ColourCard, find_colour_card
from pipelines.decode import (DEFAULT_LIMITS, DecodedImage, DecodeLimits, choose_reduction, decode_image,
                              probe_image, reduce_decoded)
from pipelines.errors import ImageRejected
from pipelines.face_detection import FaceDetection, FaceDetector, select_primary
from pipelines.measure import measure_face
from pipelines.scoring import SCORING_VERSION, scores
from pipelines.quality import MESSAGES, QualityReport, QualityThresholds, assess
from pipelines.regions import REGION_NAMES, Region, build_regions
from pipelines.skin_mask import skin_mask

SCHEMA = "mesoscan.analysis/1"


@dataclass(frozen=True)
class AnalysisConfig:
    frame: FrameSpec = FrameSpec()
    detection_side: int = 800     # the face is found on a decode whose long side is about this
    min_confidence: float = 0.80  # O-Net probability to accept the patient's face at all
    other_face_confidence: float = 0.95  # others below this are more often hair or texture than faces
    orientation_logit_margin: float = 1.0  # a turned crop must beat upright by this to be tried
    # Faces are searched for first down to this resolution (below the quality gate's 2.5, with a
    # margin for the face box's spread), so the detector skips its costliest search, for faces
    # too small to measure; only if that finds nothing is every size searched.
    smallest_face_px_per_mm: float = 2.0
    quality: QualityThresholds = QualityThresholds()
    limits: DecodeLimits = DEFAULT_LIMITS
    colour_card: CardSearch | None = CardSearch()   # None: do not look for a colour card


@dataclass
class Analysis:
    """Everything one analysis produced: the JSON ``document`` plus the arrays behind it
    (for overlays and before/after), which are not serialised."""

    document: dict
    decoded: DecodedImage
    frame: CanonicalFrame
    skin: np.ndarray
    regions: dict[str, Region]
    quality: QualityReport
    layers: dict[str, np.ndarray] = field(default_factory=dict)   # canonical-frame maps


@dataclass(frozen=True)
class _Located:
    face: FaceDetection              # in full-resolution upright source px
    others: list[FaceDetection]
    rotation_deg: int                # the photo had to be turned by this to find the face


def _scale_face(face: FaceDetection, k: float) -> FaceDetection:
    x, y, w, h = face.box
    return FaceDetection(
        box=(x * k, y * k, w * k, h * k),
        confidence=face.confidence,
        landmarks={n: (px * k, py * k) for n, (px, py) in face.landmarks.items()},
    )


def _unrotate_face(face: FaceDetection, rot_k: int, shape: tuple[int, int]) -> FaceDetection:
    """Map a detection made on ``np.rot90(image, rot_k)`` back to ``image`` coordinates."""
    h, w = shape

    def back(x: float, y: float) -> tuple[float, float]:
        # Inverse of np.rot90's counter-clockwise quarter turns, for an image of width w, height h.
        if rot_k % 4 == 1:
            return w - 1 - y, x
        if rot_k % 4 == 2:
            return w - 1 - x, h - 1 - y
        if rot_k % 4 == 3:
            return y, h - 1 - x
        return x, y

    pts = {n: back(*p) for n, p in face.landmarks.items()}
    x, y, bw, bh = face.box
    corners = np.array([back(x, y), back(x + bw, y), back(x, y + bh), back(x + bw, y + bh)])
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    return FaceDetection(box=(x0, y0, x1 - x0, y1 - y0), confidence=face.confidence, landmarks=pts)


class Analyzer:
    """Analyse photos. Create once (loads the face model), call :meth:`analyze` per photo."""

    def __init__(self, config: AnalysisConfig = AnalysisConfig(), detector: FaceDetector | None = None):
        self.config = config
        self.detector = detector or FaceDetector()

    def locate_face(self, decoded: DecodedImage) -> _Located:
        """Find the primary face and the photo's true orientation (cameras lose their
        orientation tag; MTCNN also finds an upside-down face, with its landmarks laid out as
        if upright). Candidate turns come from O-Net's verdict on the face crop turned four ways;
        among the candidates, the turn whose detection is most confident wins.
        Coordinates returned are full-resolution, in the decoded image's frame.

        Faces are first searched for down to ``smallest_face_px_per_mm``, which spares the face
        detector its costliest search (for small faces); only when that finds none is every
        size searched, so a face too small to measure is still found and reported as such."""
        # MTCNN's box is 2.0-2.3 IPDs wide on frontal faces (21 photos measured), wider when turned
        min_face = 2.0 * self.config.frame.ipd_mm * self.config.smallest_face_px_per_mm / decoded.reduction
        located = self._locate(decoded, min_face) or self._locate(decoded, None)
        if located is None:
            raise ImageRejected("no_face", MESSAGES["no_face"], retake=True)
        return located

    def _locate(self, decoded: DecodedImage, min_face: float | None) -> _Located | None:
        rgb = decoded.rgb
        upright = self.detector.detect(rgb, min_face_px=min_face)
        primary, _ = select_primary(upright, rgb.shape[:2])
        if primary is None:
            turns = (2, 1, 3)           # nothing upright: try the other orientations
        else:
            p = np.clip(self.detector.upright_probabilities(rgb, primary.box), 1e-6, 1 - 1e-6)
            logit = np.log(p / (1 - p))
            best = int(np.argmax(logit))
            turns = (0, best) if best and logit[best] - logit[0] >= self.config.orientation_logit_margin else (0,)
        found: list[tuple[float, _Located]] = []
        for rot_k in turns:
            turned = np.ascontiguousarray(np.rot90(rgb, rot_k)) if rot_k else rgb
            faces = upright if rot_k == 0 else self.detector.detect(turned, min_face_px=min_face)
            faces = [f for f in faces if f.confidence >= self.config.min_confidence]
            primary, others = select_primary(faces, turned.shape[:2])
            if primary is None:
                continue
            others = [f for f in others if f.confidence >= self.config.other_face_confidence]
            if rot_k:
                primary = _unrotate_face(primary, rot_k, rgb.shape[:2])
                others = [_unrotate_face(f, rot_k, rgb.shape[:2]) for f in others]
            k = float(decoded.reduction)
            found.append((primary.confidence, _Located(_scale_face(primary, k), [_scale_face(f, k) for f in others],
                                                       90 * rot_k)))
        return max(found, key=lambda c: c[0])[1] if found else None

    def analyze(self, data: bytes) -> Analysis:
        """Analyse one photo's bytes. Raises :class:`ImageRejected` when the file cannot be
        decoded, no face is found, or the quality gate rejects it (``details`` then holds the
        quality report)."""
        cfg = self.config
        info = probe_image(data, limits=cfg.limits)
        r_detect = max([r for r in (1, 2, 4, 8) if max(info.width, info.height) / r >= cfg.detection_side] or [1])
        full = None
        if info.format == "jpeg" or r_detect == 1:
            # a JPEG is reduced while it is decoded (DCT scaling): the face is found on a cheap
            # small decode, and the photo decoded again at the frame's resolution only if needed
            decoded = decode_image(data, reduction=r_detect, limits=cfg.limits)
        else:
            # other formats (PNG, TIFF, HEIF) decode whole whatever the reduction: once, then
            # reduced in memory (a 12 MP HEIF decode takes ~0.5 s)
            full = decode_image(data, limits=cfg.limits)
            decoded = reduce_decoded(full, r_detect)
        _require_colour(decoded)
        located = self.locate_face(decoded)
        _require_colour(decoded, located.face)
        detection_decode = decoded     # the colour card is searched on this small decode too
        _, ipd_px, _ = eye_geometry(located.face.landmarks)
        r_frame = min(r_detect, choose_reduction(ipd_px / cfg.frame.ipd_mm, cfg.frame.px_per_mm))
        if r_frame != decoded.reduction:
            decoded = (reduce_decoded(full, r_frame) if full is not None
                       else decode_image(data, reduction=r_frame, limits=cfg.limits))
        frame = build_frame(decoded.rgb, located.face.landmarks, cfg.frame, image_scale=1.0 / decoded.reduction)
        skin, _ = skin_mask(frame)
        regions = build_regions(frame, skin)
        occluded = [n for n, r in regions.items() if not r.measurable]
        quality = assess(
            frame, skin, occluded,
            confidence=located.face.confidence,
            other_faces=len(located.others),
            photo_rotation_deg=located.rotation_deg,
            t=cfg.quality,
        )
        face_doc = _face_document(located, frame, quality)
        if quality.status == "reject":
            first = next(i for i in quality.issues if i.severity == "reject")
            raise ImageRejected(first.code, first.message, retake=True,
                                details={"quality": quality.as_dict(), "face": face_doc})
        card = self._find_card(detection_decode)
        measured = measure_face(frame, skin, regions, card_gains=None if card is None else card.gains)
        document = {
            "schema": SCHEMA,
            "pipeline_version": PIPELINE_VERSION,
            "image": _image_document(decoded, located.rotation_deg),
            "quality": quality.as_dict(),
            "face": face_doc,
            "frame": {
                "px_per_mm": frame.px_per_mm,
                "size_px": list(frame.spec.size_px),
                "to_source": np.round(frame.to_source, 6).tolist(),
            },
            "colour_correction": measured.colour_correction if card is None
            else {**measured.colour_correction, "card": card.as_dict()},
            "warnings": measured.warnings,
            "regions": {n: {**_region_document(regions[n], frame), "metrics": measured.regions[n],
                            "scores": scores(measured.regions[n])}
                        for n in REGION_NAMES},
            "metrics": measured.face,
            "scores": scores(measured.face),
            "scoring_version": SCORING_VERSION,
        }
        return Analysis(document=document, decoded=decoded, frame=frame, skin=skin, regions=regions,
                        quality=quality, layers=measured.layers)

    def _find_card(self, decoded: DecodedImage) -> ColourCard | None:
        """The colour card in the photo, corners in full-resolution px like every other position."""
        if self.config.colour_card is None:
            return None
        card = find_colour_card(decoded.rgb, self.config.colour_card)
        return None if card is None else replace(card, corners=card.corners * decoded.reduction)


_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _require_colour(decoded: DecodedImage, face: FaceDetection | None = None) -> None:
    """Pigmentation needs colour: refuse grayscale files, and colour files whose content is grey.
    The content is judged on the face (``face`` in full-resolution px) once it is found: a photo
    that is mostly a neutral backdrop is still a colour photo."""
    if decoded.info.mode in _GREY_MODES:
        raise ImageRejected("grayscale_image", "a colour photo is needed: this one is black and white", retake=True)
    if face is None:
        return
    x, y, w, h = (int(round(v / decoded.reduction)) for v in face.box)
    crop = decoded.rgb[max(y, 0):max(y + h, 1), max(x, 0):max(x + w, 1)]
    step = max(1, min(crop.shape[:2]) // 64)        # ~64 x 64 samples are plenty for a mean
    rgb = crop[::step, ::step].astype(np.int16)
    spread = float(np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean()) \
        if rgb.size else 0.0
    if spread < 1.0:
        raise ImageRejected("grayscale_image", "a colour photo is needed: this one is black and white", retake=True)


def _image_document(decoded: DecodedImage, rotation_deg: int) -> dict:
    info = decoded.info
    return {
        "sha256": decoded.sha256,
        "width": info.width,
        "height": info.height,
        "format": info.format,
        "exif_orientation": info.orientation,
        "rotation_applied_deg": rotation_deg,
        "icc_converted": decoded.icc_converted,
        "decode_reduction": decoded.reduction,
    }


def _face_document(located: _Located, frame: CanonicalFrame, quality: QualityReport) -> dict:
    face = located.face

    def r(v: float) -> float:
        return round(float(v), 2)

    return {
        "box": [r(v) for v in face.box],
        "confidence": round(face.confidence, 4),
        "landmarks": {n: [r(face.landmarks[n][0]), r(face.landmarks[n][1])] for n in LANDMARK_NAMES},
        "roll_deg": r(quality.measures.get("roll_deg", frame.roll_deg)),
        "yaw_deg": r(quality.measures.get("yaw_deg", 0.0)),
        "px_per_mm": round(frame.native_px_per_mm, 3),
        "others": [{"box": [r(v) for v in f.box], "confidence": round(f.confidence, 4)} for f in located.others],
    }


def _region_document(region: Region, frame: CanonicalFrame) -> dict:
    polygon = frame.map_to_source(region.polygon)
    return {
        "area_cm2": round(region.area_cm2, 3),
        "skin_fraction": round(region.skin_fraction, 3),
        "measurable": bool(region.measurable),
        "polygon": np.round(polygon, 1).tolist(),
    }


_default: Analyzer | None = None


def analyze_bytes(data: bytes, *, analyzer: Analyzer | None = None) -> dict:
    """Analyse one photo and return its result document. The default analyzer (and its face
    model) is created on first use and then reused."""
    global _default
    if analyzer is None:
        if _default is None:
            _default = Analyzer()
        analyzer = _default
    return analyzer.analyze(data).document
