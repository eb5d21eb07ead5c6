"""A real camera's calibration: the lens model against OpenCV, rectification, and CameraInfo's binning and ROI."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from jzi_ros.geo.camera import Pinhole
from jzi_ros.geo.errors import GeoError
from jzi_ros.geo.lens import Lens

K = [600.0, 0.0, 359.5 + 40.0, 0.0, 590.0, 239.5 - 25.0, 0.0, 0.0, 1.0]
LENSES = {
    "plumb_bob": (-0.26, 0.10, 0.001, -0.002, -0.03),
    "rational_polynomial": (-0.26, 0.10, 0.001, -0.002, -0.03, 0.02, -0.01, 0.005),
    "equidistant": (-0.05, 0.01, -0.002, 0.0005),
}


def world_points(lens: Lens, n: int = 15) -> np.ndarray:
    """Points in the camera frame whose rays cover the whole raw image (through the lens's own inverse)."""
    u, v = np.meshgrid(np.linspace(0, lens.width_px - 1, n), np.linspace(0, lens.height_px - 1, n))
    raw = np.stack([u.ravel(), v.ravel()], 1).reshape(-1, 1, 2)
    d = np.asarray(lens.d)
    if lens.model == "equidistant":
        xy = cv2.fisheye.undistortPoints(raw, lens.K, d)
    else:
        xy = cv2.undistortPointsIter(
            raw, lens.K, d, None, None, (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)
        )
    return np.concatenate([xy.reshape(-1, 2), np.ones((n * n, 1))], 1) * 10.0  # 10 m away


@pytest.mark.parametrize("model", list(LENSES))
def test_the_lens_maps_pixels_as_opencvs_projection_does_over_the_whole_image(model):
    lens = Lens(720, 480, K, LENSES[model], model)
    points = world_points(lens)
    zero = np.zeros(3)
    if model == "equidistant":
        raw = cv2.fisheye.projectPoints(points.reshape(-1, 1, 3), zero, zero, lens.K, np.asarray(lens.d))[0]
    else:
        raw = cv2.projectPoints(points, zero, zero, lens.K, np.asarray(lens.d))[0]
    ideal = cv2.projectPoints(points, zero, zero, lens.ideal.K, np.zeros(5))[0].reshape(-1, 2)
    assert np.abs(lens.undistort_points(raw.reshape(-1, 2)) - ideal).max() < 0.1  # px, corners included
    # the rectified frame holds each point where the ideal pinhole sees it: a dot drawn through the lens
    dots = 0
    for (ru, rv), (iu, iv) in list(zip(raw.reshape(-1, 2), ideal, strict=True))[::7]:
        inside = [8 <= u < lens.width_px - 8 and 8 <= v < lens.height_px - 8 for u, v in ((ru, rv), (iu, iv))]
        if not all(inside):  # a whole dot on both sides
            continue
        frame = np.zeros((lens.height_px, lens.width_px, 3), np.uint8)
        cv2.circle(frame, (int(round(ru * 16)), int(round(rv * 16))), 4 * 16, (255, 255, 255), -1, cv2.LINE_AA, 4)
        dot = lens.rectify(frame)[..., 0].astype(np.float64)
        rows, cols = np.mgrid[0 : lens.height_px, 0 : lens.width_px]
        centre = np.array([(cols * dot).sum(), (rows * dot).sum()]) / dot.sum()
        assert np.hypot(*(centre - (iu, iv))) < 0.5
        dots += 1
    assert dots >= 3


def test_a_nadir_footprint_and_the_altitude_that_gives_it_are_inverses():
    camera = Pinhole(640, 480, 90.0)  # tan(45°) = 1: the footprint is twice the altitude
    assert camera.footprint_at(100.0) == pytest.approx(200.0)
    assert camera.footprint_at(camera.altitude_for_footprint(50.0)) == pytest.approx(50.0)


def test_a_centred_undistorted_camera_is_left_as_it_is_and_a_resized_frame_scales_the_calibration():
    ideal = Lens(640, 480, Pinhole(640, 480, 90.0).K.reshape(-1))
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    assert ideal.is_ideal and ideal.rectify(frame) is frame
    lens = Lens(720, 480, K, LENSES["plumb_bob"])
    half = lens.scaled(360, 240)
    assert half.k[0] == pytest.approx(300.0) and half.k[2] == pytest.approx((399.5 + 0.5) / 2 - 0.5)
    assert half.d == lens.d and not half.is_ideal


def test_camera_info_binning_and_roi_move_the_principal_point_as_image_geometry_does():
    full = [500.0, 0.0, 639.5, 0.0, 500.0, 479.5, 0.0, 0.0, 1.0]
    binned = Lens.from_camera_info(1280, 960, full, binning=(2, 2))
    assert (binned.width_px, binned.height_px) == (640, 480)
    assert binned.k[0] == 250.0 and binned.k[2] == pytest.approx(319.5)  # still the centre
    roi = Lens.from_camera_info(1280, 960, full, roi=(100, 50, 400, 300))
    assert (roi.width_px, roi.height_px) == (400, 300) and (roi.k[2], roi.k[5]) == (539.5, 429.5)


@pytest.mark.parametrize(
    "k, d, model",
    [([0.0] * 9, (), "plumb_bob"), (K, (float("nan"),), "plumb_bob"), (K, (), "kannala"), (K, (0.1,), "equidistant")],
)
def test_a_calibration_that_cannot_be_used_is_refused(k, d, model):
    with pytest.raises(GeoError):
        Lens(720, 480, k, d, model)


def test_eval_bag_takes_each_frame_with_the_calibration_in_force_at_its_stamp(tmp_path):
    from jzi_ros.data import bags
    from jzi_ros.evaluation.bag import BagEvalConfig, _read_bag

    ideal = Pinhole(64, 48, 60.0).K
    moved = ideal.copy()
    moved[0, 2] += 6.0
    frame = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    with bags.BagWriter(tmp_path / "bag") as bag:
        for k in range(6):
            stamp = 10**9 * (k + 1)
            calibration = (ideal, ()) if k < 3 else (moved, (-0.2, 0.05, 0.0, 0.0, 0.0))
            bag.add("/camera/camera_info", bags.camera_info(stamp, "camera", 64, 48, *calibration), stamp)
            bag.add("/camera/image_raw", bags.image(stamp, "camera", frame), stamp)
            bag.add("/gps/fix", bags.navsatfix(stamp, "gps", 47.0, 8.0, 100.0, np.eye(3)), stamp)
        bag.add("/camera/camera_info", bags.camera_info(8 * 10**9, "camera", 0, 0, ideal), 8 * 10**9)  # no size
    config = BagEvalConfig(
        bag=tmp_path / "bag",
        map=tmp_path,
        model=tmp_path / "m.pt",
        image_topic="/camera/image_raw",
        gt_topic="/gps/fix",
        camera_info_topic="/camera/camera_info",
    )
    _, frames, sensors = _read_bag(config)
    assert len(sensors.cameras) == 2  # the repeated calibrations kept once, the unusable one left out
    cameras = [sensors.camera_at(stamp) for stamp, _ in frames]
    assert [c.is_ideal for c in cameras] == [True, True, True, False, False, False]
    assert cameras[3].k[2] == pytest.approx(ideal[0, 2] + 6.0) and cameras[3].d[0] == -0.2
