"""MTCNN on onnxruntime: real faces, landmark sides, coordinates, negatives, model integrity."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from pipelines.errors import ModelUnavailable
from pipelines.face_detection import (
    LANDMARK_NAMES,
    MODEL_FILES,
    FaceDetection,
    FaceDetector,
    default_models_dir,
    nms,
    pyramid_scales,
    select_primary,
)
from pipelines.synthetic.skin import skin_patch

DEV = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "london-dev"
needs_dev = pytest.mark.skipif(not DEV.is_dir(), reason=f"dev photos not found at {DEV}")

# Studio photos give the true face >= 0.99 here; MTCNN's default O-Net threshold (0.7) also lets
# through a face-like tuft of hair on 1 of the 20 dev photos (044: 0.91), so "one face" is
# asserted among the confident ones and the primary must be that face.
CONFIDENT = 0.95
# Measured on the 20 dev photos (eye landmark vs .tem pupil, % of inter-pupillary distance):
# mean 2.75 %, median 2.4 %, max 6.3 %. MTCNN's eye point sits ~1-2 % of IPD below the pupil.
MEAN_EYE_ERR, MAX_EYE_ERR = 0.04, 0.08


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_pupils(tem: Path) -> np.ndarray:
    """(2, 2) x, y: row 0 = image-left pupil (subject's right eye), row 1 = image-right pupil."""
    lines = tem.read_text().split("\n")
    return np.array([[float(v) for v in lines[i].split()] for i in (1, 2)])


def dev_photos() -> list[Path]:
    return sorted(DEV.glob("*.jpg")) if DEV.is_dir() else []


def eye_errors(face: FaceDetection, pupils: np.ndarray) -> tuple[float, float]:
    """Distances (fraction of IPD) of right_eye to the image-left pupil, left_eye to the other."""
    ipd = float(np.hypot(*(pupils[1] - pupils[0])))
    right = np.hypot(*(np.array(face.landmarks["right_eye"]) - pupils[0])) / ipd
    left = np.hypot(*(np.array(face.landmarks["left_eye"]) - pupils[1])) / ipd
    return float(right), float(left)


def assert_frontal_layout(face: FaceDetection) -> None:
    """Subject-side names on an upright, frontal, non-mirrored face; all points inside the box."""
    lm = face.landmarks
    assert tuple(lm) == LANDMARK_NAMES
    assert lm["left_eye"][0] > lm["right_eye"][0]        # subject's left = image right
    assert lm["mouth_left"][0] > lm["mouth_right"][0]
    eyes_y = max(lm["left_eye"][1], lm["right_eye"][1])
    assert eyes_y < lm["nose"][1] < min(lm["mouth_left"][1], lm["mouth_right"][1])
    x, y, w, h = face.box
    for px, py in lm.values():
        assert x <= px <= x + w and y <= py <= y + h


# --- real faces ---------------------------------------------------------------------------------


def test_astronaut_one_face(detector):
    img = skdata.astronaut()                       # 512 x 512, Eileen Collins, public domain
    faces = detector.detect(img)
    assert len(faces) == 1
    face = faces[0]
    assert face.confidence > CONFIDENT
    x, y, w, h = face.box
    assert x < 225 < x + w and y < 115 < y + h     # her face is centred near (225, 115)
    assert 60 < w < 130 and 80 < h < 150
    assert_frontal_layout(face)


def test_a_smallest_face_limit_skips_only_smaller_faces(detector):
    """With ``min_face_px`` the pyramid's finer levels are skipped: a face well under the limit
    (22 px against 60) is not found, and a face over it is found as without the limit."""
    img = skdata.astronaut()
    canvas = np.full((1024, 1024, 3), 128, np.uint8)
    canvas[:512, :512] = img
    canvas[700:700 + 128, 700:700 + 128] = cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA)
    every = [f for f in detector.detect(canvas, max_side=1024) if f.confidence > CONFIDENT]
    assert len(every) == 2
    small = next(f for f in every if f.box[0] > 600)
    big = next(f for f in every if f.box[0] < 512)
    assert small.box[2] < 30 and big.box[2] > 80
    limited = [f for f in detector.detect(canvas, max_side=1024, min_face_px=60) if f.confidence > CONFIDENT]
    assert len(limited) == 1
    assert limited[0].box == pytest.approx(big.box, abs=1.0)
    for name in LANDMARK_NAMES:
        assert limited[0].landmarks[name] == pytest.approx(big.landmarks[name], abs=1.0)


def test_mirrored_photo_swaps_names_not_positions(detector):
    """The names follow image position (the detector cannot know a photo is mirrored): on a
    flipped photo, the point called left_eye is the mirror of the original right_eye."""
    img = skdata.astronaut()
    orig = detector.detect(img)[0]
    flip = detector.detect(np.ascontiguousarray(img[:, ::-1]))[0]
    width = img.shape[1]
    pairs = [("left_eye", "right_eye"), ("mouth_left", "mouth_right"), ("nose", "nose")]
    for a, b in pairs:
        fx, fy = flip.landmarks[a]
        ox, oy = orig.landmarks[b]
        assert abs((width - 1 - fx) - ox) < 4 and abs(fy - oy) < 4, (a, b)


@pytest.fixture(scope="module")
def dev_results(detector):
    """{stem: (faces, pupils, image shape)} for every dev photo, detected once."""
    out = {}
    for path in dev_photos():
        img = read_rgb(path)
        out[path.stem] = (detector.detect(img), read_pupils(path.with_suffix(".tem")), img.shape)
    return out


@needs_dev
def test_dev_photos_one_confident_face_each(dev_results):
    assert len(dev_results) == 20
    for stem, (faces, _, shape) in dev_results.items():
        confident = [f for f in faces if f.confidence >= CONFIDENT]
        assert len(confident) == 1, (stem, [f.confidence for f in faces])
        assert faces[0] is confident[0]            # sorted by confidence
        primary, others = select_primary(faces, shape)
        assert primary is confident[0] and len(others) == len(faces) - 1, stem
        assert_frontal_layout(primary)


@needs_dev
def test_dev_photos_eye_landmarks_match_pupils(dev_results):
    errors = []
    for stem, (faces, pupils, _) in dev_results.items():
        face = faces[0]
        # Subject-side keys: left_eye must be the image-RIGHT pupil (.tem point 1).
        assert face.landmarks["left_eye"][0] > face.landmarks["right_eye"][0], stem
        errors.extend(eye_errors(face, pupils))
    errors = np.array(errors)
    print(f"eye error / IPD over {len(errors)} eyes: mean {errors.mean():.2%}, "
          f"median {np.median(errors):.2%}, max {errors.max():.2%}")
    assert errors.mean() < MEAN_EYE_ERR
    assert errors.max() < MAX_EYE_ERR


@needs_dev
def test_two_photos_side_by_side(detector):
    """Full-size photo on the left, half-size on the right: two faces, primary = the larger."""
    big_path, small_path = DEV / "001_03.jpg", DEV / "003_03.jpg"
    big, small = read_rgb(big_path), read_rgb(small_path)
    half = cv2.resize(small, (675, 675), interpolation=cv2.INTER_AREA)
    canvas = np.full((1350, 1350 + 675, 3), 215, np.uint8)
    canvas[:, :1350] = big
    canvas[337:337 + 675, 1350:] = half
    faces = detector.detect(canvas)
    confident = [f for f in faces if f.confidence >= CONFIDENT]
    assert len(confident) == 2
    primary, others = select_primary(faces, canvas.shape)
    assert primary.box[0] + primary.box[2] <= 1350            # the left, larger face
    assert any(f.box[0] >= 1350 for f in others)
    right_face = next(f for f in others if f.box[0] >= 1350)
    # Landmarks land on each photo's own pupils, in canvas coordinates.
    pupils_small = read_pupils(small_path.with_suffix(".tem")) * 0.5 + [1350 + 0.25, 337 + 0.25]
    for face, pupils in [(primary, read_pupils(big_path.with_suffix(".tem"))),
                         (right_face, pupils_small)]:
        assert max(eye_errors(face, pupils)) < MAX_EYE_ERR


@needs_dev
def test_12_megapixel_composite_maps_back_to_input_pixels(detector):
    """Two photos upscaled into a 4000 x 3000 frame: the cascade runs at max_side 640 and the
    landmarks still land on the pupils in the 12 MP coordinates."""
    a, b = DEV / "001_03.jpg", DEV / "025_03.jpg"
    pair = np.concatenate([read_rgb(a), read_rgb(b)], axis=1)          # 2700 x 1350
    s = 4000 / 2700
    frame = np.full((3000, 4000, 3), 190, np.uint8)
    top = 500
    frame[top:top + 2000] = cv2.resize(pair, (4000, 2000), interpolation=cv2.INTER_LINEAR)
    faces = detector.detect(frame)
    confident = sorted((f for f in faces if f.confidence >= CONFIDENT), key=lambda f: f.box[0])
    assert len(confident) == 2
    for face, tem, dx in [(confident[0], a, 0), (confident[1], b, 1350)]:
        pupils = (read_pupils(tem.with_suffix(".tem")) + [dx, 0] + 0.5) * [s, 2000 / 1350] + [0, top] - 0.5
        assert max(eye_errors(face, pupils)) < MAX_EYE_ERR
        assert_frontal_layout(face)


def test_12_megapixel_astronaut_agrees_with_small(detector):
    img = skdata.astronaut()
    small = detector.detect(img)[0]
    frame = np.zeros((3000, 4000, 3), np.uint8)
    frame[:, 500:3500] = cv2.resize(img, (3000, 3000), interpolation=cv2.INTER_CUBIC)
    faces = detector.detect(frame)
    assert len(faces) == 1
    s = 3000 / 512
    # The two runs see differently resampled crops, so allow MTCNN's own jitter: measured worst
    # 2.1 px (5 % of the 43 px eye distance) for landmarks, 6.4 px for a box edge, in 512-px units.
    for name in LANDMARK_NAMES:
        expected = (np.array(small.landmarks[name]) + 0.5) * s - 0.5 + [500, 0]
        assert np.hypot(*(np.array(faces[0].landmarks[name]) - expected)) / s < 3.0, name
    mapped = (np.array(faces[0].box) - [500, 0, 0, 0]) / s
    np.testing.assert_allclose(mapped, small.box, atol=9.0)


# --- no face ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["flat", "skin", "noise", "tiny", "dark"])
def test_no_face(detector, kind):
    rng = np.random.default_rng(7)
    img = {
        "flat": lambda: np.full((480, 640, 3), (205, 160, 140), np.uint8),
        "skin": lambda: skin_patch((360, 480), 4.0, seed=3),
        "noise": lambda: rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "tiny": lambda: np.full((9, 9, 3), 128, np.uint8),
        "dark": lambda: np.zeros((300, 200, 3), np.uint8),
    }[kind]()
    assert detector.detect(img) == []


def test_rejects_non_rgb_uint8(detector):
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="max_side"):
        detector.detect(np.zeros((64, 64, 3), np.uint8), max_side=20)


# --- model files ------------------------------------------------------------------------------


def copy_models(dst: Path) -> Path:
    src = default_models_dir()
    for name in [*MODEL_FILES.values(), "checksums.json"]:
        shutil.copy(src / name, dst / name)
    return dst


def test_models_load_from_a_copied_folder_and_env(tmp_path, monkeypatch):
    folder = copy_models(tmp_path)
    assert FaceDetector(folder).detect(skdata.astronaut())
    monkeypatch.setenv("MESOSCAN_MODELS_DIR", str(folder))
    assert default_models_dir() == folder
    assert FaceDetector().models_dir == folder


def test_altered_model_is_refused(tmp_path):
    folder = copy_models(tmp_path)
    path = folder / MODEL_FILES["rnet"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF                     # one flipped byte inside the weights
    path.write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match="altered") as err:
        FaceDetector(folder)
    assert err.value.code == "model_unavailable"
    assert MODEL_FILES["rnet"] in err.value.message


def test_missing_model_or_checksums_is_refused(tmp_path):
    folder = copy_models(tmp_path)
    (folder / MODEL_FILES["onet"]).unlink()
    with pytest.raises(ModelUnavailable, match="missing"):
        FaceDetector(folder)
    (folder / "checksums.json").unlink()
    with pytest.raises(ModelUnavailable, match="checksum"):
        FaceDetector(folder)
    with pytest.raises(ModelUnavailable):
        FaceDetector(tmp_path / "nowhere")


# --- pure helpers -----------------------------------------------------------------------------


def face(x: float, y: float, side: float, conf: float = 0.99) -> FaceDetection:
    marks = {n: (x + side / 2, y + side / 2) for n in LANDMARK_NAMES}
    return FaceDetection(box=(x, y, side, side), confidence=conf, landmarks=marks)


def test_select_primary_rule():
    shape = (1000, 1000, 3)
    assert select_primary([], shape) == (None, [])
    central = face(400, 400, 200)                    # centre at the image centre
    corner_bigger = face(0, 0, 250)                  # 1.56x the area, d ~ 0.82
    primary, others = select_primary([corner_bigger, central], shape)
    assert primary is central and others == [corner_bigger]
    # Same distance from the centre: the larger wins.
    left, right = face(100, 400, 200), face(650, 375, 250)
    assert select_primary([left, right], shape)[0] is right
    # Off-centre (d = 0.5) beats central only with more than 4x the area.
    off = face(500, 500, 500)                        # centre (750, 750): d = 0.5, area 6.25x
    assert select_primary([central, off], shape)[0] is off
    off = face(750 - 173, 750 - 173, 346)            # d = 0.5, area 3x: weight 0.25 loses
    assert select_primary([central, off], shape)[0] is central


def test_nms_modes():
    boxes = np.array([[0, 0, 100, 100], [10, 10, 60, 60], [5, 0, 105, 100], [300, 300, 320, 320]],
                     dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # IoU: the nested small box survives (IoU 0.25), the shifted copy does not (IoU 0.9).
    assert nms(boxes, scores, 0.7).tolist() == [0, 1, 3]
    # Min-mode: the nested box overlaps its smaller self fully and goes too.
    assert nms(boxes, scores, 0.7, mode="min").tolist() == [0, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).size == 0


def test_pyramid_reaches_min_face_and_stops_at_12px():
    scales = pyramid_scales(480, 640, min_face_px=20, factor=0.709)
    assert scales[0] == pytest.approx(12 / 20)
    assert all(b / a == pytest.approx(0.709) for a, b in zip(scales, scales[1:]))
    assert 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709
    assert pyramid_scales(11, 11, 12, 0.709) == []
