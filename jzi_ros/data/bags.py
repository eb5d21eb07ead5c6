"""Reading and writing rosbag2 files (sqlite3 and MCAP) with rosbags.

Messages are built and serialized with rosbags' ROS 2 type store; their CDR
is byte-identical to what rclpy publishes, so bags written here play back
with `ros2 bag play` on Humble, Jazzy and Kilted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from .errors import BagError, DataError
from .fixes import FixTrack

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
NAVSATFIX = "sensor_msgs/msg/NavSatFix"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMU = "sensor_msgs/msg/Imu"
RANGE = "sensor_msgs/msg/Range"
ODOMETRY = "nav_msgs/msg/Odometry"
POSE_ARRAY = "geometry_msgs/msg/PoseArray"
POSE_WITH_COVARIANCE = "geometry_msgs/msg/PoseWithCovarianceStamped"
ULTRASOUND = 0
"""``sensor_msgs/Range`` radiation type of a sonar."""
INFRARED = 1
"""``sensor_msgs/Range`` radiation type of an infrared or laser rangefinder."""
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def T(name: str):  # noqa: N802 - reads like the message type it returns
    """The message class of a ROS 2 type name, e.g. ``T("sensor_msgs/msg/NavSatFix")``."""
    return TYPESTORE.types[name]


def header(stamp_ns: int, frame_id: str):
    """A ``std_msgs/Header`` with the stamp ``stamp_ns`` [ns]."""
    sec, nsec = divmod(int(stamp_ns), 10**9)
    return T("std_msgs/msg/Header")(stamp=T("builtin_interfaces/msg/Time")(sec=sec, nanosec=nsec), frame_id=frame_id)


def stamp_of(msg, fallback_ns: int) -> int:
    """A message's header stamp [ns], or the bag's receive time when it is zero."""
    h = getattr(msg, "header", None)
    ns = h.stamp.sec * 10**9 + h.stamp.nanosec if h is not None else 0
    return ns if ns > 0 else fallback_ns


def navsatfix(
    stamp_ns: int,
    frame_id: str,
    lat: float,
    lon: float,
    alt: float,
    cov_m2: np.ndarray,
    fix: bool = True,
    cov_type: int = 1,
):
    """A ``sensor_msgs/NavSatFix`` at (lat, lon) [deg] and ``alt`` [m].

    Args:
        stamp_ns: header stamp [ns].
        frame_id: header frame.
        lat: latitude [deg].
        lon: longitude [deg].
        alt: altitude [m].
        cov_m2: (3, 3) ENU position covariance [m²].
        fix: whether the status is a fix (STATUS_FIX) or not (STATUS_NO_FIX).
        cov_type: ``position_covariance_type`` (1 approximated, 2 diagonal known).
    """
    status = T("sensor_msgs/msg/NavSatStatus")(status=0 if fix else -1, service=1)
    return T(NAVSATFIX)(
        header=header(stamp_ns, frame_id),
        status=status,
        latitude=float(lat),
        longitude=float(lon),
        altitude=float(alt),
        position_covariance=np.asarray(cov_m2, np.float64).reshape(9),
        position_covariance_type=cov_type,
    )


def image(stamp_ns: int, frame_id: str, rgb: np.ndarray):
    """A raw ``sensor_msgs/Image`` (rgb8) of an RGB uint8 array (H, W, 3)."""
    h, w = rgb.shape[:2]
    return T(IMAGE)(
        header=header(stamp_ns, frame_id),
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=w * 3,
        data=np.ascontiguousarray(rgb).reshape(-1),
    )


def compressed(stamp_ns: int, frame_id: str, rgb: np.ndarray, quality: int = 90):
    """A JPEG ``sensor_msgs/CompressedImage`` of an RGB uint8 array (H, W, 3) at ``quality`` (0-100)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return T(COMPRESSED)(header=header(stamp_ns, frame_id), format="jpeg", data=buf.reshape(-1))


def camera_info(stamp_ns: int, frame_id: str, width: int, height: int, k: np.ndarray, d=()):
    """A ``sensor_msgs/CameraInfo`` of a camera with intrinsics ``k`` (3, 3) [px] and lens distortion ``d``.

    ``d``: OpenCV's coefficients (k1, k2, p1, p2[, k3]: ``plumb_bob``; eight:
    ``rational_polynomial``); empty for none. P is ``k`` (the rectified
    camera keeps the intrinsics).
    """
    p = np.zeros((3, 4))
    p[:, :3] = k
    coeffs = np.zeros(5) if len(d) == 0 else np.pad(np.asarray(d, np.float64), (0, max(0, 5 - len(d))))
    model = "rational_polynomial" if len(coeffs) > 5 else "plumb_bob"
    roi = T("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return T(CAMERA_INFO)(
        header=header(stamp_ns, frame_id),
        height=height,
        width=width,
        distortion_model=model,
        d=coeffs,
        k=np.asarray(k, float).reshape(9),
        r=np.eye(3).reshape(9),
        p=p.reshape(12),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def pose_array(stamp_ns: int, frame_id: str, positions_m: np.ndarray):
    """A ``geometry_msgs/PoseArray`` of poses at ``positions_m`` (N, 3) [m] with identity orientations.

    Args:
        stamp_ns: header stamp [ns].
        frame_id: header frame (the frame the positions are in).
        positions_m: (N, 3) x, y, z of each pose [m]; N may be 0.

    Raises:
        DataError: ``positions_m`` has another shape.
    """
    xyz = np.asarray(positions_m, np.float64)
    xyz = xyz.reshape(0, 3) if xyz.size == 0 else xyz
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise DataError(f"positions need the shape (N, 3), not {xyz.shape}")
    point, quaternion, pose = (
        T("geometry_msgs/msg/Point"),
        T("geometry_msgs/msg/Quaternion"),
        T("geometry_msgs/msg/Pose"),
    )
    poses = [
        pose(position=point(x=float(x), y=float(y), z=float(z)), orientation=quaternion(x=0.0, y=0.0, z=0.0, w=1.0))
        for x, y, z in xyz
    ]
    return T(POSE_ARRAY)(header=header(stamp_ns, frame_id), poses=poses)


def _covariance3(variance) -> np.ndarray:
    """A (9,) row-major 3x3 covariance from a variance, three variances (diagonal) or a (3, 3) matrix."""
    v = np.asarray(variance, np.float64)
    if v.ndim == 0:
        v = np.full(3, float(v))
    if v.shape == (3,):
        v = np.diag(v)
    if v.shape != (3, 3):
        raise DataError(f"a covariance needs one variance, three or a 3x3 matrix, not shape {v.shape}")
    return v.reshape(9)


def imu(stamp_ns: int, frame_id: str, quaternion_xyzw, orientation_variance_rad2):
    """A ``sensor_msgs/Imu`` that carries an orientation only.

    Angular velocity and linear acceleration are zero with element 0 of their
    covariances at -1, which the message definition reads as "not provided".

    Args:
        stamp_ns: header stamp [ns].
        frame_id: header frame (the IMU's).
        quaternion_xyzw: world-from-body orientation (x, y, z, w) in ENU (REP-103).
        orientation_variance_rad2: orientation covariance about the x, y, z axes [rad²]:
            one variance, three (a diagonal) or a (3, 3) matrix.

    Raises:
        DataError: the variance has another shape.
    """
    x, y, z, w = (float(c) for c in np.asarray(quaternion_xyzw, np.float64).reshape(4))
    vector = T("geometry_msgs/msg/Vector3")
    not_provided = np.zeros(9)
    not_provided[0] = -1.0
    return T(IMU)(
        header=header(stamp_ns, frame_id),
        orientation=T("geometry_msgs/msg/Quaternion")(x=x, y=y, z=z, w=w),
        orientation_covariance=_covariance3(orientation_variance_rad2),
        angular_velocity=vector(x=0.0, y=0.0, z=0.0),
        angular_velocity_covariance=not_provided.copy(),
        linear_acceleration=vector(x=0.0, y=0.0, z=0.0),
        linear_acceleration_covariance=not_provided.copy(),
    )


def range_msg(
    stamp_ns: int,
    frame_id: str,
    range_m: float,
    min_m: float,
    max_m: float,
    fov_rad: float,
    radiation_type: int = INFRARED,
):
    """A ``sensor_msgs/Range`` of one distance measurement.

    Args:
        stamp_ns: header stamp [ns].
        frame_id: header frame (the rangefinder's; it measures along its x axis).
        range_m: measured distance [m]; below ``min_m`` or above ``max_m`` means no valid reading.
        min_m: shortest distance the sensor measures [m].
        max_m: longest distance the sensor measures [m].
        fov_rad: the arc the distance reading is valid for [rad].
        radiation_type: :data:`INFRARED` (also laser) or :data:`ULTRASOUND`.

    Raises:
        DataError: another radiation type.
    """
    if radiation_type not in (ULTRASOUND, INFRARED):
        raise DataError(f"radiation_type must be ULTRASOUND (0) or INFRARED (1), not {radiation_type}")
    return T(RANGE)(
        header=header(stamp_ns, frame_id),
        radiation_type=radiation_type,
        field_of_view=float(fov_rad),
        min_range=float(min_m),
        max_range=float(max_m),
        range=float(range_m),
    )


def odometry(
    stamp_ns: int,
    frame_id: str,
    child_frame_id: str,
    pose_xy_yaw: tuple[float, float, float],
    twist_v_yaw_rate: tuple[float, float],
    pose_variances: tuple[float, float, float],
    twist_variances: tuple[float, float],
):
    """A planar ``nav_msgs/Odometry``: wheel odometry as a ground robot publishes it.

    Args:
        stamp_ns: header stamp [ns].
        frame_id: the odometry frame (``odom``).
        child_frame_id: the robot's frame (``base_link``), the frame of the twist.
        pose_xy_yaw: x, y [m] and yaw [rad, counter-clockwise from x] in ``frame_id``.
        twist_v_yaw_rate: forward speed [m/s] and yaw rate [rad/s] in ``child_frame_id``.
        pose_variances: of x, y [m²] and yaw [rad²].
        twist_variances: of the speed [m²/s²] and the yaw rate [rad²/s²].
    """
    x, y, yaw = (float(v) for v in pose_xy_yaw)
    vector, point = T("geometry_msgs/msg/Vector3"), T("geometry_msgs/msg/Point")
    quaternion = T("geometry_msgs/msg/Quaternion")(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))
    pose_cov = np.diag([pose_variances[0], pose_variances[1], 1e6, 1e6, 1e6, pose_variances[2]])
    twist_cov = np.diag([twist_variances[0], 1e6, 1e6, 1e6, 1e6, twist_variances[1]])
    speed, yaw_rate = (float(v) for v in twist_v_yaw_rate)
    return T(ODOMETRY)(
        header=header(stamp_ns, frame_id),
        child_frame_id=child_frame_id,
        pose=T("geometry_msgs/msg/PoseWithCovariance")(
            pose=T("geometry_msgs/msg/Pose")(position=point(x=x, y=y, z=0.0), orientation=quaternion),
            covariance=pose_cov.reshape(36),
        ),
        twist=T("geometry_msgs/msg/TwistWithCovariance")(
            twist=T("geometry_msgs/msg/Twist")(
                linear=vector(x=speed, y=0.0, z=0.0), angular=vector(x=0.0, y=0.0, z=yaw_rate)
            ),
            covariance=twist_cov.reshape(36),
        ),
    )


def transforms(stamp_ns: int, frames: list[tuple[str, str, np.ndarray, np.ndarray]]):
    """A ``tf2_msgs/TFMessage`` of (parent, child, translation (3,) [m], quaternion (x, y, z, w)) transforms."""
    stamped = [
        T("geometry_msgs/msg/TransformStamped")(
            header=header(stamp_ns, parent),
            child_frame_id=child,
            transform=T("geometry_msgs/msg/Transform")(
                translation=T("geometry_msgs/msg/Vector3")(*(float(v) for v in translation)),
                rotation=T("geometry_msgs/msg/Quaternion")(*(float(v) for v in quaternion)),
            ),
        )
        for parent, child, translation, quaternion in frames
    ]
    return T("tf2_msgs/msg/TFMessage")(transforms=stamped)


class BagWriter:
    """rosbag2 writer: ``add(topic, msg, stamp_ns)`` registers topics on first use."""

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        if storage not in STORAGES:
            raise BagError(f"storage must be one of {', '.join(STORAGES)}, not {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists; choose another output or remove it")
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._conns: dict[str, Connection] = {}

    def __enter__(self) -> BagWriter:
        try:
            self._writer.open()
        except WriterError as exc:
            raise BagError(f"cannot write {self.path}: {exc}") from None
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()

    def add(self, topic: str, msg, stamp_ns: int) -> None:
        """Write ``msg`` on ``topic`` with the bag time ``stamp_ns`` [ns]."""
        if topic not in self._conns:
            self._conns[topic] = self._writer.add_connection(topic, msg.__msgtype__, typestore=TYPESTORE)
        self._writer.write(self._conns[topic], int(stamp_ns), TYPESTORE.serialize_cdr(msg, msg.__msgtype__))

    def add_raw(self, topic: str, msgtype: str, cdr: bytes, stamp_ns: int) -> None:
        """Write a message as it came over DDS (``msgtype`` such as sensor_msgs/msg/NavSatFix, CDR bytes)."""
        if topic not in self._conns:
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE)
        self._writer.write(self._conns[topic], int(stamp_ns), bytes(cdr))


@dataclass
class BagMessage:
    """One message of a bag: its topic, type, receive time ``bag_ns`` [ns] and deserialized message."""

    topic: str
    msgtype: str
    bag_ns: int
    msg: Any


class _Rosbag2Folder(type(Path())):  # type: ignore[misc]
    """A rosbag2 folder's path that does not look like a ROS 1 bag file to rosbags (no ``.bag`` suffix)."""

    @property
    def suffix(self) -> str:
        """No suffix: the folder is a rosbag2, whatever its name ends in."""
        return ""


class BagReader:
    """A rosbag2 (sqlite3 or MCAP) opened for reading.

    Errors are clear: a missing bag, a missing topic (with the bag's topics)
    or a topic of the wrong type each raise a :class:`BagError` that says so.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"no such bag: {self.path}")
        # rosbags takes any path named *.bag for a ROS 1 bag; a rosbag2 folder may be named so too
        path = _Rosbag2Folder(self.path) if self.path.is_dir() and self.path.suffix == ".bag" else self.path
        try:
            self._reader = AnyReader([path], default_typestore=TYPESTORE)
            self._reader.open()
        except (AnyReaderError, Exception) as exc:  # noqa: BLE001 - rosbags raises several types
            raise BagError(f"cannot open {self.path} as a rosbag2: {exc}") from None
        self.topics = {c.topic: c.msgtype for c in self._reader.connections}

    def close(self) -> None:
        """Close the bag."""
        self._reader.close()

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check(self, topic: str, allowed: tuple[str, ...], role: str) -> str:
        """The message type of ``topic``, checked.

        Raises:
            BagError: naming ``role``, when the bag lacks the topic or it carries
                none of the ``allowed`` types.
        """
        if topic not in self.topics:
            have = ", ".join(f"{t} ({m})" for t, m in sorted(self.topics.items())) or "none"
            raise BagError(f"{self.path} has no topic {topic} for the {role}; its topics: {have}")
        if self.topics[topic] not in allowed:
            raise BagError(f"{role} topic {topic} carries {self.topics[topic]}, expected {' or '.join(allowed)}")
        return self.topics[topic]

    def messages(self, topics: list[str]) -> Iterator[BagMessage]:
        """The messages on ``topics`` in bag time order, deserialized."""
        conns = [c for c in self._reader.connections if c.topic in topics]
        for conn, bag_ns, raw in self._reader.messages(connections=conns):
            try:
                msg = self._reader.deserialize(raw, conn.msgtype)
            except Exception as exc:  # noqa: BLE001 - a corrupt record
                raise BagError(
                    f"cannot decode a {conn.msgtype} message on {conn.topic} at {bag_ns} ns: {exc}"
                ) from None
            yield BagMessage(conn.topic, conn.msgtype, bag_ns, msg)

    def count(self, topic: str) -> int:
        """Number of messages on ``topic``."""
        return sum(c.msgcount for c in self._reader.connections if c.topic == topic)


def read_fix_track(reader: BagReader, topic: str) -> FixTrack:
    """The valid fixes (status >= STATUS_FIX, finite position) of a NavSatFix topic, sorted by stamp.

    Raises:
        BagError: the bag lacks the topic, it is not a NavSatFix topic, or it holds no valid fix.
    """
    reader.check(topic, (NAVSATFIX,), "ground truth")
    rows = []
    for m in reader.messages([topic]):
        fix = m.msg
        if fix.status.status >= 0 and np.isfinite(fix.latitude) and np.isfinite(fix.longitude):
            rows.append((stamp_of(fix, m.bag_ns), fix.latitude, fix.longitude))
    if not rows:
        raise BagError(f"{reader.path} has no valid ground-truth fix on {topic}")
    rows.sort()
    t_ns, lat, lon = (np.array(c) for c in zip(*rows, strict=True))
    return FixTrack(t_ns.astype(np.int64), lat, lon)
