"""Conversions between ROS 2 messages and the localizer's types (real rclpy message types)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs", reason="the ROS 2 message wheels are not installed (make test installs them)")

from sensor_msgs.msg import CompressedImage, Image, NavSatFix, NavSatStatus  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from jzi_ros.localizer import Candidate, Estimate, InputError, to_rgb  # noqa: E402
from jzi_ros.ros.convert import (  # noqa: E402
    candidates_to_poses,
    compressed_to_array,
    estimate_to_fix,
    estimate_to_pose,
    fix_to_prior,
    image_to_array,
)


def _image(array: np.ndarray, encoding: str, pad: int = 0) -> Image:
    h, w = array.shape[:2]
    c = array.shape[2] if array.ndim == 3 else 1
    rows = np.zeros((h, w * c + pad), np.uint8)
    rows[:, : w * c] = array.reshape(h, w * c)
    return Image(height=h, width=w, encoding=encoding, step=w * c + pad, data=rows.tobytes())


@pytest.mark.parametrize("encoding, channels", [("rgb8", 3), ("bgr8", 3), ("rgba8", 4), ("bgra8", 4), ("mono8", 1)])
def test_raw_images_in_every_common_encoding_become_rgb(encoding, channels):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)
    if encoding == "mono8":
        src, expect = rgb[..., 0], np.repeat(rgb[..., :1], 3, axis=2)
    else:
        order = rgb if encoding.startswith("rgb") else rgb[..., ::-1]
        src = np.concatenate([order, np.full((12, 10, 1), 255, np.uint8)], 2) if channels == 4 else order
        expect = rgb
    array, order_name = image_to_array(_image(np.ascontiguousarray(src), encoding, pad=6))  # rows padded: step > w*c
    assert np.array_equal(to_rgb(array, order_name), expect)


def test_corrupt_or_unsupported_images_raise_input_errors():
    short = _image(np.zeros((8, 8, 3), np.uint8), "rgb8")
    short.data = bytes(10)
    with pytest.raises(InputError, match="corrupt"):
        image_to_array(short)
    with pytest.raises(InputError, match="unsupported image encoding"):
        image_to_array(_image(np.zeros((8, 8), np.uint16).view(np.uint8), "mono16"))
    with pytest.raises(InputError, match="cannot decode"):
        compressed_to_array(CompressedImage(format="jpeg", data=b"\xff\xd8garbage"))


def test_compressed_jpeg_and_png_decode():
    import cv2

    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200
    png = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
    array, order = compressed_to_array(CompressedImage(format="png", data=png))
    assert np.array_equal(to_rgb(array, order), rgb)


def _estimate(trusted: bool) -> Estimate:
    cov = np.array([[30.0, 4.0], [4.0, 20.0]])
    cands = [Candidate((1, 2), 47.0, 8.0, 10.0, -5.0, 0.7), Candidate((1, 3), 47.0001, 8.0, 50.0, -5.0, 0.2)]
    return Estimate(47.0, 8.0, 10.0, -5.0, cov, 0.7, trusted, (1, 2), cands, 39.0)


def test_estimates_become_navsatfix_with_stamp_status_and_enu_covariance():
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    fix = estimate_to_fix(_estimate(True), header, altitude_m=410.0, vertical_variance_m2=1e4)
    assert (fix.header.stamp.sec, fix.header.stamp.nanosec) == (12, 345)
    assert fix.status.status == NavSatStatus.STATUS_FIX
    assert (fix.latitude, fix.longitude, fix.altitude) == (47.0, 8.0, 410.0)
    cov = np.array(fix.position_covariance).reshape(3, 3)
    assert np.allclose(cov, [[30, 4, 0], [4, 20, 0], [0, 0, 1e4]])
    assert fix.position_covariance_type == NavSatFix.COVARIANCE_TYPE_APPROXIMATED
    assert estimate_to_fix(_estimate(False), header, 0.0, 1.0).status.status == NavSatStatus.STATUS_NO_FIX
    prior = fix_to_prior(fix)
    assert (prior.lat, prior.lon) == (47.0, 8.0) and np.allclose(prior.covariance_m2, [[30, 4], [4, 20]])
    # a GPS in outage: a NO_FIX prior, or one whose covariance is unknown, must not pin the search
    from jzi_ros.localizer import PriorError

    lost = estimate_to_fix(_estimate(False), header, 0.0, 1.0)
    with pytest.raises(PriorError, match="NO_FIX"):
        fix_to_prior(lost)
    fix.position_covariance_type = NavSatFix.COVARIANCE_TYPE_UNKNOWN
    with pytest.raises(PriorError, match="unknown"):
        fix_to_prior(fix)


def test_estimates_become_poses_with_the_body_s_heading_and_its_variance_when_verified():
    import dataclasses
    import math

    from jzi_ros.geo.camera import CameraPose, Mount, yaw_of
    from jzi_ros.ros.convert import UNKNOWN_ANGLE_VARIANCE_RAD2

    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    # a nadir camera whose image top points 30 deg east of north: a body on the default mount faces there too
    camera = CameraPose(10.0, -5.0, 80.0, 30.0, 0.0, 0.0)
    verified = dataclasses.replace(_estimate(True), verified=True, camera=camera, yaw_variance_deg2=4.0)
    pose = estimate_to_pose(verified, header, "jzi_map", 410.0, 1e4)
    assert header.frame_id == "cam", "the camera frame's header is not changed"
    assert (pose.header.stamp.sec, pose.header.stamp.nanosec, pose.header.frame_id) == (12, 345, "jzi_map")
    p, o = pose.pose.pose.position, pose.pose.pose.orientation
    assert (p.x, p.y, p.z) == (10.0, -5.0, 410.0)
    assert yaw_of((o.x, o.y, o.z, o.w)) == pytest.approx(60.0)  # REP-103: counter-clockwise from east
    cov = np.array(pose.pose.covariance).reshape(6, 6)
    assert np.allclose(cov[:2, :2], [[30, 4], [4, 20]]) and cov[2, 2] == 1e4
    assert cov[5, 5] == pytest.approx(math.radians(2.0) ** 2)
    assert cov[3, 3] == cov[4, 4] == UNKNOWN_ANGLE_VARIANCE_RAD2
    # the image top 90 deg clockwise from the body's forward axis: the body faces 90 deg less clockwise
    turned = estimate_to_pose(verified, header, "jzi_map", 0.0, 1.0, Mount(image_rotation_deg=90.0))
    o = turned.pose.pose.orientation
    assert yaw_of((o.x, o.y, o.z, o.w)) == pytest.approx(150.0)
    # a fix the registration did not verify: its position, no heading
    zoom = estimate_to_pose(_estimate(True), header, "jzi_map", 0.0, 1.0)
    o, cov = zoom.pose.pose.orientation, np.array(zoom.pose.covariance).reshape(6, 6)
    assert (o.x, o.y, o.z, o.w) == (0.0, 0.0, 0.0, 1.0) and cov[5, 5] == UNKNOWN_ANGLE_VARIANCE_RAD2
    assert np.all(np.diag(cov) > 0)


def test_candidates_become_poses_in_the_map_frame():
    poses = candidates_to_poses(_estimate(True), Header(frame_id="map"))
    assert [(p.position.x, p.position.y, p.position.z) for p in poses.poses] == [(10.0, -5.0, 0.7), (50.0, -5.0, 0.2)]
    assert poses.header.frame_id == "map" and poses.poses[0].orientation.w == 1.0


def test_node_parameters_are_read_into_a_frozen_config_that_checks_them():
    import dataclasses

    from jzi_ros.ros.params import PARAMETERS, NodeParams

    params = NodeParams(**{name: default for name, (default, _) in PARAMETERS.items()})
    assert params == NodeParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.beam_width = 2  # type: ignore[misc]
    assert params.localizer_config().beam == PARAMETERS["beam_width"][0]
    assert NodeParams(max_rate_hz=4.0).min_period_s == 0.25 and NodeParams().min_period_s == 0.0
    with pytest.raises(Exception, match="transport must be raw or compressed"):
        NodeParams(transport="h264")


def test_node_statistics_count_frames_and_measure_rate_and_latency():
    from dataclasses import replace

    from jzi_ros.ros.node import NodeStats

    stats = NodeStats()
    assert stats.rate_hz == 0.0
    for i in range(5):
        verified = i % 2 == 0
        est = replace(_estimate(True), confidence=0.5 + i / 10, verified=verified, verdict="ok" if verified else "no")
        stats.record(latency_ms=100.0, done_s=i * 0.5 + 0.1, est=est)
    assert stats.processed == 5 and stats.rate_hz == pytest.approx(2.0)
    assert list(stats.latency_ms) == pytest.approx([100.0] * 5) and stats.confidence == pytest.approx(0.9)
    assert stats.verified == 3 and list(stats.recent_verified) == [True, False, True, False, True]
    assert stats.verdict == "ok"
    # failures are counted by kind; ten in a row are what the diagnostics call an error
    for _ in range(4):
        stats.fail("rejected", "the frame holds no image")
    stats.fail("ValueError", "bad")
    assert stats.rejected == 4 and stats.failed == 1
    assert stats.failures == {"rejected": 4, "ValueError": 1} and stats.last_failure == "bad"
    assert any(stats.recent_ok) and len(stats.recent_ok) == 10


def test_the_node_warns_once_per_kind_of_message_not_once_per_period():
    from types import SimpleNamespace

    from jzi_ros.ros.node import LocalizerNode

    said: list[str] = []
    logger = SimpleNamespace(warning=said.append, error=said.append)
    node = SimpleNamespace(_warned={}, get_logger=lambda: logger)
    for text in ("frame skipped: image of shape (4, 4) is empty", "frame skipped: image of shape (2, 2) is empty"):
        LocalizerNode.warn_once_per_kind(node, text)
    LocalizerNode.warn_once_per_kind(node, "frame skipped: the frame holds no image")
    assert said == ["frame skipped: image of shape (4, 4) is empty", "frame skipped: the frame holds no image"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hfov_deg": 0.0}, "hfov_deg"),
        ({"sensor_max_age_s": -1.0}, "sensor_max_age_s"),
        ({"height_m": -5.0}, "height_m"),
        ({"yaw_offset_deg": float("nan")}, "yaw_offset_deg"),
        ({"mount_pitch_deg": 125.0}, "mount_pitch_deg"),
        ({"matcher": "loftr"}, "unknown matcher"),
    ],
)
def test_node_parameters_out_of_range_are_refused_by_name(params, message):
    from jzi_ros.errors import JziError
    from jzi_ros.ros.params import NodeParams

    with pytest.raises(JziError, match=message):
        NodeParams(**params).localizer_config()


def test_imu_range_and_camera_info_messages_convert():
    from sensor_msgs.msg import CameraInfo, Imu, Range

    from jzi_ros.ros.convert import camera_info_to_lens, imu_orientation, range_height

    imu = Imu()
    imu.orientation.z, imu.orientation.w = np.sin(np.pi / 4), np.cos(np.pi / 4)  # facing north
    assert imu_orientation(imu) == pytest.approx([0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    imu.orientation_covariance[0] = -1.0  # "no orientation"
    assert imu_orientation(imu) is None
    r = Range()
    r.range, r.min_range, r.max_range = 12.5, 0.1, 40.0
    assert range_height(r) == 12.5
    r.range = float("inf")  # REP-117: nothing in range
    assert range_height(r) is None
    info = CameraInfo()
    info.width, info.height = 640, 480
    info.k = [320.0, 0.0, 319.5, 0.0, 320.0, 239.5, 0.0, 0.0, 1.0]
    assert camera_info_to_lens(info).ideal.hfov_deg == pytest.approx(90.0)
    assert camera_info_to_lens(info).is_ideal  # an empty distortion model and D: a rectified stream
    info.distortion_model, info.d = "plumb_bob", [-0.2, 0.05, 0.0, 0.0, 0.0]
    info.binning_x = info.binning_y = 2
    lens = camera_info_to_lens(info)
    assert (lens.width_px, lens.height_px, lens.k[0], lens.k[2]) == (320, 240, 160.0, 159.5) and not lens.is_ideal
