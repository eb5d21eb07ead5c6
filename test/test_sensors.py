"""The robot's own sensors: body attitude <-> camera pose conventions, Imu and Range messages, their tracks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jzi_ros.data import BagError, bags
from jzi_ros.data.sensors import (
    AttitudeTrack,
    HeightTrack,
    read_attitude_track,
    read_height_track,
    slerp,
)
from jzi_ros.geo.camera import (
    CameraPose,
    Mount,
    Pinhole,
    body_quaternion,
    camera_pose_from_body,
    heading_deg,
    height_above_ground,
    image_to_ground,
    quaternion_from_rotation,
    rotation_from_quaternion,
)
from jzi_ros.geo.errors import GeoError


def rot(axis: int, deg: float) -> np.ndarray:
    """Counter-clockwise rotation about x (0), y (1) or z (2)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def body(yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """REP-103 body attitude (x, y, z, w) from yaw (CCW from east), pitch (nose down), roll (right side down)."""
    return quaternion_from_rotation(rot(2, yaw_deg) @ rot(1, pitch_deg) @ rot(0, roll_deg))


def centre_on_ground(pose: CameraPose, camera: Pinhole = Pinhole(65, 65, 60.0)) -> np.ndarray:
    """(east, north) [m] the image centre sees."""
    g = image_to_ground(camera, pose) @ np.array([32.0, 32.0, 1.0])
    return g[:2] / g[2]


def angle_diff(a_deg, b_deg):
    return (np.asarray(a_deg) - np.asarray(b_deg) + 180.0) % 360.0 - 180.0


# conventions


angles = st.floats(-40.0, 40.0)


@settings(max_examples=200, deadline=None)
@given(
    yaw=st.floats(0.0, 360.0),
    pitch=angles,
    roll=angles,
    mount_pitch=st.floats(0.0, 30.0),
    image_rotation=st.floats(-180.0, 180.0),
)
def test_a_camera_pose_survives_the_round_trip_through_the_body_attitude(yaw, pitch, roll, mount_pitch, image_rotation):
    mount = Mount(mount_pitch, image_rotation)
    pose = CameraPose(10.0, -20.0, 50.0, yaw, pitch, roll)
    q = body_quaternion(pose, mount)
    assert np.linalg.norm(q) == pytest.approx(1.0) and q[3] >= 0
    back = camera_pose_from_body(10.0, -20.0, 50.0, q, mount)
    np.testing.assert_allclose(back.rotation(), pose.rotation(), atol=1e-9)
    assert abs(angle_diff(back.yaw_deg, yaw)) < 1e-7
    assert (back.pitch_deg, back.roll_deg) == pytest.approx((pitch, roll), abs=1e-7)
    assert heading_deg(q, mount) == pytest.approx(back.yaw_deg)


@settings(max_examples=100, deadline=None)
@given(q=st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4).filter(lambda v: np.linalg.norm(v) > 0.1))
def test_a_body_attitude_survives_the_round_trip_through_the_camera_pose(q):
    q = np.array(q) / np.linalg.norm(q)
    mount = Mount(15.0, 30.0)
    pose = camera_pose_from_body(0.0, 0.0, 20.0, q, mount)
    back = body_quaternion(pose, mount)
    np.testing.assert_allclose(rotation_from_quaternion(back), rotation_from_quaternion(q), atol=1e-9)
    assert abs(back @ q) == pytest.approx(1.0)  # the same quaternion up to sign


def test_a_level_body_facing_north_sees_north_up_and_facing_east_sees_east_up():
    north = camera_pose_from_body(0, 0, 100, body(90.0))
    assert (north.yaw_deg % 360, north.pitch_deg, north.roll_deg) == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)
    east = camera_pose_from_body(0, 0, 100, body(0.0))
    assert (east.yaw_deg, east.pitch_deg, east.roll_deg) == pytest.approx((90.0, 0.0, 0.0), abs=1e-9)
    assert heading_deg(body(180.0)) == pytest.approx(270.0)  # facing west: image top west
    assert heading_deg(body(90.0), Mount(image_rotation_deg=90.0)) == pytest.approx(90.0)  # image top to the right
    np.testing.assert_allclose(body_quaternion(CameraPose(0, 0, 100, 0.0)), body(90.0), atol=1e-12)


def test_a_tilted_body_moves_the_image_centre_on_the_ground_the_expected_way():
    h = 100.0
    offset = h * math.tan(math.radians(10.0))
    # facing north, nose down (REP-103 positive pitch): the belly and the camera look back, south
    assert centre_on_ground(camera_pose_from_body(0, 0, h, body(90.0, pitch_deg=10.0))) == pytest.approx(
        [0.0, -offset], abs=1e-6
    )
    # facing north, right side down (positive roll): the camera looks left, west
    assert centre_on_ground(camera_pose_from_body(0, 0, h, body(90.0, roll_deg=10.0))) == pytest.approx(
        [-offset, 0.0], abs=1e-6
    )
    # facing east, level, the camera pitched forward on its mount: it looks ahead (east), towards the image top
    pose = camera_pose_from_body(0, 0, h, body(0.0), Mount(pitch_deg=10.0))
    assert (pose.yaw_deg, pose.pitch_deg, pose.roll_deg) == pytest.approx((90.0, 10.0, 0.0), abs=1e-9)
    assert centre_on_ground(pose) == pytest.approx([offset, 0.0], abs=1e-6)


def test_a_quaternion_that_is_not_a_rotation_is_refused():
    with pytest.raises(GeoError, match="four finite numbers"):
        rotation_from_quaternion([0.0, 0.0, 0.0, 0.0])
    with pytest.raises(GeoError, match="four finite numbers"):
        heading_deg([0.0, 0.0, float("nan"), 1.0])


# messages and tracks


def yaw_q(yaw_deg: float) -> np.ndarray:
    return body(yaw_deg)


@pytest.fixture
def sensor_bag(tmp_path):
    """IMU at 10 Hz turning from yaw 0 to 90 in 1 s, then 1 s silent; ranges at 5 Hz, one out of reach."""
    path = tmp_path / "sensors"
    with bags.BagWriter(path) as bag:
        for k in range(11):
            stamp = k * 100_000_000
            bag.add("/imu", bags.imu(stamp, "imu", yaw_q(9.0 * k), (1e-4, 1e-4, 4e-3)), stamp)
        stamp = 3_000_000_000
        bag.add("/imu", bags.imu(stamp, "imu", yaw_q(180.0), 1e-4), stamp)
        for k, r in enumerate([10.0, 10.2, 10.4, math.inf, 10.8]):
            stamp = k * 200_000_000
            bag.add("/range", bags.range_msg(stamp, "rangefinder", r, 0.1, 40.0, 0.05), stamp)
    return path


def test_imu_and_range_messages_carry_what_the_message_definitions_ask(sensor_bag):
    with bags.BagReader(sensor_bag) as reader:
        assert reader.topics == {"/imu": bags.IMU, "/range": bags.RANGE}
        imu = next(reader.messages(["/imu"])).msg
        rng = next(reader.messages(["/range"])).msg
    assert imu.orientation_covariance.tolist() == pytest.approx([1e-4, 0, 0, 0, 1e-4, 0, 0, 0, 4e-3])
    assert imu.angular_velocity_covariance[0] == -1 and imu.linear_acceleration_covariance[0] == -1
    assert (imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w) == pytest.approx(
        tuple(yaw_q(0.0))
    )
    assert rng.radiation_type == bags.INFRARED == rng.INFRARED
    assert (rng.range, rng.min_range, rng.max_range, rng.field_of_view) == pytest.approx((10.0, 0.1, 40.0, 0.05))


def test_the_attitude_track_slerps_between_neighbours_and_is_silent_when_stale(sensor_bag):
    with bags.BagReader(sensor_bag) as reader:
        track = read_attitude_track(reader, "/imu")
    assert len(track) == 12 and (np.diff(track.stamps_ns) > 0).all()
    np.testing.assert_allclose(track.at(200_000_000), yaw_q(18.0), atol=1e-12)  # on a message
    np.testing.assert_allclose(track.at(250_000_000), yaw_q(22.5), atol=1e-9)  # slerped halfway
    np.testing.assert_allclose(track.at(1_150_000_000), yaw_q(90.0), atol=1e-12)  # after the last: the nearest
    assert track.at(1_500_000_000) is None  # 0.5 s after the newest message: stale
    assert track.at(1_500_000_000, max_age_ns=600_000_000) is not None
    assert track.at(-300_000_000) is None  # before the first
    # 1 s to 3 s apart: only the nearer one, when within max_age_ns
    np.testing.assert_allclose(track.at(2_900_000_000), yaw_q(180.0), atol=1e-12)


def test_the_height_track_interpolates_valid_readings_only(sensor_bag):
    with bags.BagReader(sensor_bag) as reader:
        track = read_height_track(reader, "/range")
    assert track.at(100_000_000) == pytest.approx(10.1)
    assert track.at(400_000_000) == pytest.approx(10.4)
    assert track.at(450_000_000) == pytest.approx(10.4)  # the next reading is out of reach: not used
    assert track.at(600_000_000) is None  # the nearest reading measured nothing (+inf)
    assert track.at(1_400_000_000) is None  # 0.6 s after the last: stale
    assert track.at(1_400_000_000, max_age_ns=700_000_000) == pytest.approx(10.8)


def test_a_slant_range_becomes_the_height_with_the_attitude():
    assert height_above_ground(10.0, None) == 10.0
    assert height_above_ground(10.0, body(45.0)) == pytest.approx(10.0)
    tilted = body(30.0, pitch_deg=10.0, roll_deg=-20.0)
    expected = 10.0 * math.cos(math.radians(10.0)) * math.cos(math.radians(20.0))
    assert height_above_ground(10.0, tilted) == pytest.approx(expected)


def test_slerp_takes_the_short_way_round():
    a, b = yaw_q(170.0), yaw_q(190.0)  # 20 degrees apart, in opposite hemispheres (both with w >= 0)
    assert a @ b < 0
    mid = slerp(a, b, 0.5)
    np.testing.assert_allclose(rotation_from_quaternion(mid), rotation_from_quaternion(yaw_q(180.0)), atol=1e-12)
    np.testing.assert_allclose(rotation_from_quaternion(slerp(a, b, 0.25)), rot(2, 175.0), atol=1e-12)


def test_reading_sensors_from_the_wrong_topic_says_what_the_bag_has(sensor_bag):
    with bags.BagReader(sensor_bag) as reader:
        with pytest.raises(BagError, match="no topic /imu/data for the IMU attitude; its topics: /imu"):
            read_attitude_track(reader, "/imu/data")
        with pytest.raises(BagError, match="IMU attitude topic /range carries sensor_msgs/msg/Range"):
            read_attitude_track(reader, "/range")
        with pytest.raises(BagError, match="rangefinder height topic /imu carries sensor_msgs/msg/Imu"):
            read_height_track(reader, "/imu")


def test_imu_messages_without_an_orientation_are_refused(tmp_path):
    path = tmp_path / "no_orientation"
    with bags.BagWriter(path) as bag:
        msg = bags.imu(1, "imu", yaw_q(0.0), 1e-4)
        msg.orientation_covariance[0] = -1.0
        bag.add("/imu", msg, 1)
    with bags.BagReader(path) as reader, pytest.raises(BagError, match="no orientation on /imu"):
        read_attitude_track(reader, "/imu")


def test_tracks_answer_none_when_empty_of_near_messages():
    track = AttitudeTrack(np.array([0], np.int64), yaw_q(0.0)[None])
    assert track.at(200_000_001) is None and track.at(200_000_000) is not None
    heights = HeightTrack(np.array([0], np.int64), np.array([5.0]), np.array([0.1]), np.array([4.0]))
    assert heights.at(0) is None  # above the sensor's max_range
