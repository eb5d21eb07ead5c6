"""The robot's own sensors, read back from a bag: IMU attitude, rangefinder height and odometry over time.

Attitudes are world-from-body quaternions (x, y, z, w) in ENU per REP-103
(body x forward, y left, z up); :mod:`jzi_ros.geo.camera` turns one into the
camera's heading or pose. Ranges are slant distances [m] along the
rangefinder's axis, the body's -z; :func:`~jzi_ros.geo.camera.height_above_ground` makes them
vertical. Odometry is the body's planar pose in its ``odom`` frame (REP-105).
Each track answers "what did the sensor say at this stamp", and
says nothing (None) when its newest word is too old.
"""

from __future__ import annotations

import math

import numpy as np

from ..geo.camera import yaw_of
from . import bags
from .errors import BagError
from .tracks import AttitudeTrack, HeightTrack, OdometryTrack, slerp

__all__ = ["AttitudeTrack", "HeightTrack", "OdometryTrack", "read_attitude_track", "read_height_track", "slerp"]


def read_attitude_track(reader: bags.BagReader, topic: str) -> AttitudeTrack:
    """The orientations of a ``sensor_msgs/Imu`` topic, sorted by stamp.

    Messages that provide no orientation (element 0 of its covariance -1, or
    a quaternion that is not finite or zero) are skipped.

    Raises:
        BagError: the bag lacks the topic, it is not an Imu topic, or none of
            its messages carries an orientation.
    """
    reader.check(topic, (bags.IMU,), "IMU attitude")
    rows = []
    for m in reader.messages([topic]):
        o = m.msg.orientation
        q = np.array([o.x, o.y, o.z, o.w], np.float64)
        norm = float(np.linalg.norm(q))
        if m.msg.orientation_covariance[0] == -1 or not (math.isfinite(norm) and norm > 1e-9):
            continue
        q = q / norm
        rows.append((bags.stamp_of(m.msg, m.bag_ns), -q if q[3] < 0 else q))
    if not rows:
        raise BagError(f"{reader.path} has no orientation on {topic}: its Imu messages provide none")
    return AttitudeTrack.from_rows(rows)


def read_height_track(reader: bags.BagReader, topic: str) -> HeightTrack:
    """The readings of a ``sensor_msgs/Range`` topic, sorted by stamp (invalid ones kept; they answer None).

    Raises:
        BagError: the bag lacks the topic, it is not a Range topic, or it holds no message.
    """
    reader.check(topic, (bags.RANGE,), "rangefinder height")
    rows = [
        (bags.stamp_of(m.msg, m.bag_ns), m.msg.range, m.msg.min_range, m.msg.max_range)
        for m in reader.messages([topic])
    ]
    if not rows:
        raise BagError(f"{reader.path} has no message on {topic}")
    rows.sort(key=lambda r: r[0])
    t_ns, r_m, lo_m, hi_m = (np.array(c) for c in zip(*rows, strict=True))
    return HeightTrack(t_ns.astype(np.int64), r_m.astype(np.float64), lo_m.astype(np.float64), hi_m.astype(np.float64))


def read_odometry_track(reader: bags.BagReader, topic: str) -> OdometryTrack:
    """The planar poses of a ``nav_msgs/Odometry`` topic, by stamp (a pose that is not finite is skipped).

    Raises:
        BagError: the bag lacks the topic, it is not an Odometry topic, or none of its poses can be used.
    """
    reader.check(topic, (bags.ODOMETRY,), "odometry")
    rows = []
    for m in reader.messages([topic]):
        p, o = m.msg.pose.pose.position, m.msg.pose.pose.orientation
        yaw = yaw_of((o.x, o.y, o.z, o.w))
        if yaw is None or not (math.isfinite(p.x) and math.isfinite(p.y)):
            continue
        rows.append((bags.stamp_of(m.msg, m.bag_ns), p.x, p.y, yaw))
    if not rows:
        raise BagError(f"{reader.path} has no usable pose on {topic}")
    return OdometryTrack.from_rows(rows)
