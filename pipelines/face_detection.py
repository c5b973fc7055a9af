"""Face boxes and 5 landmarks with MTCNN (Zhang et al. 2016) run by onnxruntime.

numpy + OpenCV + onnxruntime only. The three networks live in ``models/`` (see
``models/MODEL_CARD.md``); their sha256 is checked against ``models/checksums.json`` on load.

Coordinate conventions (all float, input-image pixels):

- boxes are pixel *edges*: ``(x, y, w, h)`` spans columns ``x .. x + w``; clipped to the image;
- landmarks are pixel *centres*: pixel ``(row r, col c)`` is the point ``(c, r)``, so
  ``rgb[round(y), round(x)]`` is the pixel under a landmark;
- landmark names follow the SUBJECT: ``left_eye`` is the subject's left eye, which a frontal,
  non-mirrored photo shows on the image's RIGHT. Same for ``mouth_left``.

The cascade runs on a "working image" downsized so its long side is at most ``max_side`` px, which
bounds the cost of a 12 MP photo; results are mapped back to the input's pixels.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipelines.errors import ModelUnavailable

MODEL_FILES = {"pnet": "mtcnn_pnet.onnx", "rnet": "mtcnn_rnet.onnx", "onet": "mtcnn_onet.onnx"}
CHECKSUMS_FILE = "checksums.json"
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# O-Net's landmark order is by IMAGE side: image-left eye, image-right eye, nose, image-left mouth
# corner, image-right mouth corner. The subject's left is the image's right (frontal photo).
_SUBJECT_FROM_MTCNN = {"left_eye": 1, "right_eye": 0, "nose": 2, "mouth_left": 4, "mouth_right": 3}

_PNET_CELL = 12      # P-Net window, px of the scaled image
_PNET_STRIDE = 2
_NMS_PNET_SCALE = 0.5  # IoU, within one pyramid level
_NMS_PNET_ALL = 0.7    # IoU, across levels
_NMS_RNET = 0.7        # IoU
_NMS_ONET = 0.7        # intersection over the smaller box ("min"): drops a box nested in another


@dataclass(frozen=True)
class FaceDetection:
    box: tuple[float, float, float, float]      # x, y, w, h in pixels of the input image
    confidence: float                           # O-Net probability, 0-1
    landmarks: dict[str, tuple[float, float]]   # keys: LANDMARK_NAMES, (x, y) input pixels


def default_models_dir() -> Path:
    """``$MESOSCAN_MODELS_DIR`` if set, else ``<repo>/models``."""
    env = os.environ.get("MESOSCAN_MODELS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "models"


# ---------------------------------------------------------------------------------------------
# Model files


def read_verified_models(models_dir: Path) -> dict[str, bytes]:
    """Bytes of each model file, checked against ``checksums.json`` in the same folder.

    Returns {"pnet"|"rnet"|"onet": file bytes}. The same bytes are hashed and loaded, so a file
    swapped between the check and the load cannot slip through.
    Raises ModelUnavailable if the folder, the checksum list or a file is missing or altered.
    """
    sums_path = models_dir / CHECKSUMS_FILE
    try:
        expected = json.loads(sums_path.read_text())
    except FileNotFoundError:
        raise ModelUnavailable(f"face model checksum list {sums_path} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"face model checksum list {sums_path} is unreadable: {exc}") from None
    out = {}
    for key, name in MODEL_FILES.items():
        path = models_dir / name
        if name not in expected:
            raise ModelUnavailable(f"{sums_path} has no sha256 for {name}")
        try:
            data = path.read_bytes()
        except OSError:
            raise ModelUnavailable(
                f"face model file {path} is missing (set MESOSCAN_MODELS_DIR or restore models/)"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected[name]:
            raise ModelUnavailable(
                f"face model file {path} is altered: sha256 {digest}, expected {expected[name]}"
            )
        out[key] = data
    return out


def _session(model: bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Busy-waiting threads steal cores from the other workers of a small shared machine.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------------------------
# Pure helpers. Boxes are float arrays (N, 4) of x1, y1, x2, y2 pixel edges.


def to_network_input(images: np.ndarray) -> np.ndarray:
    """uint8 RGB (N, H, W, 3) or (H, W, 3), 0-255 -> float32 NCHW in [-1, 1] as MTCNN expects."""
    x = images.astype(np.float32)
    if x.ndim == 3:
        x = x[None]
    return np.ascontiguousarray(((x - 127.5) * 0.0078125).transpose(0, 3, 1, 2))


def pyramid_scales(height: int, width: int, min_face_px: float, factor: float) -> list[float]:
    """Resize factors (float, <= 12 / min_face_px) at which P-Net's 12 px window meets faces of
    min_face_px and up; the last level keeps the short side >= 12 px."""
    scale = _PNET_CELL / min_face_px
    short = min(height, width) * scale
    scales = []
    while short >= _PNET_CELL:
        scales.append(scale)
        scale *= factor
        short *= factor
    return scales


def pnet_candidates(reg: np.ndarray, prob: np.ndarray, sx: float, sy: float,
                    threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of one pyramid level whose face probability is >= threshold.

    ``reg`` (4, h, w) and ``prob`` (h, w) are P-Net outputs for an image resized by (sx, sy).
    Returns boxes (N, 4) in pixels of the unscaled image, scores (N,) and regressions (N, 4).
    """
    rows, cols = np.nonzero(prob >= threshold)
    x1 = cols * _PNET_STRIDE / sx
    y1 = rows * _PNET_STRIDE / sy
    boxes = np.stack([x1, y1, x1 + _PNET_CELL / sx, y1 + _PNET_CELL / sy], axis=1)
    return boxes.astype(np.float64), prob[rows, cols].astype(np.float64), reg[:, rows, cols].T.astype(np.float64)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best score first.

    ``mode`` "union": overlap = IoU; "min": intersection / smaller area (removes nested boxes).
    A box is dropped when its overlap with a better kept box exceeds ``threshold`` (0-1).
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.intp)
    x1, y1, x2, y2 = boxes.T
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        ih = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = iw * ih
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        overlap = inter / np.maximum(denom, 1e-12)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.intp)


def regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply MTCNN's corrections (dx1, dy1, dx2, dy2), fractions of the box width/height."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return boxes + reg * np.stack([w, h, w, h], axis=1)


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square of side max(w, h) about the same centre."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    cx = boxes[:, 0] + w / 2
    cy = boxes[:, 1] + h / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def crop_batch(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crops of integer boxes (N, 4), zero-padded where a box leaves the image, resized to
    size x size. uint8 RGB (H, W, 3) in -> uint8 (N, size, size, 3) out."""
    h, w = image.shape[:2]
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.astype(np.int64)):
        patch = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 > sx1 and sy2 > sy1:
            patch[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = image[sy1:sy2, sx1:sx2]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


def _integer_squares(boxes: np.ndarray) -> np.ndarray:
    """Square, round to whole pixels and drop boxes under 1 px: the crops refine exactly these."""
    sq = np.round(square(boxes))
    return sq[(sq[:, 2] - sq[:, 0] >= 1) & (sq[:, 3] - sq[:, 1] >= 1)]


def working_image(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float, float]:
    """The input downsized (INTER_AREA) so its long side is <= max_side; never upsized.
    Returns (uint8 image, sx, sy): working px per input px along x and y (<= 1), both measured
    from the top-left corner, so input = working / s for edges."""
    h, w = rgb.shape[:2]
    f = max_side / max(h, w)
    if f >= 1:
        return rgb, 1.0, 1.0
    k = int(1 / f)
    if k >= 2 and min(h, w) >= k:
        # OpenCV's INTER_AREA is ~3x faster for a whole-number factor (12 MP: 15 ms, not 36 ms):
        # bin by k first, on the input cut to a multiple of k (drops < k px at the right/bottom
        # edge, so coordinates stay exact from the top-left).
        h, w = (h // k) * k, (w // k) * k
        rgb = cv2.resize(rgb[:h, :w], (w // k, h // k), interpolation=cv2.INTER_AREA)
    ww, wh = max(1, round(w * f)), max(1, round(h * f))
    small = cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA)
    return small, ww / w, wh / h


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"detect() needs an RGB uint8 array (H, W, 3), got {got}")
    return np.ascontiguousarray(rgb)


# ---------------------------------------------------------------------------------------------


class FaceDetector:
    """MTCNN cascade. Sessions are created once; ``detect`` keeps no state (thread-safe).

    thresholds: face probability (0-1) a window needs to pass P-Net, R-Net, O-Net. With the
      paper's 0.7 for O-Net, face-like clutter (a tuft of hair) can pass at 0.7-0.95 while clear
      frontal faces score >= 0.99: callers deciding "is there a patient face" may want >= 0.95.
    min_face_px: smallest face side searched for, in pixels of the WORKING image (long side
      <= max_side), >= 12. For a 4000 px photo at max_side 640 the default 20 px means 125 px.
    scale_factor: ratio between pyramid levels (0-1); 0.709 = 1/sqrt(2) halves the area per level.
    threads: onnxruntime intra-op threads per network.
    """

    def __init__(self, models_dir: str | Path | None = None, *, threads: int = 1,
                 thresholds=(0.6, 0.7, 0.7), min_face_px: int = 20, scale_factor: float = 0.709):
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be three probabilities in [0, 1], got {thresholds}")
        if min_face_px < _PNET_CELL:
            raise ValueError(f"min_face_px must be >= {_PNET_CELL}, got {min_face_px}")
        if not 0.1 <= scale_factor < 1.0:
            raise ValueError(f"scale_factor must be in [0.1, 1), got {scale_factor}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
        self.thresholds = thresholds
        self.min_face_px = min_face_px
        self.scale_factor = scale_factor
        models = read_verified_models(self.models_dir)
        try:
            self._pnet, self._rnet, self._onet = (
                _session(models[k], threads) for k in ("pnet", "rnet", "onet"))
        except Exception as exc:  # onnxruntime raises its own types for a bad graph
            raise ModelUnavailable(f"onnxruntime cannot load the face model: {exc}") from exc

    def detect(self, rgb: np.ndarray, *, max_side: int = 640, min_face_px: float | None = None) -> list[FaceDetection]:
        """Faces in an RGB uint8 image (H, W, 3) of any size, best confidence first.

        ``max_side`` (px, >= 48) bounds the working image's long side. ``min_face_px``: smallest
        face side to search for, in INPUT px: the pyramid's largest levels, which cost most, are
        skipped when small faces would be of no use (faces down to about half the limit may
        still be found). Boxes and landmarks are in the input image's pixels (see the module
        docstring for conventions).
        """
        rgb = _check_rgb(rgb)
        if max_side < 48:
            raise ValueError(f"max_side must be >= 48, got {max_side}")
        img, sx, sy = working_image(rgb, max_side)
        smallest = None if min_face_px is None else min_face_px * min(sx, sy)
        boxes = self._stage_p(img, smallest)
        if len(boxes):
            boxes = self._stage_r(img, boxes)
        if not len(boxes):
            return []
        boxes, scores, points = self._stage_o(img, boxes)
        return _to_detections(boxes, scores, points, sx, sy, rgb.shape[:2])

    def upright_probabilities(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> list[float]:
        """O-Net face probability of the square crop around ``box`` (x, y, w, h, input px) turned
        by 0, 1, 2 and 3 counter-clockwise quarter turns (np.rot90). MTCNN also finds faces that
        are upside down, with landmarks laid out as if upright; the turn that looks most like a
        face tells the photo's true orientation. One O-Net call on four 48x48 crops."""
        rgb = _check_rgb(rgb)
        x, y, w, h = box
        sq = np.round(square(np.array([[x, y, x + w, y + h]], np.float64)))
        crop = crop_batch(rgb, sq, 48)[0]
        turned = np.stack([np.rot90(crop, k) for k in range(4)])
        _, _, prob = self._onet.run(None, {"input": to_network_input(np.ascontiguousarray(turned))})
        return [float(p) for p in prob[:, 1]]

    # The three stages, on the working image; boxes are (N, 4) x1, y1, x2, y2 pixel edges.

    def _stage_p(self, img: np.ndarray, smallest: float | None = None) -> np.ndarray:
        """Candidate boxes from P-Net over the pyramid. ``smallest`` (working px): the levels
        that only see smaller faces are skipped; the others are the detector's usual levels,
        so a face is found exactly as without the limit."""
        h, w = img.shape[:2]
        all_boxes, all_scores, all_reg = [], [], []
        scales = pyramid_scales(h, w, self.min_face_px, self.scale_factor)
        if smallest is not None:
            # level s sees faces from 12 / s px up: keep the coarsest level that still sees
            # ``smallest`` and every level coarser than it
            finest = min([s for s in scales if _PNET_CELL / s <= smallest] or scales[:1])
            scales = [s for s in scales if s <= finest]
        for scale in scales:
            hs, ws = max(_PNET_CELL, round(h * scale)), max(_PNET_CELL, round(w * scale))
            level = cv2.resize(img, (ws, hs), interpolation=cv2.INTER_AREA)
            reg, prob = self._pnet.run(None, {"input": to_network_input(level)})
            boxes, scores, reg = pnet_candidates(reg[0], prob[0, 1], ws / w, hs / h,
                                                 self.thresholds[0])
            keep = nms(boxes, scores, _NMS_PNET_SCALE)
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_reg.append(reg[keep])
        if not all_boxes:
            return np.zeros((0, 4))
        boxes, scores, reg = (np.concatenate(a) for a in (all_boxes, all_scores, all_reg))
        keep = nms(boxes, scores, _NMS_PNET_ALL)
        return regress(boxes[keep], reg[keep])

    def _stage_r(self, img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        boxes = _integer_squares(boxes)
        if not len(boxes):
            return boxes
        reg, prob = self._rnet.run(None, {"input": to_network_input(crop_batch(img, boxes, 24))})
        ok = prob[:, 1] > self.thresholds[1]
        boxes, scores, reg = boxes[ok], prob[ok, 1], reg[ok]
        keep = nms(boxes, scores, _NMS_RNET)
        return regress(boxes[keep], reg[keep])

    def _stage_o(self, img: np.ndarray, boxes: np.ndarray):
        boxes = _integer_squares(boxes)
        if not len(boxes):
            return boxes, np.zeros(0), np.zeros((0, 5, 2))
        reg, marks, prob = self._onet.run(
            None, {"input": to_network_input(crop_batch(img, boxes, 48))})
        ok = prob[:, 1] > self.thresholds[2]
        boxes, scores, reg, marks = boxes[ok], prob[ok, 1].astype(np.float64), reg[ok], marks[ok]
        # Landmarks are fractions of the crop that O-Net saw, i.e. of the box before regression;
        # like the reference code, the box's left edge is taken as the first pixel's centre.
        side = (boxes[:, 2] - boxes[:, 0])[:, None]
        points = np.stack([boxes[:, :1] + side * marks[:, :5],
                           boxes[:, 1:2] + side * marks[:, 5:]], axis=2)   # (N, 5, 2) x, y
        boxes = regress(boxes, reg)
        keep = nms(boxes, scores, _NMS_ONET, mode="min")
        return boxes[keep], scores[keep], points[keep]


def _to_detections(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, sx: float,
                   sy: float, shape: tuple[int, int]) -> list[FaceDetection]:
    """Working-image results -> FaceDetection in input pixels, best confidence first."""
    h, w = shape
    out = []
    for k in np.argsort(-scores, kind="stable"):
        x1, y1, x2, y2 = boxes[k] / [sx, sy, sx, sy]
        x1, x2 = float(np.clip(x1, 0, w)), float(np.clip(x2, 0, w))
        y1, y2 = float(np.clip(y1, 0, h)), float(np.clip(y2, 0, h))
        if x2 <= x1 or y2 <= y1:
            continue
        # Pixel centres map as (x + 0.5) / s - 0.5, consistent with cv2.resize.
        px = (points[k, :, 0] + 0.5) / sx - 0.5
        py = (points[k, :, 1] + 0.5) / sy - 0.5
        marks = {name: (float(px[i]), float(py[i])) for name, i in _SUBJECT_FROM_MTCNN.items()}
        out.append(FaceDetection(box=(x1, y1, x2 - x1, y2 - y1), confidence=float(scores[k]),
                                 landmarks={n: marks[n] for n in LANDMARK_NAMES}))
    return out


def select_primary(faces: list[FaceDetection], image_shape: tuple[int, ...]
                   ) -> tuple[FaceDetection | None, list[FaceDetection]]:
    """The face to analyse and the others (in their input order).

    Rule: score = box area (px^2) x (1 - d)^2, where d in [0, 1] is the distance from the box
    centre to the image centre divided by half the image diagonal. So a face at the centre wins
    over one of equal size elsewhere, and an off-centre face needs a larger box to win (at d = 0.5
    it needs 4x the area). Ties go to the larger box, then the higher confidence.
    ``image_shape`` is the (H, W[, C]) of the image the boxes refer to.
    """
    if not faces:
        return None, []
    h, w = image_shape[:2]
    half_diag = math.hypot(w, h) / 2

    def key(face: FaceDetection) -> tuple[float, float, float]:
        x, y, bw, bh = face.box
        d = min(math.hypot(x + bw / 2 - w / 2, y + bh / 2 - h / 2) / half_diag, 1.0)
        return bw * bh * (1.0 - d) ** 2, bw * bh, face.confidence

    best = max(range(len(faces)), key=lambda i: key(faces[i]))
    return faces[best], [f for i, f in enumerate(faces) if i != best]
