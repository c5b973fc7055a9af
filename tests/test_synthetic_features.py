"""The synthetic lines and pores plant what their ground truth says."""
import math

import numpy as np
import pytest

from pipelines.synthetic.lines import Line, centreline_mm, plant_lines, random_lines
from pipelines.synthetic.pores import Pore, plant_pores, random_pores

PPM = 10.0


def flat_lab(shape, l_star=60.0):
    lab = np.zeros(shape + (3,), np.float32)
    lab[..., 0] = l_star
    lab[..., 1] = 12.0
    lab[..., 2] = 16.0
    return lab


def test_straight_line_profile_depth_width_and_length():
    lab = flat_lab((200, 400))
    line = Line(x_mm=20.0, y_mm=10.0, length_mm=24.0, width_mm=1.0, depth=6.0, angle_deg=0.0)
    out, truth = plant_lines(lab, PPM, [line])
    dark = 60.0 - out[..., 0]
    col = dark[:, 200]  # across the middle of the horizontal line
    assert col.max() == pytest.approx(6.0, abs=0.05)
    # full width at half depth = width_mm (Gaussian cross-profile), to a pixel
    assert (col >= 3.0).sum() / PPM == pytest.approx(1.0, abs=0.1)
    # the centreline is length_mm long; rounded ends add half a width at each end at half depth
    row = dark[int(10.0 * PPM), :]
    assert (row >= 3.0).sum() / PPM == pytest.approx(24.0 + 1.0, abs=0.2)
    assert truth.count == 1 and truth.total_length_mm == pytest.approx(24.0)
    assert out[..., 1:].tolist() == lab[..., 1:].tolist()  # only L* changes


def test_curved_line_centreline_length_and_angle_convention():
    line = Line(x_mm=30.0, y_mm=30.0, length_mm=20.0, width_mm=0.6, depth=5.0, angle_deg=30.0,
                curvature_per_mm=1 / 25.0)
    pts = centreline_mm(line, 0.01)
    assert np.hypot(*np.diff(pts, axis=0).T).sum() == pytest.approx(20.0, rel=1e-3)
    # heading at the centre is 30 deg counter-clockwise on screen: y (down) decreases with x
    mid = len(pts) // 2
    d = pts[mid + 1] - pts[mid - 1]
    assert math.degrees(math.atan2(-d[1], d[0])) == pytest.approx(30.0, abs=0.5)
    # positive curvature turns counter-clockwise: the heading at the far end is larger
    e = pts[-1] - pts[-2]
    assert math.degrees(math.atan2(-e[1], e[0])) == pytest.approx(30.0 + math.degrees(10.0 / 25.0), abs=0.5)
    out, _ = plant_lines(flat_lab((600, 600)), PPM, [line])
    # the darkening follows the arc: every centreline point is at full depth
    idx = np.floor(pts[::50] * PPM).astype(int)
    assert (60.0 - out[idx[:, 1], idx[:, 0], 0]).min() > 4.5


def test_random_lines_deterministic_inside_mask_and_apart():
    mask = np.zeros((600, 600), bool)
    mask[50:550, 100:500] = True
    a = random_lines(mask, PPM, 8, seed=3)
    b = random_lines(mask, PPM, 8, seed=3)
    assert a == b and len(a) == 8
    assert random_lines(mask, PPM, 8, seed=4) != a
    pts = [centreline_mm(ln, 0.2) for ln in a]
    for i, p in enumerate(pts):
        ij = np.floor(p * PPM).astype(int)
        assert mask[ij[:, 1], ij[:, 0]].all()
        for q in pts[i + 1:]:
            dmin = np.min(np.hypot(p[:, None, 0] - q[None, :, 0], p[:, None, 1] - q[None, :, 1]))
            assert dmin > 3.0  # min_gap_mm + widths, minus rasterisation slack
    for ln in a:
        assert 15.0 <= ln.length_mm <= 30.0 and 0.5 <= ln.width_mm <= 1.0 and 5.0 <= ln.depth <= 8.0
    with pytest.raises(ValueError):
        random_lines(mask, PPM, 200, seed=0, max_tries=300)


def test_radial_lines_fan_out_from_their_centre():
    """Crow's feet: each line's direction is that from the corner to its midpoint, within the
    deviation asked for, wherever in the mask it lands (above, level with or below the corner)."""
    mask = np.zeros((600, 600), bool)
    mask[50:550, 250:550] = True                  # to the right of the corner, above and below it
    corner = (20.0, 30.0)                         # mm: x, y (y down)
    lines = random_lines(mask, PPM, 6, length_mm=(6.0, 10.0), angle_deg=(-5.0, 5.0),
                         radial_from_mm=corner, seed=5)
    ys = [ln.y_mm for ln in lines]
    assert min(ys) < corner[1] - 5.0 and max(ys) > corner[1] + 5.0   # the fan spans the corner
    for ln in lines:
        radial = np.degrees(np.arctan2(corner[1] - ln.y_mm, ln.x_mm - corner[0]))
        assert abs(ln.angle_deg - radial) <= 5.0 + 1e-9
    angles = [ln.angle_deg for ln in lines]
    assert max(angles) - min(angles) > 30.0          # a fan, not parallel lines

def test_pores_count_gap_depth_and_size():
    mask = np.zeros((400, 400), bool)
    mask[:, :200] = True  # 10 x 20 mm = 2 cm^2 at 20 px/mm
    pores = random_pores(mask, 20.0, 40.0, seed=1)
    assert len(pores) == 80
    assert pores == random_pores(mask, 20.0, 40.0, seed=1)
    xy = np.array([[p.x_mm, p.y_mm] for p in pores])
    assert (xy[:, 0] < 10.0).all()  # inside the mask (left half at 20 px/mm)
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    d[np.arange(len(xy)), np.arange(len(xy))] = np.inf
    assert d.min() >= 0.8
    out, truth = plant_pores(flat_lab((400, 400)), 20.0, pores, mask=mask)
    assert truth.count == 80 and truth.area_cm2 == pytest.approx(2.0)
    assert truth.density_per_cm2 == pytest.approx(40.0)
    assert 0.25 <= truth.mean_diameter_mm <= 0.4


def test_single_pore_profile_matches_its_diameter_definition():
    ppm = 40.0
    pore = Pore(x_mm=2.0, y_mm=2.0, diameter_mm=0.4, depth=6.0)
    out, _ = plant_pores(flat_lab((160, 160)), ppm, [pore])
    dark = 60.0 - out[..., 0]
    assert dark.max() == pytest.approx(6.0, abs=0.1)
    # half-depth diameter is 0.83 x the (LoG zero-crossing) diameter
    row = dark[79:81].max(axis=0)
    assert (row >= 3.0).sum() / ppm == pytest.approx(0.83 * 0.4, abs=1.5 / ppm)
