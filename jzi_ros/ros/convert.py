"""Conversions between ROS 2 messages and the localizer's types."""

from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import Pose, PoseArray, PoseWithCovarianceStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix, NavSatStatus, Range

from ..geo.camera import Mount, body_yaw_deg, yaw_of
from ..geo.lens import Lens, lens_of
from ..images import ENCODINGS, decode_compressed, decode_raw
from ..localizer import Estimate, InputError, Odometry, Prior, PriorError

try:  # cv_bridge where ROS provides it; the numpy path of localizer.frames otherwise
    from cv_bridge import CvBridge

    _BRIDGE = CvBridge()
except ImportError:  # pragma: no cover - depends on the ROS installation
    _BRIDGE = None


def image_to_array(msg: Image) -> tuple[np.ndarray, str]:
    """A ``sensor_msgs/Image`` as (array, channel order for ``to_rgb``)."""
    if _BRIDGE is not None and msg.encoding.lower() in ENCODINGS:
        try:
            return _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="passthrough"), ENCODINGS[msg.encoding.lower()][1]
        except Exception as exc:  # noqa: BLE001 - cv_bridge raises its own error types
            raise InputError(f"cannot convert the image: {exc}") from None
    return decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data)


def compressed_to_array(msg: CompressedImage) -> tuple[np.ndarray, str]:
    """A JPEG/PNG ``sensor_msgs/CompressedImage`` decoded with OpenCV (BGR)."""
    return decode_compressed(msg.data, msg.format)


def frame_to_array(msg: Image | CompressedImage) -> tuple[np.ndarray, str]:
    """Either kind of camera message as (array, channel order for ``to_rgb``).

    The node calls it on its worker thread, for the frames it localizes only:
    a frame replaced by a newer one before the worker took it is never decoded.
    """
    return compressed_to_array(msg) if isinstance(msg, CompressedImage) else image_to_array(msg)


def estimate_to_fix(est: Estimate, header, altitude_m: float, vertical_variance_m2: float) -> NavSatFix:
    """A ``NavSatFix`` of an estimate, with the camera frame's header.

    Status FIX (trusted) or NO_FIX, finite altitude (the estimate's, from the
    map's surface model, where it has one; else ``altitude_m``), ENU
    covariance [m²] with the horizontal block from the estimate, APPROXIMATED.
    """
    fix = NavSatFix()
    fix.header = header
    fix.status.status = NavSatStatus.STATUS_FIX if est.trusted else NavSatStatus.STATUS_NO_FIX
    fix.status.service = NavSatStatus.SERVICE_GPS  # the field robot_localization expects to be set
    measured = math.isfinite(est.altitude_m)
    fix.latitude, fix.longitude = est.lat, est.lon
    fix.altitude = float(est.altitude_m if measured else altitude_m)
    fix.position_covariance = [float(v) for v in est.fix_covariance_m2(vertical_variance_m2).ravel()]
    fix.position_covariance_type = NavSatFix.COVARIANCE_TYPE_APPROXIMATED
    return fix


UNKNOWN_ANGLE_VARIANCE_RAD2 = 1e4
"""Variance [rad²] of an angle the pose does not measure (roll and pitch; the yaw of an unverified fix)."""


def estimate_to_pose(
    est: Estimate, header, frame_id: str, altitude_m: float, vertical_variance_m2: float, mount: Mount = Mount()
) -> PoseWithCovarianceStamped:
    """A ``PoseWithCovarianceStamped`` of an estimate: the body's planar pose in the map's local ENU frame.

    x east and y north [m] from the map's centre (its transverse Mercator,
    :class:`~jzi_ros.geo.LocalFrame`); z ``altitude_m``, the altitude of the
    fix (:func:`estimate_to_fix`) it is published beside. The orientation is the body's yaw (REP-103),
    from the verified registration's camera heading through ``mount``; roll
    and pitch are not measured (identity, variance
    :data:`UNKNOWN_ANGLE_VARIANCE_RAD2`), nor is the yaw of a fix that was not
    verified. The 6x6 covariance (x, y, z, roll, pitch, yaw) holds the
    horizontal block, the altitude's variance and the heading's [rad²].
    """
    msg = PoseWithCovarianceStamped()
    msg.header.stamp, msg.header.frame_id = header.stamp, frame_id
    p = msg.pose.pose
    p.position.x, p.position.y = float(est.east_m), float(est.north_m)
    p.position.z = float(altitude_m)
    cov = np.zeros((6, 6))
    cov[:2, :2] = (est.covariance_m2 + est.covariance_m2.T) / 2
    cov[2, 2] = vertical_variance_m2
    cov[3, 3] = cov[4, 4] = cov[5, 5] = UNKNOWN_ANGLE_VARIANCE_RAD2
    yaw = body_yaw_deg(est.camera, mount) if est.camera is not None else math.nan
    if math.isfinite(yaw) and math.isfinite(est.yaw_variance_deg2):
        half = math.radians(yaw) / 2
        p.orientation.z, p.orientation.w = math.sin(half), math.cos(half)
        cov[5, 5] = math.radians(1.0) ** 2 * est.yaw_variance_deg2
    else:
        p.orientation.w = 1.0
    msg.pose.covariance = [float(v) for v in cov.ravel()]
    return msg


def imu_orientation(msg: Imu) -> np.ndarray | None:
    """The body's attitude (x, y, z, w) of a ``sensor_msgs/Imu``; None when it carries no orientation.

    The message says so with -1 as the first element of its orientation
    covariance; a quaternion that is not finite or has no length is none too.
    """
    if msg.orientation_covariance[0] == -1.0:
        return None
    o = msg.orientation
    q = np.array([o.x, o.y, o.z, o.w], float)
    if not np.isfinite(q).all() or np.linalg.norm(q) < 1e-6:
        return None
    return q / np.linalg.norm(q)


def odometry_pose(msg) -> Odometry | None:
    """The planar pose of a ``nav_msgs/Odometry`` in its frame (x, y, yaw); None when it is not finite."""
    p, o = msg.pose.pose.position, msg.pose.pose.orientation
    yaw = yaw_of((o.x, o.y, o.z, o.w))
    if yaw is None or not (math.isfinite(p.x) and math.isfinite(p.y)):
        return None
    return Odometry(float(p.x), float(p.y), yaw)


def range_height(msg: Range) -> float | None:
    """The range [m] of a ``sensor_msgs/Range``; None outside its own min..max (REP-117's ±inf included)."""
    r = float(msg.range)
    return r if math.isfinite(r) and msg.min_range <= r <= msg.max_range else None


def camera_info_to_lens(msg: CameraInfo) -> Lens:
    """The camera of a ``sensor_msgs/CameraInfo``: K, D and its model, with its binning and region of interest."""
    return lens_of(msg)


def fix_to_prior(msg: NavSatFix) -> Prior:
    """A prior from a ``NavSatFix`` (its horizontal covariance block).

    Raises:
        PriorError: The fix says it is no fix (status NO_FIX) or that its
            covariance is unknown: such a position must not narrow the search.
    """
    if msg.status.status < NavSatStatus.STATUS_FIX:
        raise PriorError("the prior's status is NO_FIX")
    if msg.position_covariance_type == NavSatFix.COVARIANCE_TYPE_UNKNOWN:
        raise PriorError("the prior's covariance is unknown (COVARIANCE_TYPE_UNKNOWN)")
    cov = np.asarray(msg.position_covariance, float).reshape(3, 3)[:2, :2]
    return Prior(float(msg.latitude), float(msg.longitude), cov)


def candidates_to_poses(est: Estimate, header) -> PoseArray:
    """Top-K candidate cell centres as poses in the map's local frame, best first.

    East = x, north = y, metres from the region centre; each pose's
    orientation is identity and its z holds the candidate's probability.
    """
    out = PoseArray()
    out.header = header
    for c in est.candidates:
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = c.east_m, c.north_m, c.prob
        pose.orientation.w = 1.0
        out.poses.append(pose)
    return out
